//! One route's view of the metrics ([`RouteMetrics`]): the series it writes, each carrying its
//! `route` label.

use super::*;

/// One route's view of the metrics: every series it writes carries its `route` label. Cheap
/// to clone; the per-request series are resolved once, when the route is made.
#[derive(Clone)]
pub struct RouteMetrics {
    pub(super) route: RouteName,
    pub(super) all: Arc<Metrics>,
    /// Requests of this route holding a concurrency slot.
    pub in_flight: Gauge,
    pub(super) request_seconds: Histogram,
    pub(super) generation: Gauge,
    /// Request series of generations below this number have been dropped.
    pub(super) forgotten_below: Arc<AtomicU64>,
    /// The world, tier and digest series currently set, so the next swap can remove them.
    pub(super) serving: Arc<Mutex<ServingSeries>>,
    /// The route's canary request series (current ok, current error, candidate ok, candidate
    /// error), resolved on its first canary: a request counts without a label lookup.
    pub(super) canary: Arc<std::sync::OnceLock<[Counter; 4]>>,
}

/// The label values of a route's serving series that are set now.
#[derive(Default)]
pub(super) struct ServingSeries {
    world: Option<&'static str>,
    tier: Option<&'static str>,
    digest: Option<String>,
}

impl RouteMetrics {
    /// The route's name.
    pub fn route(&self) -> &RouteName {
        &self.route
    }

    /// The metrics of the whole host.
    pub fn host(&self) -> &Arc<Metrics> {
        &self.all
    }

    /// Counts one reload attempt.
    pub fn reload(&self, result: &'static str) {
        self.all.reloads.get_or_create(&self.result(result)).inc();
    }

    /// Counts one tier-up by result (`serving`, `failed`, or `dropped`: its generation was no
    /// longer kept).
    pub fn tier_up(&self, result: &'static str) {
        self.all.tier_ups.get_or_create(&self.result(result)).inc();
    }

    /// Records the duration of one reload phase.
    pub fn phase(&self, phase: &'static str, took: Duration) {
        self.all
            .reload_seconds
            .get_or_create(&PhaseLabel {
                route: self.route.clone(),
                phase,
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one finished request.
    pub fn request(&self, status: u16, generation: u64, took: Duration) {
        // `StatusCode` is 100..=999: 1xx..4xx by their hundreds, everything from 500 up 5xx.
        let status_class = STATUS_CLASSES[usize::from(status / 100).clamp(1, 5) - 1];
        self.all
            .requests
            .get_or_create(&RequestLabels {
                route: self.route.clone(),
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
                self.all.requests.remove(&RequestLabels {
                    route: self.route.clone(),
                    status_class,
                    generation,
                });
            }
        }
    }

    /// Counts one guest failure.
    pub fn trap(&self, kind: &'static str) {
        self.all
            .guest_traps
            .get_or_create(&KindLabel {
                route: self.route.clone(),
                kind,
            })
            .inc();
    }

    /// Records that generation `number` now serves this route, speaking `world`
    /// (`wasi:http@0.2` or `wasi:http@0.3`) with code of `tier` (`fast` or `optimized`), pulled
    /// as manifest `digest` if it came from a registry: the generation gauge, and the world,
    /// tier and digest series (the previous ones are removed, so a dashboard sees one of each
    /// per route and replica).
    pub fn serving(
        &self,
        number: u64,
        world: &'static str,
        tier: &'static str,
        digest: Option<&str>,
    ) {
        self.generation.set(number as i64);
        let mut last = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let route = &self.route;
        if last.world != Some(world) {
            if let Some(old) = last.world.replace(world) {
                self.all.serving_world.remove(&WorldLabel {
                    route: route.clone(),
                    world: old,
                });
            }
            self.all
                .serving_world
                .get_or_create(&WorldLabel {
                    route: route.clone(),
                    world,
                })
                .set(1);
        }
        if last.tier != Some(tier) {
            if let Some(old) = last.tier.replace(tier) {
                self.all.serving_tier.remove(&TierLabel {
                    route: route.clone(),
                    tier: old,
                });
            }
            self.all
                .serving_tier
                .get_or_create(&TierLabel {
                    route: route.clone(),
                    tier,
                })
                .set(1);
        }
        if last.digest.as_deref() != digest {
            if let Some(old) = last.digest.take() {
                self.all.serving_digest.remove(&DigestLabel {
                    route: route.clone(),
                    digest: old,
                });
            }
            if let Some(digest) = digest {
                self.all
                    .serving_digest
                    .get_or_create(&DigestLabel {
                        route: route.clone(),
                        digest: digest.to_string(),
                    })
                    .set(1);
                last.digest = Some(digest.to_string());
            }
        }
    }

    /// Counts one registry poll.
    pub fn registry_poll(&self, result: &'static str) {
        self.all
            .registry_polls
            .get_or_create(&self.result(result))
            .inc();
    }

    /// Counts one registry failure.
    pub fn registry_error(&self, kind: &'static str) {
        self.all
            .registry_errors
            .get_or_create(&RegistryErrorLabel {
                route: self.route.clone(),
                kind,
            })
            .inc();
    }

    /// Counts one request of a route running a canary.
    pub fn canary_request(&self, role: &'static str, error: bool) {
        let counters = self.canary.get_or_init(|| {
            [
                ("current", "ok"),
                ("current", "error"),
                ("candidate", "ok"),
                ("candidate", "error"),
            ]
            .map(|(role, outcome)| {
                self.all
                    .canary_requests
                    .get_or_create(&CanaryRequestLabels {
                        route: self.route.clone(),
                        role,
                        outcome,
                    })
                    .clone()
            })
        });
        let side = if role == "candidate" { 2 } else { 0 };
        counters[side + usize::from(error)].inc();
    }

    /// Counts a request picked for a shadow candidate, by `outcome`.
    pub fn canary_shadow(&self, outcome: &'static str) {
        self.all
            .canary_shadow
            .get_or_create(&CanaryShadowLabels {
                route: self.route.clone(),
                outcome,
            })
            .inc();
    }

    /// Counts a canary verdict, and the candidate it leaves (none).
    pub fn canary_verdict(&self, verdict: &'static str, cause: &'static str) {
        self.all
            .canary_verdicts
            .get_or_create(&CanaryVerdictLabels {
                route: self.route.clone(),
                verdict,
                cause,
            })
            .inc();
        self.canary_candidate(0);
    }

    /// The generation the route runs as its candidate (0: none).
    pub fn canary_candidate(&self, generation: u64) {
        self.all
            .canary_candidate
            .get_or_create(&RouteLabel {
                route: self.route.clone(),
            })
            .set(generation as i64);
    }

    /// Counts one build run.
    pub fn build(&self, result: &'static str) {
        self.all.builds.get_or_create(&self.result(result)).inc();
    }

    fn result(&self, result: &'static str) -> RouteResultLabels {
        RouteResultLabels {
            route: self.route.clone(),
            result,
        }
    }
}
