//! The operations endpoint of the long-running programs (`agent`, `hub watch`): a small
//! HTTP/1 server that answers `GET <path>` from a handler (`/healthz`, `/readyz`,
//! `/metrics`), so that each program only says what its paths mean.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The `Content-Type` of [`Reply::metrics`]: the Prometheus text format 0.0.4, UTF-8, as
/// prometheus-client's encoder writes it.
pub const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The text exposition of `registry` ([`METRICS_CONTENT_TYPE`]), for [`Reply::metrics`]. An
/// encoding failure (the encoder writes into a `String`, so only a metric's own encoding
/// can fail) is logged and what was encoded is served.
pub fn encode_metrics(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// One answer of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.into(),
        }
    }

    /// Prometheus text exposition format 0.0.4 ([`encode_metrics`]: the agent's and the
    /// hub's, both on prometheus-client).
    pub fn metrics(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body,
        }
    }

    pub fn not_found() -> Reply {
        Reply::text(404, "not found\n")
    }
}

/// What the endpoint answers for a path.
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(reply.content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Binds `addr` and serves until the process exits. Returns the bound address (port 0
/// picks a free one).
pub async fn serve(addr: SocketAddr, handler: Handler) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let resp = respond(handler(req.uri().path()));
                        async move { Ok::<_, Infallible>(resp) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

/// Returns on SIGTERM or SIGINT (Ctrl-C where Unix signals are not available): the start
/// of a graceful drain.
pub async fn wait_for_signal() {
    Signals::new().recv().await;
}

/// SIGTERM and SIGINT, listened to for the life of the value: a second signal while the
/// first one's drain runs is received too (a fresh listener per wait could miss it).
pub struct Signals {
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let unix = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        Signals { unix }
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        match &mut self.unix {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

impl Default for Signals {
    fn default() -> Signals {
        Signals::new()
    }
}
