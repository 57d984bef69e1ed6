//! Canary policies: with one on a route, a new generation does not replace the current one at
//! once but serves beside it as the route's candidate, on a share of the traffic, and is
//! promoted or rolled back on how it does against the current one (`crate::guest::canary`).
//!
//! The keys are the same in `[canary]` (every route), `[route.canary]` (one route; each key it
//! sets beats the global one) and the `--canary-*` flags (which beat `[canary]`). A route has a
//! policy when its merged `weight` is set and not 0.

pub use crate::cli::{CanaryMode, OnTimeout};
use anyhow::{Result, bail, ensure};
use serde::Deserialize;
use std::time::Duration;

/// Default requests the candidate serves before it is judged for promotion.
pub const DEFAULT_CANARY_MIN_REQUESTS: u64 = 100;
/// Default time a canary may run without a verdict.
pub const DEFAULT_CANARY_MAX_DURATION: Duration = Duration::from_secs(600);
/// Default most the candidate's server-error rate may exceed the current's (a fraction: 0.01
/// is one percentage point).
pub const DEFAULT_CANARY_MAX_ERROR_INCREASE: f64 = 0.01;
/// Default most the candidate's p99 latency may be, as a multiple of the current's (plus the
/// slack).
pub const DEFAULT_CANARY_MAX_P99_RATIO: f64 = 1.5;
/// Default latency the candidate's p99 may exceed the bound by: below it, timing noise.
pub const DEFAULT_CANARY_P99_SLACK: Duration = Duration::from_millis(5);
/// Default server errors the candidate must have served before it can be rolled back early.
pub const DEFAULT_CANARY_MIN_FAILURES: u64 = 5;
/// Default largest request body copied to a shadow candidate.
pub const DEFAULT_SHADOW_BODY_LIMIT: u64 = 64 << 10;

/// The canary keys as given, each optional (a file section or the flags).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanaryKeys {
    /// `weight = 10`: the percentage of the route's requests the candidate serves (0: no
    /// canary)
    pub weight: Option<f64>,
    /// `min_requests = 100`: requests the candidate serves before it can be promoted
    pub min_requests: Option<u64>,
    /// `max_duration = "10m"`: how long a canary may run without a verdict
    #[serde(default, deserialize_with = "super::file::de::duration")]
    pub max_duration: Option<Duration>,
    /// `on_timeout = "rollback" | "promote"`: the verdict when `max_duration` passes first
    pub on_timeout: Option<OnTimeout>,
    /// `max_error_increase = 0.01`: most the candidate's error rate may exceed the current's
    pub max_error_increase: Option<f64>,
    /// `max_p99_ratio = 1.5`: most the candidate's p99 may be, times the current's
    pub max_p99_ratio: Option<f64>,
    /// `p99_slack = "5ms"`: added to the p99 bound
    #[serde(default, deserialize_with = "super::file::de::duration")]
    pub p99_slack: Option<Duration>,
    /// `min_failures = 5`: server errors before an early rollback
    pub min_failures: Option<u64>,
    /// `sticky = "cookie:session"` or `"header:x-user"`: keeps a client on one side
    pub sticky: Option<String>,
    /// `mode = "split" | "shadow"`: the candidate answers its share, or copies of it
    pub mode: Option<CanaryMode>,
    /// `deterministic = true`: a shadow response whose body differs is a mismatch
    pub deterministic: Option<bool>,
    /// `shadow_body_limit = "64KiB"`: largest request body copied to a shadow candidate
    #[serde(default, deserialize_with = "super::file::de::size")]
    pub shadow_body_limit: Option<u64>,
}

/// What keeps a client on one side: the value of a request header or cookie, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A request header (lowercase name).
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// A route's validated canary policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryPolicy {
    /// Share of the route's requests the candidate serves, in hundredths of a percent
    /// (1..=9999).
    pub weight_bp: u32,
    /// Requests the candidate serves before it can be promoted.
    pub min_requests: u64,
    /// How long a canary may run without a verdict.
    pub max_duration: Duration,
    /// The verdict when `max_duration` passes first.
    pub on_timeout: OnTimeout,
    /// Most the candidate's server-error rate may exceed the current's (a fraction).
    pub max_error_increase: f64,
    /// Most the candidate's p99 may be, times the current's.
    pub max_p99_ratio: f64,
    /// Added to the p99 bound.
    pub p99_slack: Duration,
    /// Server errors before an early rollback.
    pub min_failures: u64,
    /// What keeps a client on one side, if anything.
    pub sticky: Option<Sticky>,
    /// Split (the candidate answers) or shadow (it answers copies, compared and dropped).
    pub mode: CanaryMode,
    /// Shadow: a response body that differs from the current's is a mismatch.
    pub deterministic: bool,
    /// Shadow: largest request body copied.
    pub shadow_body_limit: u64,
}

impl CanaryPolicy {
    /// Whether the candidate runs in shadow mode.
    pub fn shadow(&self) -> bool {
        self.mode == CanaryMode::Shadow
    }
}

impl CanaryKeys {
    /// These keys with every key `over` sets replacing this one's.
    pub fn with(&self, over: &CanaryKeys) -> CanaryKeys {
        CanaryKeys {
            weight: over.weight.or(self.weight),
            min_requests: over.min_requests.or(self.min_requests),
            max_duration: over.max_duration.or(self.max_duration),
            on_timeout: over.on_timeout.or(self.on_timeout),
            max_error_increase: over.max_error_increase.or(self.max_error_increase),
            max_p99_ratio: over.max_p99_ratio.or(self.max_p99_ratio),
            p99_slack: over.p99_slack.or(self.p99_slack),
            min_failures: over.min_failures.or(self.min_failures),
            sticky: over.sticky.clone().or_else(|| self.sticky.clone()),
            mode: over.mode.or(self.mode),
            deterministic: over.deterministic.or(self.deterministic),
            shadow_body_limit: over.shadow_body_limit.or(self.shadow_body_limit),
        }
    }

