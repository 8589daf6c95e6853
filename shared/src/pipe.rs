//! Printing commands end quietly when their reader goes away (`hub plan | head -1`), as
//! every Unix tool does.
//!
//! Rust's runtime ignores SIGPIPE, so a write to a closed pipe returns `EPIPE` and
//! `println!` panics ("failed printing to stdout: Broken pipe", exit 101). Restoring the
//! default action makes the process end at that write, silently, with the status shells
//! report as 141. Long-running services (`agent run`) keep SIGPIPE ignored: a closed
//! socket or pipe there is an error to handle, not the end of the program.

/// Restores SIGPIPE's default action (terminate). Call first thing in `main` of commands
/// that only print.
pub fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: signal(2) with SIG_DFL installs no handler and touches no memory; it runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
