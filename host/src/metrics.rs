//! Prometheus metrics, served as text by the admin listener's `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Labels of a reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `loaded`, `unchanged`, `failed` (reloads), `ok`, `failed`, `timeout` (builds) or
    /// `changed`, `unchanged`, `failed` (config reloads).
    pub result: &'static str,
}

/// Labels of the reload-phase histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// `read`, `compile`, `cache` or `validate`.
    pub phase: &'static str,
}

/// The values of [`RequestLabels::status_class`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `2xx`, `4xx`, `5xx`…
    pub status_class: &'static str,
    /// The generation that served it (0: none).
    pub generation: u64,
}

/// Labels of the guest-trap counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `timeout`, `memory`, `trap`, `pool`, `no_response`.
    pub kind: &'static str,
}

/// Labels of the key-value operation counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyValueLabels {
    /// `get`, `set`, `delete`, `exists`, `list_keys`, `increment`, `get_many`, `set_many`,
    /// `delete_many`, `open`.
    pub op: &'static str,
    /// `ok`, `refused` (a limit or a bad argument: the guest's fault) or `error` (the backend
    /// failed).
    pub result: &'static str,
}

/// Labels of the serving-digest gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DigestLabel {
    /// The manifest digest of the component being served (`sha256:…`).
    pub digest: String,
}

/// Labels of the registry error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryErrorLabel {
    /// `unreachable`, `auth`, `not_found`, `not_wasm`, `digest_mismatch`, `too_large`, `other`.
    pub kind: &'static str,
}

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    /// Reload attempts by result.
    pub reloads: Family<ResultLabel, Counter>,
    /// Reload time by phase.
    pub reload_seconds: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    /// The generation being served (0: none).
    pub generation: Gauge,
    /// Requests by status class and generation.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request arrival to response head.
    pub request_seconds: Histogram,
    /// Requests holding a concurrency slot.
    pub in_flight: Gauge,
    /// Guest failures by kind.
    pub guest_traps: Family<KindLabel, Counter>,
    /// Build runs by result.
    pub builds: Family<ResultLabel, Counter>,
    /// Key-value operations by operation and result.
    pub keyvalue_ops: Family<KeyValueLabels, Counter>,
    /// Time of one key-value operation.
    pub keyvalue_seconds: Histogram,
    /// Re-reads of the `wasi:config` values by result.
    pub config_reloads: Family<ResultLabel, Counter>,
    /// Registry polls by result (`unchanged`, `new`, `error`).
    pub registry_polls: Family<ResultLabel, Counter>,
    /// Registry failures by kind.
    pub registry_errors: Family<RegistryErrorLabel, Counter>,
    /// 1 for the manifest digest being served (a registry component only).
    pub serving_digest: Family<DigestLabel, Gauge>,
    /// Request series of generations below this number have been dropped.
    forgotten_below: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hotswap");
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Component reload attempts by result",
            reloads.clone(),
        );
        let reload_seconds = Family::<PhaseLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.5, 14))) as fn() -> Histogram,
        );
        registry.register(
            "reload_duration_seconds",
            "Reload time by phase",
            reload_seconds.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "generation",
            "Generation currently served (0: none)",
            generation.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by status class and generation",
            requests.clone(),
        );
        let request_seconds = Histogram::new(exponential_buckets(0.0001, 2.5, 16));
        registry.register(
            "request_duration_seconds",
            "Time from request arrival to response head",
            request_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests holding a concurrency slot",
            in_flight.clone(),
        );
        let guest_traps = Family::<KindLabel, Counter>::default();
        registry.register("guest_traps", "Guest failures by kind", guest_traps.clone());
        let builds = Family::<ResultLabel, Counter>::default();
        registry.register("builds", "Build runs by result", builds.clone());
        let keyvalue_ops = Family::<KeyValueLabels, Counter>::default();
        registry.register(
            "keyvalue_operations",
            "Key-value operations by operation and result",
            keyvalue_ops.clone(),
        );
        let keyvalue_seconds = Histogram::new(exponential_buckets(0.00001, 2.5, 14));
        registry.register(
            "keyvalue_operation_duration_seconds",
            "Time of one key-value operation",
            keyvalue_seconds.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Re-reads of the wasi:config values by result (changed, unchanged, failed)",
            config_reloads.clone(),
        );
        let registry_polls = Family::<ResultLabel, Counter>::default();
        registry.register(
            "registry_polls",
            "Registry polls by result (unchanged, new, error)",
            registry_polls.clone(),
        );
        let registry_errors = Family::<RegistryErrorLabel, Counter>::default();
        registry.register(
            "registry_errors",
            "Registry failures by kind",
            registry_errors.clone(),
        );
        let serving_digest = Family::<DigestLabel, Gauge>::default();
        registry.register(
            "serving_digest",
            "1 for the manifest digest of the registry component being served",
            serving_digest.clone(),
        );
        Metrics {
            registry,
            registry_polls,
            registry_errors,
            serving_digest,
            keyvalue_ops,
            keyvalue_seconds,
            config_reloads,
            reloads,
            reload_seconds,
            generation,
            requests,
            request_seconds,
            in_flight,
            guest_traps,
            builds,
            forgotten_below: AtomicU64::new(1),
        }
    }
}

