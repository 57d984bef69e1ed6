//! Log output: human-readable or JSON lines on stderr, levels from `HOTSWAP_LOG`.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Environment variable with the log filter, in `tracing_subscriber::EnvFilter` syntax
/// (e.g. `info`, `hotswap=debug`).
pub const LOG_ENV: &str = "HOTSWAP_LOG";

/// What rustls logs below ERROR is about the peer (an IP address sent as a TLS server name, an
/// alert it sent): one WARN per handshake that a client controls. The host logs the failed
/// handshakes it cares about itself (at debug), so rustls is held to errors unless the filter
/// names it.
const RUSTLS_DEFAULT: &str = "rustls=error";

/// Installs the global subscriber: one JSON object per line (`json`, for log pipelines) or
/// human-readable lines. Logs go to stderr; stdout carries only the startup lines.
pub fn init(json: bool) {
    let filter = match std::env::var(LOG_ENV) {
        Ok(spec) if spec.contains("rustls") => EnvFilter::new(spec),
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(format!("{spec},{RUSTLS_DEFAULT}")),
        _ => EnvFilter::new(format!("info,{RUSTLS_DEFAULT}")),
    };
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
