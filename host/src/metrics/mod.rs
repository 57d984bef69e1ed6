//! Prometheus metrics, served as text by the admin listener's `GET /metrics`. The host's
//! series and their labels are here; a route writes its own through [`RouteMetrics`]
//! (`metrics/route.rs`).

mod route;

pub use route::RouteMetrics;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name of a route, as a label value.
pub type RouteName = Arc<str>;

/// Labels of a per-route series with no other label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route's name.
    pub route: RouteName,
}

/// Labels of a per-route result counter (reloads, builds, registry polls).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteResultLabels {
    /// The route's name.
    pub route: RouteName,
    /// `loaded`, `unchanged`, `failed` (reloads), `ok`, `failed`, `timeout` (builds) or
    /// `unchanged`, `new`, `error` (registry polls).
    pub result: &'static str,
}

/// Labels of the config-reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `changed`, `unchanged` or `failed`.
    pub result: &'static str,
}

/// Labels of the reload-phase histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The route's name.
    pub route: RouteName,
    /// `read`, `compile`, `cache` or `validate`.
    pub phase: &'static str,
}

/// The values of [`RequestLabels::status_class`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route that served it.
    pub route: RouteName,
    /// `2xx`, `4xx`, `5xx`…
    pub status_class: &'static str,
    /// The generation that served it (0: none).
    pub generation: u64,
}

/// Labels of the guest-trap counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The route whose guest failed.
    pub route: RouteName,
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
    /// The route serving it.
    pub route: RouteName,
    /// The manifest digest of the component being served (`sha256:…`).
    pub digest: String,
}

/// Labels of the serving-world gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorldLabel {
    /// The route.
    pub route: RouteName,
    /// `wasi:http@0.2` or `wasi:http@0.3`.
    pub world: &'static str,
}

/// Labels of the serving-tier gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    /// The route.
    pub route: RouteName,
    /// `fast` (Winch) or `optimized` (Cranelift).
    pub tier: &'static str,
}

/// Labels of the registry error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryErrorLabel {
    /// The route whose registry failed.
    pub route: RouteName,
    /// `unreachable`, `auth`, `not_found`, `not_wasm`, `digest_mismatch`, `too_large`, `other`.
    pub kind: &'static str,
}

/// Labels of the certificate expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// The certificate file.
    pub file: String,
    /// Its subject.
    pub subject: String,
}

/// Every metric the host exports. Per-route series are written through a [`RouteMetrics`].
pub struct Metrics {
    registry: Registry,
    /// Reload attempts by route and result.
    pub reloads: Family<RouteResultLabels, Counter>,
    /// Reload time by route and phase.
    pub reload_seconds: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    /// The generation each route serves (0: none).
    pub generation: Family<RouteLabel, Gauge>,
    /// Requests by route, status class and generation.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request arrival to response head, by route.
    pub request_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Requests holding a concurrency slot, by route.
    pub in_flight: Family<RouteLabel, Gauge>,
    /// Requests that matched no route.
    pub unrouted: Counter,
    /// Guest failures by route and kind.
    pub guest_traps: Family<KindLabel, Counter>,
    /// Build runs by route and result.
    pub builds: Family<RouteResultLabels, Counter>,
    /// Key-value operations by operation and result.
    pub keyvalue_ops: Family<KeyValueLabels, Counter>,
    /// Time of one key-value operation.
    pub keyvalue_seconds: Histogram,
    /// Re-reads of the `wasi:config` values by result.
    pub config_reloads: Family<ResultLabel, Counter>,
    /// Registry polls by route and result (`unchanged`, `new`, `error`).
    pub registry_polls: Family<RouteResultLabels, Counter>,
    /// Registry failures by route and kind.
    pub registry_errors: Family<RegistryErrorLabel, Counter>,
    /// 1 for the manifest digest each route serves (registry components only).
    pub serving_digest: Family<DigestLabel, Gauge>,
    /// 1 for the `wasi:http` world of the generation each route serves.
    pub serving_world: Family<WorldLabel, Gauge>,
    /// 1 for the compiler tier of the generation each route serves.
    pub serving_tier: Family<TierLabel, Gauge>,
    /// Tier-ups (a Winch build replaced by its Cranelift build) by route and result.
    pub tier_ups: Family<RouteResultLabels, Counter>,
    /// Reloads of the TLS certificates by result (`loaded`, `failed`).
    pub tls_reloads: Family<ResultLabel, Counter>,
    /// The `notAfter` of each certificate that serves, in seconds since the Unix epoch.
    pub tls_expiry: Family<CertLabel, Gauge>,
    /// Trace spans by what became of them (`exported`; `dropped`: the export queue was full;
    /// `failed`: the collector refused them or could not be reached).
    pub trace_spans: Family<ResultLabel, Counter>,
    /// `hotswap_canary_requests_total{route,role,outcome}`
    pub canary_requests: Family<CanaryRequestLabels, Counter>,
    /// `hotswap_canary_verdicts_total{route,verdict,cause}`
    pub canary_verdicts: Family<CanaryVerdictLabels, Counter>,
    /// `hotswap_canary_candidate_generation{route}` (0: no canary runs)
    pub canary_candidate: Family<RouteLabel, Gauge>,
    /// `hotswap_canary_shadow_total{route,outcome}`
    pub canary_shadow: Family<CanaryShadowLabels, Counter>,
}

