//! Command-line arguments, exactly as the user typed them.
//!
//! Nothing here is validated beyond what clap parses; [`crate::config::Config::from_args`]
//! turns these raw values into the one typed configuration the rest of the host uses.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default address the HTTP listener binds to.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default quiet period after the last file event before a reload is attempted.
pub const DEFAULT_DEBOUNCE: &str = "150ms";
/// Default wall-clock deadline for one request, guest execution and body streaming included.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
/// Default limit on one guest linear memory.
pub const DEFAULT_MAX_MEMORY: &str = "128MiB";
/// Default number of requests served at the same time.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// Default time a request waits for a free slot before it is answered 503.
pub const DEFAULT_QUEUE_TIMEOUT: &str = "1s";
/// Default limit on a request body.
pub const DEFAULT_MAX_BODY_SIZE: &str = "10MiB";
/// Default limit on the number of request header fields.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default limit on the total size of the request header section.
pub const DEFAULT_MAX_HEADER_BYTES: &str = "64KiB";
/// Default time a client has to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// Default time in-flight requests get to finish after SIGTERM or SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";

/// hotswap: serve a `wasi:http/proxy` WebAssembly component over HTTP and swap in new builds
/// of it without a restart and without dropping a request.
#[derive(Debug, Parser)]
#[command(name = "hotswap", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `hotswap`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a component over HTTP, reloading it whenever its file changes.
    Serve(ServeArgs),
}

/// Arguments of `hotswap serve`. Every flag has an environment-variable twin.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve (a `wasi:http/proxy` component, e.g. built with
    /// `cargo build --target wasm32-wasip2`). It need not exist yet: until a valid component
    /// lands at this path, requests are answered 503.
    #[arg(value_name = "COMPONENT.wasm", env = "HOTSWAP_COMPONENT")]
    pub component: PathBuf,

    /// Socket address to listen on. Port 0 picks a free port; the startup line
    /// `Serving HTTP on http://ADDR/` shows the real one.
    #[arg(long, value_name = "ADDR", env = "HOTSWAP_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Exit with an error at startup if the component is missing or invalid, instead of
    /// serving 503 until a valid one lands.
    #[arg(long, env = "HOTSWAP_REQUIRE_COMPONENT")]
    pub require_component: bool,

    /// Do not watch the component file; reload only on SIGHUP.
    #[arg(long, env = "HOTSWAP_NO_WATCH")]
    pub no_watch: bool,

    /// Quiet period after the last change to the component file before it is reloaded
    /// (e.g. `150ms`, `1s`).
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_DEBOUNCE", default_value = DEFAULT_DEBOUNCE, value_parser = parse_duration)]
    pub debounce: Duration,

    /// Deadline for one request, from arrival to the end of the response body. A guest still
    /// running then is stopped: 504 if no response was sent yet, otherwise the body is cut.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Limit on each linear memory of a guest instance (e.g. `128MiB`). A guest that grows past
    /// it fails its request with 500.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_MEMORY", default_value = DEFAULT_MAX_MEMORY, value_parser = parse_size)]
    pub max_memory: u64,

    /// Number of requests served at the same time; the instance pool is sized from it.
    #[arg(long, value_name = "N", env = "HOTSWAP_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: usize,

    /// How long a request beyond `--max-concurrency` waits for a free slot before it is
    /// answered 503 with `Retry-After`.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_QUEUE_TIMEOUT", default_value = DEFAULT_QUEUE_TIMEOUT, value_parser = parse_duration)]
    pub queue_timeout: Duration,

    /// Limit on a request body (e.g. `10MiB`); larger requests get 413.
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_BODY_SIZE", default_value = DEFAULT_MAX_BODY_SIZE, value_parser = parse_size)]
    pub max_body_size: u64,

    /// Limit on the number of request header fields.
    #[arg(long, value_name = "N", env = "HOTSWAP_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,

    /// Limit on the size of the request header section (e.g. `64KiB`).
    #[arg(long, value_name = "SIZE", env = "HOTSWAP_MAX_HEADER_BYTES", default_value = DEFAULT_MAX_HEADER_BYTES, value_parser = parse_size)]
    pub max_header_bytes: u64,

    /// Time a client has to send the request headers before the connection is closed.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_HEADER_READ_TIMEOUT", default_value = DEFAULT_HEADER_READ_TIMEOUT, value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Allow guests outbound HTTP to this host (`HOST`, `HOST:PORT`, or `*.example.com` for
    /// subdomains). Repeatable; outbound HTTP is denied unless allowed here. Comma-separated
    /// in the environment variable.
    #[arg(long, value_name = "HOST[:PORT]", env = "HOTSWAP_ALLOW_OUTBOUND", value_delimiter = ',')]
    pub allow_outbound: Vec<String>,

    /// An environment variable for the guest (`KEY=VALUE`). Repeatable; guests see no other
    /// environment.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub guest_env: Vec<String>,

    /// Time in-flight requests get to finish after SIGTERM or SIGINT before they are cut.
    #[arg(long, value_name = "DURATION", env = "HOTSWAP_SHUTDOWN_TIMEOUT", default_value = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format: `pretty` for people, `json` for log pipelines.
    #[arg(long, value_name = "FORMAT", env = "HOTSWAP_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Parses a human duration such as `150ms`, `30s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

/// Parses a byte size such as `128MiB`, `64KiB`, `10MB` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size `{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_parse_and_name_the_bad_value() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("`soon`"), "{err}");
    }
}
