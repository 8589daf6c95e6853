//! Logs go to stderr, as text for people or JSON lines for machines; stdout is for results.

use tracing_subscriber::EnvFilter;

/// Log format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by the flags.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},aws_config=warn,aws_smithy_runtime=warn,aws_smithy_http_client=warn,hyper=warn,h2=warn,rustls=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(colour(std::env::var_os("NO_COLOR")))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// Whether stderr's text logs may carry ANSI colour codes: only on a terminal, and not
/// when `NO_COLOR` is set to anything but the empty string (no-color.org). (The progress
/// bars' styles come from the console crate, which honours NO_COLOR itself.)
fn colour(no_color: Option<std::ffi::OsString>) -> bool {
    no_color.is_none_or(|v| v.is_empty()) && std::io::IsTerminal::is_terminal(&std::io::stderr())
}
