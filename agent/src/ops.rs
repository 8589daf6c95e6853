//! The operations endpoint: `/healthz` (the process is up), `/readyz` (consuming, not
//! draining) and `/metrics` (Prometheus text format 0.0.4, see [`crate::metrics`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shared::ops::Reply;

use crate::metrics::Metrics;

/// Shared state the endpoint reports.
#[derive(Debug, Default)]
pub struct OpsState {
    pub ready: AtomicBool,
    pub metrics: Arc<Metrics>,
}

fn respond(state: &OpsState, path: &str) -> Reply {
    match path {
        "/healthz" => Reply::text(200, "ok\n"),
        "/readyz"
            if state.ready.load(Ordering::Relaxed)
                && state.metrics.receive_failures.load(Ordering::Relaxed) == 0 =>
        {
            Reply::text(200, "ready\n")
        }
        "/readyz" => Reply::text(503, "not ready\n"),
        "/metrics" => Reply::metrics(state.metrics.render()),
        _ => Reply::not_found(),
    }
}

/// Where `agent health` asks an agent listening on `listen`: an unspecified address
/// (0.0.0.0, [::], as in the container image) on loopback of the same family.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], listen.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

/// Binds `addr` and serves until the process exits. Returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<OpsState>) -> std::io::Result<SocketAddr> {
    shared::ops::serve(addr, Arc::new(move |path: &str| respond(&state, path))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_while_receives_fail() {
        let state = OpsState::default();
        assert_eq!(respond(&state, "/readyz").status, 503);
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&state, "/readyz").status, 200);
        state.metrics.receive_failures.store(3, Ordering::Relaxed);
        assert_eq!(respond(&state, "/readyz").status, 503);
        assert_eq!(respond(&state, "/healthz").status, 200);
    }

    #[test]
    fn metrics_say_the_format_they_are_in() {
        let state = OpsState::default();
        state.metrics.received.inc();
        let reply = respond(&state, "/metrics");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, crate::metrics::CONTENT_TYPE);
        assert!(
            reply
                .body
                .lines()
                .any(|l| l == "orgwatch_agent_messages_received_total 1"),
            "{}",
            reply.body
        );
    }
}