/// Labels of a canary's request series: which side served, and how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryRequestLabels {
    /// The route's name.
    pub route: RouteName,
    /// `current` or `candidate`.
    pub role: &'static str,
    /// `ok` or `error` (a server error: 5xx, a trap, a deadline, memory, no response).
    pub outcome: &'static str,
}

/// Labels of a shadow canary's copies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryShadowLabels {
    /// The route's name.
    pub route: RouteName,
    /// `matched`, `status_mismatch`, `body_mismatch`, `incomplete`, or why a picked request
    /// was not copied: `skipped_body`, `shed`.
    pub outcome: &'static str,
}

/// Labels of a canary verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryVerdictLabels {
    /// The route's name.
    pub route: RouteName,
    /// `promoted` or `rolled_back`.
    pub verdict: &'static str,
    /// What decided it: `errors`, `latency`, `judged` (a promotion on the numbers), `timeout`,
    /// `operator`, or `replaced` (a newer build took the candidate's place).
    pub cause: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hotswap");
        let reloads = Family::<RouteResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Component reload attempts by route and result",
            reloads.clone(),
        );
        let reload_seconds = Family::<PhaseLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.5, 14))) as fn() -> Histogram,
        );
        registry.register(
            "reload_duration_seconds",
            "Reload time by route and phase",
            reload_seconds.clone(),
        );
        let generation = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "generation",
            "Generation each route serves (0: none)",
            generation.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, status class and generation",
            requests.clone(),
        );
        let request_seconds = Family::<RouteLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.5, 16))) as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request arrival to response head, by route",
            request_seconds.clone(),
        );
        let in_flight = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "requests_in_flight",
            "Requests holding a concurrency slot, by route",
            in_flight.clone(),
        );
        let unrouted = Counter::default();
        registry.register(
            "unrouted_requests",
            "Requests that matched no route (answered 404)",
            unrouted.clone(),
        );
        let guest_traps = Family::<KindLabel, Counter>::default();
        registry.register(
            "guest_traps",
            "Guest failures by route and kind",
            guest_traps.clone(),
        );
        let builds = Family::<RouteResultLabels, Counter>::default();
        registry.register("builds", "Build runs by route and result", builds.clone());
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
        let registry_polls = Family::<RouteResultLabels, Counter>::default();
        registry.register(
            "registry_polls",
            "Registry polls by route and result (unchanged, new, error)",
            registry_polls.clone(),
        );
        let registry_errors = Family::<RegistryErrorLabel, Counter>::default();
        registry.register(
            "registry_errors",
            "Registry failures by route and kind",
            registry_errors.clone(),
        );
        let serving_digest = Family::<DigestLabel, Gauge>::default();
        registry.register(
            "serving_digest",
            "1 for the manifest digest of the registry component each route serves",
            serving_digest.clone(),
        );
        let serving_world = Family::<WorldLabel, Gauge>::default();
        registry.register(
            "serving_world",
            "1 for the wasi:http world (wasi:http@0.2 or @0.3) of the generation each route serves",
            serving_world.clone(),
        );
        let serving_tier = Family::<TierLabel, Gauge>::default();
        registry.register(
            "serving_tier",
            "1 for the compiler tier (fast: Winch, optimized: Cranelift) of the generation each route serves",
            serving_tier.clone(),
        );
        let tier_ups = Family::<RouteResultLabels, Counter>::default();
        registry.register(
            "tier_ups",
            "Tier-ups (a Winch build replaced by its Cranelift build) by route and result (serving, failed, dropped)",
            tier_ups.clone(),
        );
        let tls_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tls_reloads",
            "Reloads of the TLS certificates by result (loaded, failed)",
            tls_reloads.clone(),
        );
        let tls_expiry = Family::<CertLabel, Gauge>::default();
        registry.register(
            "tls_certificate_expiry_seconds",
            "notAfter of each TLS certificate that serves, in seconds since the Unix epoch",
            tls_expiry.clone(),
        );
        let trace_spans = Family::<ResultLabel, Counter>::default();
        registry.register(
            "trace_spans",
            "Trace spans by what became of them (exported; dropped: the export queue was full; \
             failed: the collector refused them or could not be reached)",
            trace_spans.clone(),
        );
        let canary_requests = Family::<CanaryRequestLabels, Counter>::default();
        registry.register(
            "canary_requests",
            "Requests of routes running a canary, by side (current, candidate) and outcome \
             (ok, error: a server error)",
            canary_requests.clone(),
        );
        let canary_verdicts = Family::<CanaryVerdictLabels, Counter>::default();
        registry.register(
            "canary_verdicts",
            "Canary verdicts by route, verdict (promoted, rolled_back) and cause",
            canary_verdicts.clone(),
        );
        let canary_candidate = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "canary_candidate_generation",
            "Generation each route runs as its canary candidate (0: none)",
            canary_candidate.clone(),
        );
        let canary_shadow = Family::<CanaryShadowLabels, Counter>::default();
        registry.register(
            "canary_shadow",
            "Requests picked for a shadow candidate, by outcome: how its answer compared with \
             the current's (matched, status_mismatch, body_mismatch, incomplete), or why no copy \
             ran (skipped_body: too large or of unknown length; shed: the route was near its \
             concurrency cap)",
            canary_shadow.clone(),
        );
        Metrics {
            canary_shadow,
            canary_requests,
            canary_verdicts,
            canary_candidate,
            trace_spans,
            tls_reloads,
            tls_expiry,
            registry,
            serving_world,
            serving_tier,
            tier_ups,
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
            unrouted,
            guest_traps,
            builds,
        }
    }
}

