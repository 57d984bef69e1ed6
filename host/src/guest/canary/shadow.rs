//! A shadow canary's comparisons: each copied request's response from the candidate against the
//! current generation's, counted by outcome, with the first mismatches (and then one in every
//! [`SAMPLE_EVERY`]) picked out for the log.

use std::sync::atomic::{AtomicU64, Ordering};

/// Mismatches logged before sampling begins.
const LOGGED_FIRST: u64 = 10;
/// After the first few, one mismatch in this many is logged.
const SAMPLE_EVERY: u64 = 1000;

/// How one copy's response compared with the current's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same status (and, for a deterministic route, the same body).
    Matched,
    /// Another status.
    Status {
        /// The current's.
        current: u16,
        /// The candidate's.
        candidate: u16,
    },
    /// The same status, another body (deterministic routes only).
    Body {
        /// The status both answered.
        status: u16,
    },
    /// Nothing to compare with: the current's response did not complete (its client went
    /// away), or the candidate's body failed midway after its head.
    Incomplete,
}

impl Comparison {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Matched => "matched",
            Comparison::Status { .. } => "status_mismatch",
            Comparison::Body { .. } => "body_mismatch",
            Comparison::Incomplete => "incomplete",
        }
    }

    /// Whether the candidate answered differently.
    pub fn mismatched(self) -> bool {
        matches!(self, Comparison::Status { .. } | Comparison::Body { .. })
    }
}

/// Why a request picked for a copy was not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCopied {
    /// Its body is larger than the limit, or of unknown length.
    Body,
    /// The route was near its concurrency cap: shadow load goes first.
    Shed,
}

impl NotCopied {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NotCopied::Body => "skipped_body",
            NotCopied::Shed => "shed",
        }
    }
}

/// The counts of one shadow canary, lock-free.
#[derive(Default)]
pub(super) struct ShadowCounts {
    matched: AtomicU64,
    status_mismatches: AtomicU64,
    body_mismatches: AtomicU64,
    incomplete: AtomicU64,
    skipped_body: AtomicU64,
    shed: AtomicU64,
}

impl ShadowCounts {
    /// Counts a comparison; whether it is one to log (a mismatch among the first few, or the
    /// sampled one).
    pub(super) fn compared(&self, comparison: Comparison) -> bool {
        let counter = match comparison {
            Comparison::Matched => &self.matched,
            Comparison::Status { .. } => &self.status_mismatches,
            Comparison::Body { .. } => &self.body_mismatches,
            Comparison::Incomplete => &self.incomplete,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !comparison.mismatched() {
            return false;
        }
        let seen = self.status_mismatches.load(Ordering::Relaxed)
            + self.body_mismatches.load(Ordering::Relaxed);
        seen <= LOGGED_FIRST || seen.is_multiple_of(SAMPLE_EVERY)
    }

    /// Counts a request that was not copied.
    pub(super) fn not_copied(&self, why: NotCopied) {
        match why {
            NotCopied::Body => &self.skipped_body,
            NotCopied::Shed => &self.shed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(super) fn snapshot(&self) -> ShadowNumbers {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ShadowNumbers {
            matched: get(&self.matched),
            status_mismatches: get(&self.status_mismatches),
            body_mismatches: get(&self.body_mismatches),
            incomplete: get(&self.incomplete),
            skipped_body: get(&self.skipped_body),
            shed: get(&self.shed),
        }
    }
}

/// A shadow canary's counts at a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShadowNumbers {
    /// Copies answered like the current.
    pub matched: u64,
    /// Copies answered with another status.
    pub status_mismatches: u64,
    /// Copies answered with the same status and another body (deterministic routes).
    pub body_mismatches: u64,
    /// Copies with nothing to compare with.
    pub incomplete: u64,
    /// Requests not copied because of their body.
    pub skipped_body: u64,
    /// Requests not copied because the route was near its concurrency cap.
    pub shed: u64,
}

impl ShadowNumbers {
    /// As JSON, for the admin API.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "matched": self.matched,
            "mismatched": self.status_mismatches + self.body_mismatches,
            "status_mismatches": self.status_mismatches,
            "body_mismatches": self.body_mismatches,
            "incomplete": self.incomplete,
            "not_copied": { "body": self.skipped_body, "shed": self.shed },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_mismatches_are_logged_then_one_in_a_thousand() {
        let counts = ShadowCounts::default();
        assert!(!counts.compared(Comparison::Matched));
        let logged = (0..2000)
            .filter(|_| counts.compared(Comparison::Body { status: 200 }))
            .count();
        assert_eq!(logged, 10 + 2);
        counts.not_copied(NotCopied::Shed);
        let n = counts.snapshot();
        assert_eq!((n.matched, n.body_mismatches, n.shed), (1, 2000, 1));
    }
}
