//! A canary's verdict: the bounds of its policy applied to both sides' numbers ([`judge`]).

use super::numbers::Numbers;
use super::shadow::ShadowNumbers;
use crate::config::canary::{CanaryPolicy, OnTimeout};

/// What a canary ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The candidate becomes current.
    Promote,
    /// The candidate is dropped.
    Rollback,
}

impl Decision {
    /// Its name in metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Promote => "promoted",
            Decision::Rollback => "rolled_back",
        }
    }
}

/// A verdict and what decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Promote or roll back.
    pub decision: Decision,
    /// `errors`, `latency`, `judged`, `timeout`, `operator` or `replaced`.
    pub cause: &'static str,
    /// The numbers that decided it, in words.
    pub reason: String,
    /// The current generation's numbers then.
    pub current: Numbers,
    /// The candidate's.
    pub candidate: Numbers,
    /// A shadow candidate's comparisons then.
    pub shadow: Option<ShadowNumbers>,
}

/// The verdict `policy` gives these numbers now, if any (`timed_out`: `max_duration` passed).
pub fn judge(
    policy: &CanaryPolicy,
    current: &Numbers,
    candidate: &Numbers,
    timed_out: bool,
) -> Option<Verdict> {
    let verdict = |decision, cause, reason: String| Verdict {
        decision,
        cause,
        reason,
        current: *current,
        candidate: *candidate,
        shadow: None,
    };
    let error_bound = current.error_rate() + policy.max_error_increase;
    let errors_broken = candidate.error_rate() > error_bound;
    let errors_reason = || {
        format!(
            "error rate {:.1} % ({} of {}) against the current's {:.1} % ({} of {}); bound {:.1} %",
            candidate.error_rate() * 100.0,
            candidate.errors,
            candidate.requests,
            current.error_rate() * 100.0,
            current.errors,
            current.requests,
            error_bound * 100.0
        )
    };
    if errors_broken && candidate.errors >= policy.min_failures {
        return Some(verdict(Decision::Rollback, "errors", errors_reason()));
    }
    let p99_bound = current.p99.mul_f64(policy.max_p99_ratio) + policy.p99_slack;
    let latency_broken = current.requests > 0 && candidate.p99 > p99_bound;
    let latency_reason = || {
        format!(
            "p99 {:.1} ms against the current's {:.1} ms; bound {:.1} ms",
            candidate.p99.as_secs_f64() * 1e3,
            current.p99.as_secs_f64() * 1e3,
            p99_bound.as_secs_f64() * 1e3
        )
    };
    if candidate.requests >= policy.min_requests || timed_out {
        if errors_broken {
            return Some(verdict(Decision::Rollback, "errors", errors_reason()));
        }
        if latency_broken {
            return Some(verdict(Decision::Rollback, "latency", latency_reason()));
        }
    }
    let within = || format!("{}; {}", errors_reason(), latency_reason());
    if candidate.requests >= policy.min_requests {
        return Some(verdict(
            Decision::Promote,
            "judged",
            format!(
                "{} requests within the bounds: {}",
                candidate.requests,
                within()
            ),
        ));
    }
    if timed_out {
        let (decision, what) = match policy.on_timeout {
            OnTimeout::Promote => (Decision::Promote, "promoted"),
            OnTimeout::Rollback => (Decision::Rollback, "rolled back"),
        };
        return Some(verdict(
            decision,
            "timeout",
            format!(
                "no verdict within {:?} ({} of {} requests); {what} as `on_timeout` says: {}",
                policy.max_duration,
                candidate.requests,
                policy.min_requests,
                within()
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::numbers::Side;
    use super::*;
    use crate::config::canary::CanaryKeys;
    use std::time::Duration;

    fn policy(min_requests: u64) -> CanaryPolicy {
        CanaryKeys {
            weight: Some(10.0),
            min_requests: Some(min_requests),
            ..CanaryKeys::default()
        }
        .policy()
        .unwrap()
        .unwrap()
    }

    fn side(requests: u64, errors: u64, latency: Duration) -> Numbers {
        let side = Side::default();
        for i in 0..requests {
            side.record(i < errors, latency);
        }
        side.snapshot()
    }

    #[test]
    fn a_failing_candidate_is_rolled_back_after_min_failures() {
        let p = policy(100);
        let current = side(1000, 0, Duration::from_millis(1));
        let candidate = side(4, 4, Duration::from_millis(1));
        assert_eq!(judge(&p, &current, &candidate, false), None);
        let candidate = side(5, 5, Duration::from_millis(1));
        let v = judge(&p, &current, &candidate, false).unwrap();
        assert_eq!((v.decision, v.cause), (Decision::Rollback, "errors"));
    }

    #[test]
    fn a_slow_candidate_is_rolled_back_at_min_requests_and_a_good_one_promoted() {
        let p = policy(100);
        let current = side(1000, 0, Duration::from_millis(1));
        let slow = side(99, 0, Duration::from_millis(50));
        assert_eq!(judge(&p, &current, &slow, false), None);
        let slow = side(100, 0, Duration::from_millis(50));
        let v = judge(&p, &current, &slow, false).unwrap();
        assert_eq!((v.decision, v.cause), (Decision::Rollback, "latency"));
        let good = side(100, 0, Duration::from_micros(1100));
        let v = judge(&p, &current, &good, false).unwrap();
        assert_eq!((v.decision, v.cause), (Decision::Promote, "judged"));
    }

    #[test]
    fn the_timeout_follows_on_timeout() {
        let mut p = policy(100);
        let current = side(100, 0, Duration::from_millis(1));
        let few = side(3, 0, Duration::from_millis(1));
        let v = judge(&p, &current, &few, true).unwrap();
        assert_eq!((v.decision, v.cause), (Decision::Rollback, "timeout"));
        p.on_timeout = OnTimeout::Promote;
        let v = judge(&p, &current, &few, true).unwrap();
        assert_eq!((v.decision, v.cause), (Decision::Promote, "timeout"));
    }
}
