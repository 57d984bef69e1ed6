//! The `--canary-*` flags of `hotswap serve`: a route's canary policy, as typed (the same keys
//! as `[canary]` in the file; [`crate::config::canary`] validates and merges them).

use super::{parse_duration, parse_size};
use clap::{Args, ValueEnum};
use std::time::Duration;

/// The canary flags, each optional: a flag beats `[canary]` in the file.
#[derive(Debug, Default, Args)]
pub struct CanaryArgs {
    /// Canary: every route's new generations serve beside the current one, on this percentage
    /// of the route's requests, until they are promoted or rolled back (0 < PERCENT < 100; 0:
    /// no canary). Without it a new generation takes all the traffic at once.
    /// File: `canary.weight` (`[route.canary]` for one route).
    #[arg(
        long = "canary-weight",
        id = "canary_weight",
        value_name = "PERCENT",
        env = "HOTSWAP_CANARY_WEIGHT"
    )]
    pub weight: Option<f64>,

    /// Canary: requests the candidate serves, within the bounds, before it is promoted.
    /// File: `canary.min_requests`.
    #[arg(
        long = "canary-min-requests",
        id = "canary_min_requests",
        value_name = "N",
        env = "HOTSWAP_CANARY_MIN_REQUESTS"
    )]
    pub min_requests: Option<u64>,

    /// Canary: how long one may run without a verdict; then `--canary-on-timeout` decides.
    /// File: `canary.max_duration`.
    #[arg(long = "canary-max-duration",
        id = "canary_max_duration", value_name = "DURATION", env = "HOTSWAP_CANARY_MAX_DURATION", value_parser = parse_duration)]
    pub max_duration: Option<Duration>,

    /// Canary: the verdict when `--canary-max-duration` passes first: `rollback` (default) or
    /// `promote` (if no bound is broken). File: `canary.on_timeout`.
    #[arg(
        long = "canary-on-timeout",
        id = "canary_on_timeout",
        value_name = "VERDICT",
        env = "HOTSWAP_CANARY_ON_TIMEOUT"
    )]
    pub on_timeout: Option<OnTimeout>,

    /// Canary: most the candidate's server-error rate (5xx, traps, deadlines, memory) may
    /// exceed the current's, as a fraction (0.01: one percentage point).
    /// File: `canary.max_error_increase`.
    #[arg(
        long = "canary-max-error-increase",
        id = "canary_max_error_increase",
        value_name = "FRACTION",
        env = "HOTSWAP_CANARY_MAX_ERROR_INCREASE"
    )]
    pub max_error_increase: Option<f64>,

    /// Canary: most the candidate's p99 latency may be, as a multiple of the current's (plus
    /// `--canary-p99-slack`). File: `canary.max_p99_ratio`.
    #[arg(
        long = "canary-max-p99-ratio",
        id = "canary_max_p99_ratio",
        value_name = "RATIO",
        env = "HOTSWAP_CANARY_MAX_P99_RATIO"
    )]
    pub max_p99_ratio: Option<f64>,

    /// Canary: latency added to the p99 bound, below which a difference is noise.
    /// File: `canary.p99_slack`.
    #[arg(long = "canary-p99-slack",
        id = "canary_p99_slack", value_name = "DURATION", env = "HOTSWAP_CANARY_P99_SLACK", value_parser = parse_duration)]
    pub p99_slack: Option<Duration>,

    /// Canary: server errors the candidate must have answered before it can be rolled back
    /// early (before `--canary-min-requests`). File: `canary.min_failures`.
    #[arg(
        long = "canary-min-failures",
        id = "canary_min_failures",
        value_name = "N",
        env = "HOTSWAP_CANARY_MIN_FAILURES"
    )]
    pub min_failures: Option<u64>,

    /// Canary: keep a client on one side by a request header or cookie (`header:NAME` or
    /// `cookie:NAME`, hashed); a request without it goes to a side at random.
    /// File: `canary.sticky`.
    #[arg(
        long = "canary-sticky",
        id = "canary_sticky",
        value_name = "header:NAME|cookie:NAME",
        env = "HOTSWAP_CANARY_STICKY"
    )]
    pub sticky: Option<String>,

    /// Canary: `split` (default: the candidate answers its share of the clients) or `shadow`
    /// (it gets a copy of its share of the requests; its responses are compared with the
    /// current's and dropped; no outbound calls, key-value writes to a scratch space).
    /// File: `canary.mode`.
    #[arg(
        long = "canary-mode",
        id = "canary_mode",
        value_name = "MODE",
        env = "HOTSWAP_CANARY_MODE"
    )]
    pub mode: Option<CanaryMode>,

    /// Canary (shadow): the route's responses are deterministic, so a shadow response whose
    /// body differs from the current's (SHA-256) is a mismatch, and counts as an error of the
    /// candidate; without it only the status is compared. File: `canary.deterministic`.
    #[arg(
        long = "canary-deterministic",
        id = "canary_deterministic",
        value_name = "BOOL",
        env = "HOTSWAP_CANARY_DETERMINISTIC",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub deterministic: Option<bool>,

    /// Canary (shadow): largest request body copied to the shadow candidate (default 64KiB);
    /// a request with a larger body, or one of unknown length, is not copied.
    /// File: `canary.shadow_body_limit`.
    #[arg(long = "canary-shadow-body-limit",
        id = "canary_shadow_body_limit", value_name = "SIZE", env = "HOTSWAP_CANARY_SHADOW_BODY_LIMIT", value_parser = parse_size)]
    pub shadow_body_limit: Option<u64>,
}

/// What a canary that reaches its `--canary-max-duration` without a verdict gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Dropped: the current generation keeps serving everything.
    Rollback,
    /// Promoted, if no bound is broken.
    Promote,
}

/// How a canary's candidate meets the traffic; see `--canary-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryMode {
    /// The candidate answers its share of the requests.
    Split,
    /// The candidate answers copies of its share, which are compared and dropped.
    Shadow,
}
