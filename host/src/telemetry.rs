//! Log output: human-readable or JSON lines on stderr, levels from `HOTSWAP_LOG`.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Environment variable with the log filter, in `tracing_subscriber::EnvFilter` syntax
/// (e.g. `info`, `hotswap=debug`).
pub const LOG_ENV: &str = "HOTSWAP_LOG";

/// Installs the global subscriber. Logs go to stderr; stdout carries only the startup line.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
