//! The one validated, typed configuration of a running host.
//!
//! Every check that can fail on user input happens in [`Config::from_args`], before any socket
//! is bound or any file is watched, so a wrong flag is an error message and exit code 1.

use crate::cli::{LogFormat, ServeArgs};
use crate::outbound::OutboundPolicy;
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted `--max-concurrency`; each slot reserves address space for an instance.
pub const MAX_CONCURRENCY_LIMIT: usize = 10_000;
/// Smallest accepted `--max-memory`: one wasm page.
pub const MIN_MEMORY: u64 = 64 << 10;
/// Largest accepted `--max-memory`: a 32-bit linear memory cannot grow past 4 GiB.
pub const MAX_MEMORY: u64 = 4 << 30;

/// Everything the host needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the component file that is served and watched.
    pub component: PathBuf,
    /// Address the HTTP listener binds to.
    pub addr: SocketAddr,
    /// Fail at startup when no valid component can be loaded.
    pub require_component: bool,
    /// Watch the component file for changes.
    pub watch: bool,
    /// Quiet period after the last file event before a reload.
    pub debounce: Duration,
    /// Bounds on guests and clients.
    pub limits: Limits,
    /// Which outbound HTTP requests guests may make.
    pub outbound: OutboundPolicy,
    /// The guest's whole environment.
    pub guest_env: Vec<(String, String)>,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Log line format.
    pub log_format: LogFormat,
}

/// Bounds on what one guest or one client may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one request.
    pub request_timeout: Duration,
    /// Bytes each guest linear memory may grow to.
    pub max_memory: u64,
    /// Requests served at the same time.
    pub max_concurrency: usize,
    /// Time a request waits for a free slot.
    pub queue_timeout: Duration,
    /// Bytes of request body accepted.
    pub max_body_size: u64,
    /// Number of request header fields accepted.
    pub max_headers: usize,
    /// Bytes of request header section accepted.
    pub max_header_bytes: u64,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
}

impl Config {
    /// Validates raw `serve` arguments into a [`Config`].
    pub fn from_args(args: ServeArgs) -> Result<Config> {
        let component = absolute(&args.component)?;
        let parent = component
            .parent()
            .with_context(|| format!("component path `{}` has no parent directory", component.display()))?;
        ensure!(
            parent.is_dir(),
            "the directory of the component, `{}`, does not exist",
            parent.display()
        );
        ensure!(
            component.file_name().is_some(),
            "component path `{}` does not name a file",
            component.display()
        );
        if component.is_dir() {
            bail!("component path `{}` is a directory, not a file", component.display());
        }

        ensure!(!args.debounce.is_zero(), "`--debounce` must be greater than zero");
        ensure!(!args.request_timeout.is_zero(), "`--request-timeout` must be greater than zero");
        ensure!(
            (1..=MAX_CONCURRENCY_LIMIT).contains(&args.max_concurrency),
            "`--max-concurrency` must be between 1 and {MAX_CONCURRENCY_LIMIT}, got `{}`",
            args.max_concurrency
        );
        ensure!(
            (MIN_MEMORY..=MAX_MEMORY).contains(&args.max_memory),
            "`--max-memory` must be between 64KiB and 4GiB, got `{}` bytes",
            args.max_memory
        );
        ensure!(args.max_headers >= 1, "`--max-headers` must be at least 1");
        ensure!(
            args.max_header_bytes >= 1024,
            "`--max-header-bytes` must be at least 1KiB, got `{}` bytes",
            args.max_header_bytes
        );
        ensure!(
            !args.header_read_timeout.is_zero(),
            "`--header-read-timeout` must be greater than zero"
        );

        let outbound = OutboundPolicy::parse(&args.allow_outbound)?;
        let guest_env = args
            .guest_env
            .iter()
            .map(|kv| parse_env(kv))
            .collect::<Result<Vec<_>>>()?;

        Ok(Config {
            component,
            addr: args.addr,
            require_component: args.require_component,
            watch: !args.no_watch,
            debounce: args.debounce,
            limits: Limits {
                request_timeout: args.request_timeout,
                max_memory: args.max_memory,
                max_concurrency: args.max_concurrency,
                queue_timeout: args.queue_timeout,
                max_body_size: args.max_body_size,
                max_headers: args.max_headers,
                max_header_bytes: args.max_header_bytes,
                header_read_timeout: args.header_read_timeout,
            },
            outbound,
            guest_env,
            shutdown_timeout: args.shutdown_timeout,
            log_format: args.log_format,
        })
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    ensure!(!path.as_os_str().is_empty(), "the component path is empty");
    std::path::absolute(path).with_context(|| format!("cannot resolve `{}`", path.display()))
}

fn parse_env(kv: &str) -> Result<(String, String)> {
    let Some((key, value)) = kv.split_once('=') else {
        bail!("`--env {kv}` must have the form KEY=VALUE");
    };
    ensure!(!key.is_empty(), "`--env {kv}` has an empty variable name");
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_split_on_the_first_equals_sign() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("EMPTY=").unwrap(), ("EMPTY".into(), String::new()));
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("=x").is_err());
    }
}
