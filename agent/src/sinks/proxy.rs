//! The sinks' proxy: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (upper or lower
//! case, read the way curl reads them), the same variables the AWS clients honour
//! (`shared::aws`).
//!
//! An `https://` destination is reached through an HTTP CONNECT tunnel to the proxy, TLS
//! running end to end inside it (RFC 9110, section 9.3.6); an `http://` destination is sent to
//! the proxy in absolute form (RFC 9112, section 3.2.2), with `Proxy-Authorization` when the
//! proxy URL carries credentials. A proxy reached over TLS itself (`https://` proxy URL) is
//! refused at start: the tunnel would carry the proxy's credentials in the clear otherwise.
//!
//! What is not hand-written here: reading the variables and matching `NO_PROXY` (domains,
//! subdomains, `*`, IP addresses and CIDR ranges, as curl does) is hyper-util's `Matcher`,
//! the code reqwest runs; the CONNECT handshake is hyper-util's `Tunnel`. What this module
//! adds is the connector that picks between them per destination (about a hundred lines),
//! the refusal of proxies it cannot use, and messages that name the proxy but never the
//! sink's URL (it may carry a token).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which destinations go through which proxy.
#[derive(Clone)]
pub struct Proxies {
    matcher: std::sync::Arc<Matcher>,
}

impl Proxies {
    /// The proxies the environment names; none when no variable is set.
    pub fn from_env() -> Proxies {
        Proxies::new(Matcher::from_env())
    }

    pub fn new(matcher: Matcher) -> Proxies {
        Proxies {
            matcher: std::sync::Arc::new(matcher),
        }
    }

    /// The proxy for `url`, `None` to connect directly; an error for a proxy this client cannot
    /// use. `url` is only ever a sink's own URL: the error names the proxy, never the URL (a
    /// Slack or webhook URL may carry a token).
    pub fn route(&self, url: &Uri) -> Result<Option<Route>, String> {
        let Some(intercept) = self.matcher.intercept(url) else {
            return Ok(None);
        };
        let proxy = intercept.uri().clone();
        match proxy.scheme_str() {
            Some("http") | None => {}
            Some(other) => {
                return Err(format!(
                    "proxy {}: a {other}:// proxy is not supported (use an http:// proxy URL)",
                    display_proxy(&proxy)
                ));
            }
        }
        if proxy.host().is_none() {
            return Err("the proxy URL has no host".into());
        }
        Ok(Some(Route {
            proxy,
            auth: intercept.basic_auth().cloned(),
        }))
    }
}

/// A proxy and its credentials.
#[derive(Clone, Debug)]
pub struct Route {
    pub proxy: Uri,
    pub auth: Option<HeaderValue>,
}

/// The proxy's address without credentials, for messages.
pub fn display_proxy(uri: &Uri) -> String {
    match (uri.host(), uri.port_u16()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "(no host)".into(),
    }
}

/// The TCP layer under the TLS connector: direct, tunnelled, or to a forward proxy.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    proxies: Proxies,
}

impl ProxyConnector {
    pub fn new(proxies: Proxies) -> ProxyConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        ProxyConnector { http, proxies }
    }
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let route = self.proxies.route(&dst);
        Box::pin(async move {
            match route? {
                None => Ok(Conn {
                    io: http.call(dst).await?,
                    forward: false,
                }),
                Some(route) if dst.scheme_str() == Some("https") => {
                    let mut tunnel = Tunnel::new(route.proxy.clone(), http);
                    if let Some(auth) = route.auth {
                        tunnel = tunnel.with_auth(auth);
                    }
                    let io = tunnel.call(dst).await.map_err(|e| {
                        format!("proxy {}: CONNECT failed: {e}", display_proxy(&route.proxy))
                    })?;
                    Ok(Conn { io, forward: false })
                }
                Some(route) => Ok(Conn {
                    io: http
                        .call(route.proxy.clone())
                        .await
                        .map_err(|e| format!("proxy {}: {e}", display_proxy(&route.proxy)))?,
                    forward: true,
                }),
            }
        })
    }
}

/// A connection; `forward` makes hyper write requests in absolute form, as a forward proxy
/// needs them.
pub struct Conn {
    io: TokioIo<TcpStream>,
    forward: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forward)
    }
}

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(all: &str, no: &str) -> Proxies {
        Proxies::new(Matcher::builder().all(all).no(no).build())
    }

    #[test]
    fn routes_by_scheme_and_no_proxy() {
        let p = proxies(
            "http://user:pw@127.0.0.1:3128",
            "internal.example,10.0.0.0/8",
        );
        let r = p
            .route(&"https://hooks.slack.com/services/T/B/X".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(display_proxy(&r.proxy), "127.0.0.1:3128");
        assert!(
            r.auth.is_some(),
            "credentials in the proxy URL become Basic auth"
        );
        assert!(
            p.route(&"https://internal.example/hook".parse().unwrap())
                .unwrap()
                .is_none()
        );
        assert!(
            p.route(&"http://10.1.2.3/hook".parse().unwrap())
                .unwrap()
                .is_none()
        );
        let none = Proxies::new(Matcher::builder().build());
        assert!(
            none.route(&"https://events.pagerduty.com/v2/enqueue".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refuses_a_tls_proxy_without_naming_the_url() {
        let p = proxies("https://proxy.example:443", "");
        let err = p
            .route(&"https://hooks.slack.com/services/SECRET".parse().unwrap())
            .unwrap_err();
        assert!(err.contains("https:// proxy is not supported"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}
