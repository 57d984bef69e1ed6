//! One side's numbers: request and server-error counts and a latency histogram, lock-free, and
//! the percentiles read from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two in a latency histogram (±12 % resolution).
const SUB_BUCKETS: u32 = 4;
/// Buckets: powers of two of microseconds up to 2^30 µs (~18 min), each split in four.
const BUCKETS: usize = 31 * SUB_BUCKETS as usize;

/// One side's numbers, lock-free.
pub(super) struct Side {
    pub(super) requests: AtomicU64,
    pub(super) errors: AtomicU64,
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
    pub(super) fn record(&self, error: bool, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Numbers {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
