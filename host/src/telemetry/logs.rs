//! Log output: human-readable or JSON lines on stderr, levels from `HOTSWAP_LOG`.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Environment variable with the log filter, in `tracing_subscriber::EnvFilter` syntax
/// (e.g. `info`, `hotswap=debug`).
pub const LOG_ENV: &str = "HOTSWAP_LOG";

/// Installs the global subscriber: one JSON object per line (`json`, for log pipelines) or
/// human-readable lines. Logs go to stderr; stdout carries only the startup lines.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