impl Metrics {
    /// The handle a route writes its series through.
    pub fn route(self: &Arc<Self>, name: &str) -> RouteMetrics {
        let route: RouteName = Arc::from(name);
        let label = RouteLabel {
            route: route.clone(),
        };
        let in_flight = self.in_flight.get_or_create(&label).clone();
        let request_seconds = self.request_seconds.get_or_create(&label).clone();
        let generation = self.generation.get_or_create(&label).clone();
        RouteMetrics {
            route,
            all: self.clone(),
            in_flight,
            request_seconds,
            generation,
            forgotten_below: Arc::new(AtomicU64::new(1)),
            serving: Arc::default(),
            canary: Arc::default(),
        }
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

    /// Records the certificates that serve now (file, subject, `notAfter` in Unix seconds), in
    /// place of those before.
    pub fn tls_certificates(&self, certificates: &[(String, String, i64)]) {
        self.tls_expiry.clear();
        for (file, subject, not_after) in certificates {
            self.tls_expiry
                .get_or_create(&CertLabel {
                    file: file.clone(),
                    subject: subject.clone(),
                })
                .set(*not_after);
        }
    }

    /// Counts one reload of the TLS certificates.
    pub fn tls_reload(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The counter of trace spans with `result` (`exported`, `dropped`, `failed`).
    pub fn trace_spans(&self, result: &'static str) -> Counter {
        self.trace_spans
            .get_or_create(&ResultLabel { result })
            .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
