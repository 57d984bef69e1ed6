//! The bounds of [`super::Config`]: on one route's guests ([`GuestLimits`], per route) and on
//! clients and connections ([`ConnLimits`], host-wide).

use super::defaults::*;
use super::file::GuestLimitKeys;
use super::{MAX_CONCURRENCY_LIMIT, MAX_MEMORY, MIN_MEMORY};
use crate::cli::TierMode;
use anyhow::{Result, ensure};
use std::time::Duration;

/// Bounds on what one route's guests may use; each route has its own.
#[derive(Debug, Clone)]
pub struct GuestLimits {
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
    /// Requests one WASI 0.3 instance may serve (1: a fresh instance per request).
    pub instance_reuse: usize,
    /// Requests one reused 0.3 instance serves at the same time.
    pub instance_reuse_concurrency: usize,
    /// Which compiler makes new generations' code.
    pub tier: TierMode,
    /// Bytes of stdout and stderr one request may log; the rest is counted and dropped.
    pub max_guest_output: u64,
}

/// Largest `--instance-reuse`.
const MAX_INSTANCE_REUSE: usize = 1_000_000;
/// Largest `--instance-reuse-concurrency`.
const MAX_INSTANCE_REUSE_CONCURRENCY: usize = 1_000;

/// Bounds on what one client or connection may use, the same for every route.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Number of request header fields accepted.
    pub max_headers: usize,
    /// Bytes of request header section accepted.
    pub max_header_bytes: u64,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time a client may accept none of a response's bytes before it is disconnected.
    pub write_timeout: Duration,
    /// Time a connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// Most HTTP/2 streams one connection may open at once.
    pub max_streams: usize,
}

impl GuestLimits {
    /// The limits of a route when nothing sets any.
    pub const DEFAULT: GuestLimits = GuestLimits {
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        max_memory: DEFAULT_MAX_MEMORY,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        max_body_size: DEFAULT_MAX_BODY_SIZE,
        instance_reuse: DEFAULT_INSTANCE_REUSE,
        instance_reuse_concurrency: DEFAULT_INSTANCE_REUSE_CONCURRENCY,
        tier: DEFAULT_TIER,
        max_guest_output: DEFAULT_MAX_GUEST_OUTPUT,
    };

    /// These limits with each key `keys` sets in place of the limit's value.
    pub fn with(&self, keys: &GuestLimitKeys) -> GuestLimits {
        GuestLimits {
            request_timeout: keys.request_timeout.unwrap_or(self.request_timeout),
            max_memory: keys.max_memory.unwrap_or(self.max_memory),
            max_concurrency: keys.max_concurrency.unwrap_or(self.max_concurrency),
            queue_timeout: keys.queue_timeout.unwrap_or(self.queue_timeout),
            max_body_size: keys.max_body_size.unwrap_or(self.max_body_size),
            instance_reuse: keys.instance_reuse.unwrap_or(self.instance_reuse),
            instance_reuse_concurrency: keys
                .instance_reuse_concurrency
                .unwrap_or(self.instance_reuse_concurrency),
            tier: keys.tier.unwrap_or(self.tier),
            max_guest_output: keys.max_guest_output.unwrap_or(self.max_guest_output),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        ensure!(
            !self.request_timeout.is_zero(),
            "`--request-timeout` must be greater than zero"
        );
        ensure!(
            (1..=MAX_CONCURRENCY_LIMIT).contains(&self.max_concurrency),
            "`--max-concurrency` must be between 1 and {MAX_CONCURRENCY_LIMIT}, got `{}`",
            self.max_concurrency
        );
        ensure!(
            (MIN_MEMORY..=MAX_MEMORY).contains(&self.max_memory),
            "`--max-memory` must be between 64KiB and 4GiB, got `{}` bytes",
            self.max_memory
        );
        ensure!(
            (1..=MAX_INSTANCE_REUSE).contains(&self.instance_reuse),
            "`--instance-reuse` must be between 1 and {MAX_INSTANCE_REUSE}, got `{}`",
            self.instance_reuse
        );
        ensure!(
            (1..=MAX_INSTANCE_REUSE_CONCURRENCY).contains(&self.instance_reuse_concurrency),
            "`--instance-reuse-concurrency` must be between 1 and \
             {MAX_INSTANCE_REUSE_CONCURRENCY}, got `{}`",
            self.instance_reuse_concurrency
        );
        Ok(())
    }
}

impl ConnLimits {
    pub(super) fn validate(&self) -> Result<()> {
        ensure!(self.max_headers >= 1, "`--max-headers` must be at least 1");
        ensure!(
            self.max_header_bytes >= 1024,
            "`--max-header-bytes` must be at least 1KiB, got `{}` bytes",
            self.max_header_bytes
        );
        ensure!(
            !self.header_read_timeout.is_zero(),
            "`--header-read-timeout` must be greater than zero"
        );
        ensure!(
            !self.write_timeout.is_zero(),
            "`--write-timeout` must be greater than zero"
        );
        ensure!(
            !self.idle_timeout.is_zero(),
            "`--idle-timeout` must be greater than zero"
        );
        Ok(())
    }
}
