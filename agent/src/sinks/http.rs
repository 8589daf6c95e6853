//! The one HTTP client of the sinks: hyper over rustls (the AWS SDK's TLS stack), HTTP/1.1,
//! each request bounded by the sink's timeout, and one status classifier.
//!
//! Why hyper-util's client and not `reqwest`: reqwest is this same client (hyper-util's
//! legacy `Client`) with a friendlier builder, and its `HTTPS_PROXY`/`NO_PROXY` handling is
//! hyper-util's `proxy::matcher::Matcher`, the one [`super::proxy`] uses, so switching would
//! change no behaviour. What it would change: a second configuration of rustls (reqwest
//! picks its own crypto provider and root store per feature flags) beside the one built
//! here from aws-lc-rs, the AWS SDK's; the `url` crate in every request; and our start-up
//! checks (no system roots -> an `https://` sink is a configuration error, a `https://`
//! proxy URL is refused) would have to be rebuilt on its API. The answer's classification
//! (2xx, 408/429/5xx with `Retry-After`, the rest rejected) stays ours either way.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Outcome;
use super::proxy::{Proxies, ProxyConnector};

/// A shared HTTPS client.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<ProxyConnector>, Full<Bytes>>,
    proxies: Proxies,
    /// Whether the system's root certificates were found: without them no `https://` sink can
    /// verify its peer, which [`HttpClient::check_url`] makes a start-up error.
    roots: bool,
}

impl HttpClient {
    /// The client of the sinks, with the proxies the environment names.
    pub fn new() -> HttpClient {
        HttpClient::with_proxies(Proxies::from_env())
    }

    pub fn with_proxies(proxies: Proxies) -> HttpClient {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (builder, roots) = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => (b, true),
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                let b = match config {
                    Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                };
                (b, false)
            }
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector::new(proxies.clone()));
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            proxies,
            roots,
        }
    }

    /// Whether a sink can reach `url` at all: an `https://` URL needs the system's root
    /// certificates (rustls-native-certs reads them from the platform's store, or from
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`), and a proxy the environment names for it must be one
    /// this client speaks. Called when a sink is built, so a broken trust store or proxy setting
    /// stops the agent at start instead of failing every delivery. `what` names the sink.
    pub fn check_url(&self, what: &str, url: &str) -> Result<(), String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| format!("{what}: the URL is not valid"))?;
        if uri.scheme_str() == Some("https") && !self.roots {
            return Err(format!(
                "{what}: no system root certificates were found, so no https:// endpoint can be \
                 verified (install the CA certificates package, or set SSL_CERT_FILE)"
            ));
        }
        self.proxies
            .route(&uri)
            .map(|_| ())
            .map_err(|e| format!("{what}: {e}"))
    }

    /// POSTs a JSON body; maps the answer to an [`Outcome`]. The URL never appears in the
    /// outcome (it may carry a token); `what` names the destination instead.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Outcome {
        self.request(hyper::Method::POST, url, headers, Some(body), timeout)
            .await
    }

    /// A GET without a body (the heartbeat sink); the answer is classified like a POST's.
    pub async fn get(&self, url: &str, timeout: Duration) -> Outcome {
        self.request(hyper::Method::GET, url, &[], None, timeout)
            .await
    }

    async fn request(
        &self,
        method: hyper::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Outcome {
        let mut req = Request::builder().method(method).uri(url);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        req = req.header(
            "user-agent",
            concat!("orgwatch-agent/", env!("CARGO_PKG_VERSION")),
        );
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        // A forward proxy (an http:// destination) reads its credentials from the request; a
        // tunnel (https://) sends them in the CONNECT instead (proxy.rs).
        if url.starts_with("http://")
            && let Ok(uri) = url.parse::<hyper::Uri>()
            && let Ok(Some(route)) = self.proxies.route(&uri)
            && let Some(auth) = route.auth
        {
            req = req.header(hyper::header::PROXY_AUTHORIZATION, auth);
        }
        let req = match req.body(Full::new(Bytes::from(body.unwrap_or_default()))) {
            Ok(r) => r,
            Err(e) => return Outcome::Reject(format!("cannot build the request: {e}")),
        };
        let call = async {
            let resp = self.inner.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after_secs);
            // Read (a bounded part of) the body so the connection can be reused.
            let text = match resp.into_body().collect().await {
                Ok(b) => {
                    let b = b.to_bytes();
                    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
                }
                Err(_) => String::new(),
            };
            Ok::<_, hyper_util::client::legacy::Error>((status, text, retry_after))
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Outcome::Retry(format!("no answer within {timeout:?}")),
            Ok(Err(e)) => Outcome::Retry(format!("request failed: {}", error_chain(&e))),
            Ok(Ok((status, text, retry_after))) => {
                match (classify_status(status, &text), retry_after) {
                    (Outcome::Retry(why), Some(secs)) => {
                        Outcome::RetryAfter(why, Duration::from_secs(secs))
                    }
                    (outcome, _) => outcome,
                }
            }
        }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

/// The delay of a `Retry-After` header in its seconds form (RFC 9110, section 10.2.3: a
/// non-negative decimal integer, or an HTTP date, which is not honoured here and falls
/// back to the sink's own back-off).
pub fn retry_after_secs(v: &str) -> Option<u64> {
    let v = v.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

/// 2xx delivered; 408, 429 and 5xx retried; any other status rejected.
pub fn classify_status(status: StatusCode, body: &str) -> Outcome {
    let body = body.trim();
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Outcome::Retry(format!("HTTP {status}: {body}"))
    } else {
        Outcome::Reject(format!("HTTP {status}: {body}"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(retry_after_secs("120"), Some(120));
        assert_eq!(retry_after_secs(" 7 "), Some(7));
        assert_eq!(retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_secs("-1"), None);
        assert_eq!(retry_after_secs(""), None);
    }

    #[test]
    fn statuses() {
        for (code, want) in [
            (200, "delivered"),
            (202, "delivered"),
            (400, "reject"),
            (403, "reject"),
            (404, "reject"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (503, "retry"),
        ] {
            let got = classify_status(StatusCode::from_u16(code).unwrap(), "");
            assert_eq!(got.kind(), want, "{code}");
        }
    }
}
