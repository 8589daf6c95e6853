//! End-to-end tests against the AWS emulator. One test binary (each one that links the
//! AWS SDK costs hundreds of MB and a long link), one module per area.

mod e2e {
    pub mod access;
    pub mod adopt;
    pub mod agent;
    pub mod contract;
    pub mod demo;
    pub mod docs;
    pub mod doctor;
    pub mod enforce;
    pub mod errors;
    pub mod foundation;
    pub mod hub;
    pub mod infra;
    pub mod manifest;
    #[cfg(unix)]
    pub mod pipes;
    #[cfg(target_os = "linux")]
    pub mod progress;
    pub mod report;
    pub mod rules;
    pub mod validators;
    pub mod watch;
}
