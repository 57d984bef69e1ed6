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
//! Only one verdict is ever taken per canary (`Canary::claim`); the slot carries it out
//! ([`crate::guest::slot::Slot::conclude`]).

mod judge;
mod numbers;
mod shadow;

pub use judge::{Decision, Verdict, judge};
pub use numbers::Numbers;
pub use shadow::{Comparison, NotCopied, ShadowNumbers};

use crate::config::canary::{CanaryPolicy, Sticky};
use crate::guest::bounds::Bounds;
use crate::guest::slot::Generation;
use arc_swap::ArcSwap;
use http::HeaderMap;
use numbers::Side;
use shadow::ShadowCounts;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Shadow mode: how the copies compared.
    shadow: ShadowCounts,
    /// Shadow mode: what the copies run with (their scratch key-value space among it), made
    /// on the first copy and dropped with the canary.
    shadow_bounds: OnceLock<Arc<Bounds>>,
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
            shadow: ShadowCounts::default(),
            shadow_bounds: OnceLock::new(),
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

    /// The side a request goes to (in shadow mode, always the current generation: whether the
    /// candidate gets a copy is [`Canary::copies`]).
    pub fn pick(&self, headers: &HeaderMap) -> Role {
        if self.policy.shadow() {
            return Role::Current;
        }
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

    /// Shadow mode: whether the candidate gets a copy of this request (its weight's share, at
    /// random).
    pub fn copies(&self) -> bool {
        self.policy.shadow() && random() % 10_000 < u64::from(self.policy.weight_bp)
    }

    /// Shadow mode: what the copies of route requests bounded by `route` run with.
    pub fn shadow_bounds(&self, route: &Bounds) -> Arc<Bounds> {
        self.shadow_bounds
            .get_or_init(|| Arc::new(route.shadow()))
            .clone()
    }

    /// Shadow mode: counts a request that was picked and not copied.
    pub fn not_copied(&self, why: NotCopied) {
        self.shadow.not_copied(why);
    }

    /// Shadow mode: counts how a copy compared; whether to log it (the first mismatches, then
    /// a sample).
    pub fn compared(&self, comparison: Comparison) -> bool {
        self.shadow.compared(comparison)
    }

    /// Shadow mode: the comparisons so far.
    pub fn shadow_numbers(&self) -> ShadowNumbers {
        self.shadow.snapshot()
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
            shadow: None,
        })
    }

    /// Takes `verdict` as this canary's only one: `None` if another was taken first.
    fn claim(&self, mut verdict: Verdict) -> Option<Verdict> {
        if self
            .decided
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        verdict.shadow = self.policy.shadow().then(|| self.shadow_numbers());
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

    #[test]
    fn a_sticky_cookie_always_lands_on_the_same_side() {
        let mut p = CanaryKeys {
            weight: Some(10.0),
            ..CanaryKeys::default()
        }
        .policy()
        .unwrap()
        .unwrap();
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
