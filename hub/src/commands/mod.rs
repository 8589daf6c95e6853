//! One function per command.

pub mod pack;
pub mod policy;
pub mod reconcile;
pub mod replay;
pub mod rules;