    /// The policy these keys make, `None` without a weight (or with weight 0), or why they do
    /// not make one (each message names its key as in the file; `--canary-KEY` for a flag).
    pub fn policy(&self) -> Result<Option<CanaryPolicy>> {
        let Some(weight) = self.weight.filter(|w| *w != 0.0) else {
            return Ok(None);
        };
        ensure!(
            weight > 0.0 && weight < 100.0 && weight.is_finite(),
            "canary `weight` must be a percentage above 0 and below 100 (the current generation \
             serves the rest, to be compared with); got {weight}"
        );
        let weight_bp = ((weight * 100.0).round() as u32).clamp(1, 9999);
        let min_requests = self.min_requests.unwrap_or(DEFAULT_CANARY_MIN_REQUESTS);
        ensure!(
            min_requests >= 1,
            "canary `min_requests` must be at least 1"
        );
        let max_duration = self.max_duration.unwrap_or(DEFAULT_CANARY_MAX_DURATION);
        ensure!(
            !max_duration.is_zero(),
            "canary `max_duration` must be greater than zero"
        );
        let max_error_increase = self
            .max_error_increase
            .unwrap_or(DEFAULT_CANARY_MAX_ERROR_INCREASE);
        ensure!(
            (0.0..=1.0).contains(&max_error_increase),
            "canary `max_error_increase` is a fraction from 0 to 1 (0.01: one percentage point); got {max_error_increase}"
        );
        let max_p99_ratio = self.max_p99_ratio.unwrap_or(DEFAULT_CANARY_MAX_P99_RATIO);
        ensure!(
            max_p99_ratio >= 1.0 && max_p99_ratio.is_finite(),
            "canary `max_p99_ratio` must be at least 1; got {max_p99_ratio}"
        );
        let min_failures = self.min_failures.unwrap_or(DEFAULT_CANARY_MIN_FAILURES);
        ensure!(
            min_failures >= 1,
            "canary `min_failures` must be at least 1"
        );
        let sticky = self.sticky.as_deref().map(parse_sticky).transpose()?;
        Ok(Some(CanaryPolicy {
            weight_bp,
            min_requests,
            max_duration,
            on_timeout: self.on_timeout.unwrap_or(OnTimeout::Rollback),
            max_error_increase,
            max_p99_ratio,
            p99_slack: self.p99_slack.unwrap_or(DEFAULT_CANARY_P99_SLACK),
            min_failures,
            sticky,
            mode: self.mode.unwrap_or(CanaryMode::Split),
            deterministic: self.deterministic.unwrap_or(false),
            shadow_body_limit: self.shadow_body_limit.unwrap_or(DEFAULT_SHADOW_BODY_LIMIT),
        }))
    }
}

/// `header:NAME` or `cookie:NAME`.
fn parse_sticky(text: &str) -> Result<Sticky> {
    let Some((kind, name)) = text.split_once(':') else {
        bail!("canary `sticky` is `header:NAME` or `cookie:NAME`; got `{text}`");
    };
    ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b'='),
        "canary `sticky` names no valid header or cookie: `{text}`"
    );
    match kind {
        "header" => {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("canary `sticky`: `{name}` is not a header name"))?;
            Ok(Sticky::Header(name.to_ascii_lowercase()))
        }
        "cookie" => Ok(Sticky::Cookie(name.to_string())),
        _ => bail!("canary `sticky` is `header:NAME` or `cookie:NAME`; got `{text}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_weight_no_policy_and_route_keys_beat_global_ones() {
        assert_eq!(CanaryKeys::default().policy().unwrap(), None);
        let global = CanaryKeys {
            weight: Some(10.0),
            min_requests: Some(50),
            ..CanaryKeys::default()
        };
        let route = CanaryKeys {
            min_requests: Some(7),
            sticky: Some("cookie:session".into()),
            ..CanaryKeys::default()
        };
        let policy = global.with(&route).policy().unwrap().unwrap();
        assert_eq!(policy.weight_bp, 1000);
        assert_eq!(policy.min_requests, 7);
        assert_eq!(policy.sticky, Some(Sticky::Cookie("session".into())));
        let off = CanaryKeys {
            weight: Some(0.0),
            ..CanaryKeys::default()
        };
        assert_eq!(global.with(&off).policy().unwrap(), None);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (keys, needle) in [
            (
                CanaryKeys {
                    weight: Some(100.0),
                    ..Default::default()
                },
                "weight",
            ),
            (
                CanaryKeys {
                    weight: Some(-1.0),
                    ..Default::default()
                },
                "weight",
            ),
            (
                CanaryKeys {
                    weight: Some(5.0),
                    max_p99_ratio: Some(0.5),
                    ..Default::default()
                },
                "max_p99_ratio",
            ),
            (
                CanaryKeys {
                    weight: Some(5.0),
                    sticky: Some("query:x".into()),
                    ..Default::default()
                },
                "sticky",
            ),
            (
                CanaryKeys {
                    weight: Some(5.0),
                    max_error_increase: Some(2.0),
                    ..Default::default()
                },
                "max_error_increase",
            ),
        ] {
            let err = keys.policy().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