impl Metrics {
    /// Counts one reload attempt.
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Records the duration of one reload phase.
    pub fn phase(&self, phase: &'static str, took: Duration) {
        self.reload_seconds
            .get_or_create(&PhaseLabel { phase })
            .observe(took.as_secs_f64());
    }

    /// Counts one finished request.
    pub fn request(&self, status: u16, generation: u64, took: Duration) {
        // `StatusCode` is 100..=999: 1xx..4xx by their hundreds, everything from 500 up 5xx.
        let status_class = STATUS_CLASSES[usize::from(status / 100).clamp(1, 5) - 1];
        self.requests
            .get_or_create(&RequestLabels {
                status_class,
                generation,
            })
            .inc();
        self.request_seconds.observe(took.as_secs_f64());
    }

    /// Drops the request series of generations older than `oldest_kept`: they can no longer be
    /// served, and a label value per deploy would otherwise grow the exposition without bound.
    /// (A request still running on one of them recreates its series when it ends.)
    pub fn forget_generations_below(&self, oldest_kept: u64) {
        let from = self
            .forgotten_below
            .fetch_max(oldest_kept, Ordering::Relaxed);
        for generation in from..oldest_kept {
            for status_class in STATUS_CLASSES {
                self.requests.remove(&RequestLabels {
                    status_class,
                    generation,
                });
            }
        }
    }

    /// Counts one guest failure.
    pub fn trap(&self, kind: &'static str) {
        self.guest_traps.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts and times one key-value operation.
    pub fn keyvalue_op(&self, op: &'static str, result: &'static str, took: Duration) {
        self.keyvalue_ops
            .get_or_create(&KeyValueLabels { op, result })
            .inc();
        if op != "open" {
            self.keyvalue_seconds.observe(took.as_secs_f64());
        }
    }

    /// Counts one re-read of the config values.
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Records that `generation` now serves: the generation gauge, and the digest series (the
    /// previous digest's series is removed, so a dashboard sees one digest per replica).
    pub fn serving(&self, generation: &crate::slot::Generation) {
        self.generation.set(generation.number as i64);
        self.serving_digest.clear();
        if let Some(digest) = &generation.digest {
            self.serving_digest
                .get_or_create(&DigestLabel {
                    digest: digest.clone(),
                })
                .set(1);
        }
    }

    /// Counts one registry poll.
    pub fn registry_poll(&self, result: &'static str) {
        self.registry_polls
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts one registry failure.
    pub fn registry_error(&self, kind: &'static str) {
        self.registry_errors
            .get_or_create(&RegistryErrorLabel { kind })
            .inc();
    }

    /// Counts one build run.
    pub fn build(&self, result: &'static str) {
        self.builds.get_or_create(&ResultLabel { result }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
