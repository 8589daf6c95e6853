//! The orgwatch agent: consume the central alert queue, decode, classify, deduplicate,
//! group, route and deliver — nothing lost, nothing twice.
//!
//! One module per stage. The stages that decide (`decode`, `classify`, `fingerprint`,
//! `route`, `group`, `silence`) are pure and synchronous; the runtime wraps them.

pub mod classify;
pub mod config;
pub mod core;
pub mod decode;
pub mod dedupe;
pub mod enrich;
pub mod fingerprint;
pub mod group;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod route;
pub mod runtime;
pub mod silence;
pub mod sinks;
pub mod source;
