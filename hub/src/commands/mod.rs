//! One function per command.

pub mod rules;
