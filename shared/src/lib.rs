//! orgwatch's shared library: configuration, the filter-pattern language, the detection
//! pack, the alert model, the AWS client factory and the naming module.

pub mod aws;
pub mod config;
pub mod guardrail;
pub mod iam;
pub mod logging;
pub mod naming;
pub mod ops;
pub mod pattern;
pub mod pipe;
pub mod rules;
pub mod suggest;
pub mod text;
pub mod time;
