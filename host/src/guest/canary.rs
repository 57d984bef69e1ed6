//! A canary: a new generation (the candidate) serving beside the current one on a share of a
//! route's requests, judged on the same traffic in the same process.
//!
//! Each request of the route picks a side ([`Canary::pick`]): by the hash of its sticky header
//! or cookie when the policy names one (so a client stays on one side), else at random. Both
//! sides count their requests and server errors (5xx, which is what traps, deadlines, memory
//! and a guest without a response become) and keep a latency histogram, from the moment the
//! candidate starts. After each request the numbers are judged ([`judge`]):
//!
//! - **rolled back** at once when the candidate has answered `min_failures` server errors and
//!   its error rate is above the current's by more than `max_error_increase`, or when it has
//!   served `min_requests` and breaks either bound (error rate, or p99 above the current's p99
//!   × `max_p99_ratio` + `p99_slack`);
//! - **promoted** once it has served `min_requests` within both bounds;
//! - at `max_duration` without a verdict, `on_timeout` decides.
//!
//! Only one verdict is ever taken per canary ([`Canary::claim`]); the slot carries it out
//! ([`crate::guest::slot::Slot::conclude`]).

use crate::config::canary::{CanaryPolicy, OnTimeout, Sticky};
use crate::guest::slot::Generation;
use arc_swap::ArcSwap;
use http::HeaderMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which side of a route's canary served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The current generation.
    Current,
    /// The candidate.
    Candidate,
}

impl Role {
    /// Its name in headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Candidate => "candidate",
        }
    }
}

/// Sub-buckets per power of two in a latency histogram (±12 % resolution).
const SUB_BUCKETS: u32 = 4;
/// Buckets: powers of two of microseconds up to 2^30 µs (~18 min), each split in four.
const BUCKETS: usize = 31 * SUB_BUCKETS as usize;

/// One side's numbers, lock-free.
struct Side {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for Side {
    fn default() -> Self {
        Side {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The histogram bucket of `latency`.
fn bucket(latency: Duration) -> usize {
    let us = latency.as_micros().clamp(1, 1 << 30) as u64;
    let log = 63 - us.leading_zeros();
    let sub = if log >= 2 {
        ((us >> (log - 2)) & 3) as u32
    } else {
        0
    };
    ((log * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `index`.
fn bucket_bound(index: usize) -> Duration {
    let log = index as u32 / SUB_BUCKETS;
    let sub = index as u64 % SUB_BUCKETS as u64;
    let us = if log >= 2 {
        (1u64 << log) + ((sub + 1) << (log - 2)) - 1
    } else {
        1u64 << (log + 1)
    };
    Duration::from_micros(us)
}

impl Side {
    fn record(&self, error: bool, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Numbers {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Duration {
            if total == 0 {
                return Duration::ZERO;
            }
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return bucket_bound(i);
                }
            }
            bucket_bound(BUCKETS - 1)
        };
        Numbers {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
        }
    }
}

/// One side's numbers at a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Numbers {
    /// Requests served since the canary began.
    pub requests: u64,
    /// Of which server errors.
    pub errors: u64,
    /// Median latency (to the response head; histogram upper bound).
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl Numbers {
    /// Server errors per request (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// As JSON, for the admin API.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate(),
            "p50_ms": self.p50.as_secs_f64() * 1e3,
            "p90_ms": self.p90.as_secs_f64() * 1e3,
            "p99_ms": self.p99.as_secs_f64() * 1e3,
        })
    }
}

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
}

/// A running canary.
pub struct Canary {
    /// The candidate (replaced in place by its own tier-up).
    candidate: ArcSwap<Generation>,
    /// Its policy.
    pub policy: CanaryPolicy,
    /// When it began.
    pub started: Instant,
    current_side: Side,
    candidate_side: Side,
    decided: AtomicBool,
    /// The verdict, once taken.
    verdict: std::sync::Mutex<Option<Verdict>>,
}

impl Canary {
    /// A canary of `candidate` under `policy`, beginning now.
    pub fn new(candidate: Arc<Generation>, policy: CanaryPolicy) -> Canary {
        Canary {
            candidate: ArcSwap::new(candidate),
            policy,
            started: Instant::now(),
            current_side: Side::default(),
            candidate_side: Side::default(),
            decided: AtomicBool::new(false),
            verdict: std::sync::Mutex::new(None),
        }
    }

    /// The candidate.
    pub fn candidate(&self) -> Arc<Generation> {
        self.candidate.load_full()
    }

