//! A loopback HTTP proxy for the tests: CONNECT tunnels (RFC 9110, section 9.3.6) and
//! absolute-form forwarding (RFC 9112, section 3.2.2), one request per client connection. It
//! records what it was asked to reach, so a test can prove that a process honoured
//! `HTTP_PROXY` / `HTTPS_PROXY`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy was given: `CONNECT` or the method of a forwarded request, and the
/// `host:port` it was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub method: String,
    pub authority: String,
    pub proxy_authorization: Option<String>,
}

pub struct Proxy {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(client, log).await;
                });
            }
        });
        Ok(Proxy { addr, asked, task })
    }

    /// `http://127.0.0.1:PORT`, for `HTTP_PROXY` and `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, log: Arc<Mutex<Vec<Asked>>>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let proxy_authorization = headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_string())
    });
    if method == "CONNECT" {
        record(&log, &method, &target, proxy_authorization);
        let mut upstream = match TcpStream::connect(&target).await {
            Ok(s) => s,
            Err(_) => {
                client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    .await?;
                return Ok(());
            }
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return Ok(());
    }
    // Absolute form: http://host:port/path.
    let Some(after) = target.strip_prefix("http://") else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    record(&log, &method, authority, proxy_authorization);
    let mut upstream = TcpStream::connect(authority).await?;
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        if ["proxy-authorization", "proxy-connection", "connection"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let body = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
    });
    // One request per connection: when the origin has answered and closed, so does the proxy.
    let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
    body.abort();
    let _ = client_write.shutdown().await;
    Ok(())
}

fn record(log: &Mutex<Vec<Asked>>, method: &str, authority: &str, auth: Option<String>) {
    if let Ok(mut v) = log.lock() {
        v.push(Asked {
            method: method.to_string(),
            authority: authority.to_string(),
            proxy_authorization: auth,
        });
    }
}

/// A loopback TCP relay to `upstream` that holds back the first bytes of every answer by
/// `delay`: each request/response exchange on a keep-alive connection (HTTP/1.1 without
/// pipelining, as the SDK's client speaks) costs `delay` more, as a distant endpoint would.
/// For benchmarks of what network latency does to a client.
pub struct Latency {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Latency {
    pub async fn start(
        upstream: SocketAddr,
        delay: std::time::Duration,
    ) -> std::io::Result<Latency> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = relay(client, upstream, delay).await;
                });
            }
        });
        Ok(Latency { addr, task })
    }

    /// `http://127.0.0.1:PORT`, for an endpoint override.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Latency {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    delay: std::time::Duration,
) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    client.set_nodelay(true)?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = up.into_split();
    // Set when a request has gone up and its answer has not yet started coming back.
    let asked = Arc::new(AtomicBool::new(false));
    let flag = asked.clone();
    let requests = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            flag.store(true, Ordering::SeqCst);
            if up_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match up_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if asked.swap(false, Ordering::SeqCst) && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    requests.abort();
    let _ = client_write.shutdown().await;
    Ok(())
}