    /// Replaces the candidate by its optimised build (a tier-up): same generation, same
    /// numbers.
    pub fn tier_up(&self, optimized: Arc<Generation>) {
        self.candidate.store(optimized);
    }

    /// The side a request goes to.
    pub fn pick(&self, headers: &HeaderMap) -> Role {
        let point = match self
            .policy
            .sticky
            .as_ref()
            .and_then(|s| sticky_value(s, headers))
        {
            Some(value) => hash(value) % 10_000,
            None => random() % 10_000,
        };
        if point < u64::from(self.policy.weight_bp) {
            Role::Candidate
        } else {
            Role::Current
        }
    }

    /// Counts a request of `role` (a server error or not, answered in `latency`) and judges;
    /// the verdict, if this request decided one (and no other verdict was taken before).
    pub fn record(&self, role: Role, error: bool, latency: Duration) -> Option<Verdict> {
        match role {
            Role::Current => self.current_side.record(error, latency),
            Role::Candidate => self.candidate_side.record(error, latency),
        }
        // Only the candidate's requests can bring its verdict (the timer brings the rest), and
        // only once it has enough of them or enough errors: until then a request costs four
        // counter reads here, not a look at both histograms.
        if role == Role::Current || self.decided.load(Ordering::Relaxed) {
            return None;
        }
        let count = |side: &Side| {
            (
                side.requests.load(Ordering::Relaxed),
                side.errors.load(Ordering::Relaxed),
            )
        };
        let (requests, errors) = count(&self.candidate_side);
        let (current_requests, current_errors) = count(&self.current_side);
        let rate = |errors: u64, requests: u64| errors as f64 / requests.max(1) as f64;
        let errors_broken = errors >= self.policy.min_failures
            && rate(errors, requests)
                > rate(current_errors, current_requests) + self.policy.max_error_increase;
        if requests < self.policy.min_requests && !errors_broken {
            return None;
        }
        let (current, candidate) = self.numbers();
        let verdict = judge(&self.policy, &current, &candidate, false)?;
        self.claim(verdict)
    }

    /// The verdict at `max_duration`, if none was taken before.
    pub fn time_out(&self) -> Option<Verdict> {
        let (current, candidate) = self.numbers();
        let verdict = judge(&self.policy, &current, &candidate, true)?;
        self.claim(verdict)
    }

    /// An operator's verdict (or a newer build's), if none was taken before.
    pub fn decide(
        &self,
        decision: Decision,
        cause: &'static str,
        reason: String,
    ) -> Option<Verdict> {
        let (current, candidate) = self.numbers();
        self.claim(Verdict {
            decision,
            cause,
            reason,
            current,
            candidate,
        })
    }

    /// Takes `verdict` as this canary's only one: `None` if another was taken first.
    fn claim(&self, verdict: Verdict) -> Option<Verdict> {
        if self
            .decided
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict.clone());
        Some(verdict)
    }

    /// The verdict taken, if any.
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Both sides' numbers now: (current, candidate).
    pub fn numbers(&self) -> (Numbers, Numbers) {
        (self.current_side.snapshot(), self.candidate_side.snapshot())
    }
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

/// The value `sticky` names in `headers`, if the request has it.
fn sticky_value<'h>(sticky: &Sticky, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    match sticky {
        Sticky::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes()),
        Sticky::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let (key, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
                (key == name.as_bytes()).then(|| &value[1..])
            }),
    }
}

/// FNV-1a, then a final mix: the same value always lands at the same point.
fn hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// A splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A pseudo-random number, different on every call (a per-thread splitmix64 sequence).
fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                ^ (std::process::id() as u64) << 32,
        );
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        mix(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::canary::CanaryKeys;

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
    fn buckets_bound_what_they_hold() {
        for us in [1u64, 3, 7, 100, 999, 50_000, 3_000_000] {
            let d = Duration::from_micros(us);
            let b = bucket(d);
            assert!(bucket_bound(b) >= d, "{us} µs in bucket {b}");
            assert!(
                bucket_bound(b) <= d.mul_f64(1.26) + Duration::from_micros(2),
                "{us}"
            );
        }
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

    #[test]
    fn a_sticky_cookie_always_lands_on_the_same_side() {
        let mut p = policy(100);
        p.sticky = Some(Sticky::Cookie("session".into()));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; session=user-42; b=2".parse().unwrap(),
        );
        let v = sticky_value(p.sticky.as_ref().unwrap(), &headers);
        assert_eq!(v, Some(&b"user-42"[..]));
        assert_eq!(hash(b"user-42"), hash(b"user-42"));
        assert_ne!(hash(b"user-42"), hash(b"user-43"));
    }
}
