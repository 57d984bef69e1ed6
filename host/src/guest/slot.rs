//! The generation being served, in an [`ArcSwapOption`] slot.
//!
//! Each request takes an owned `Arc<Generation>` out of the slot for its whole life, so a swap
//! never disturbs a request in flight, and an old generation (its compiled code included) is
//! freed when its last request ends.

use crate::component::load::{Compiled, GuestPre, PreExt, Source};
use crate::config::canary::CanaryPolicy;
use crate::engine::incremental::Counts;
use crate::events::{Event, Events};
use crate::guest::canary::{Canary, Decision, Role, Verdict};
use crate::guest::reuse::Pool;
use crate::kind::{Tier, World};
use crate::metrics::RouteMetrics;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Numbers the pools of reused instances.
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

/// One successfully loaded version of the component.
pub struct Generation {
    /// Counts up from 1 per successful load.
    pub number: u64,
    /// Pre-instantiated component, of either world; each request instantiates from it.
    pub pre: Arc<GuestPre>,
    /// sha256 of the component bytes.
    pub sha256: [u8; 32],
    /// Size of the component bytes.
    pub size: usize,
    /// Where the bytes came from: the component file's path, or the `oci://` reference.
    pub origin: String,
    /// The manifest digest, for a component pulled from a registry.
    pub digest: Option<String>,
    /// When this generation started serving.
    pub loaded_at: SystemTime,
    /// How long compilation (or loading from the cache) took.
    pub compile_time: Duration,
    /// Whether the machine code came from a cache.
    pub code_source: Source,
    /// Functions taken from the incremental compilation cache and compiled, if it was on.
    pub incremental: Option<Counts>,
    /// The compiler that made the machine code.
    pub tier: Tier,
    in_flight: AtomicUsize,
    /// Reused instances (WASI 0.3 with `--instance-reuse`), made on first use; taken out and
    /// retired when the generation stops being current.
    reuse: Mutex<Option<Arc<Pool>>>,
    /// Reused instances of this generation alive, in its current pool or retired ones.
    reused_instances: Arc<AtomicUsize>,
}

impl Generation {
    fn new(
        number: u64,
        compiled: Compiled,
        sha256: [u8; 32],
        size: usize,
        origin: String,
        digest: Option<String>,
    ) -> Generation {
        Generation {
            number,
            pre: compiled.pre,
            sha256,
            size,
            origin,
            digest,
            loaded_at: SystemTime::now(),
            compile_time: compiled.compile_time,
            code_source: compiled.source,
            incremental: compiled.incremental,
            tier: compiled.tier,
            in_flight: AtomicUsize::new(0),
            reuse: Mutex::new(None),
            reused_instances: Arc::default(),
        }
    }

    /// This generation's pool of reused instances, made by `make` if there is none (first
    /// use, after a rollback made the generation current again, or after the last pool was
    /// set aside because a request on it expired). `make` is given the live-instance counter
    /// and what the pool calls to set itself aside.
    pub fn reuse_pool(
        self: &Arc<Self>,
        make: impl FnOnce(Arc<AtomicUsize>, Box<dyn Fn() + Send + Sync>) -> Pool,
    ) -> Arc<Pool> {
        let mut pool = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
        pool.get_or_insert_with(|| {
            let id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
            let generation = Arc::downgrade(self);
            let set_aside = Box::new(move || {
                if let Some(generation) = generation.upgrade() {
                    generation.set_pool_aside(id);
                }
            });
            Arc::new(make(self.reused_instances.clone(), set_aside).with_id(id))
        })
        .clone()
    }

    /// Retires pool `id`, if it is still this generation's: the next request gets a new one.
    fn set_pool_aside(&self, id: u64) {
        let pool = {
            let mut slot = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(pool) if pool.id() == id => slot.take(),
                _ => None,
            }
        };
        if let Some(pool) = pool {
            pool.retire();
        }
    }

    /// Reused instances of this generation still alive (0 without `--instance-reuse`).
    pub fn reused_instances(&self) -> usize {
        self.reused_instances.load(Ordering::Relaxed)
    }

    /// No longer current: new requests go elsewhere, so reused instances take no more of them
    /// and are dropped once their requests end.
    pub(crate) fn retire(&self) {
        let pool = self.reuse.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pool) = pool {
            pool.retire();
        }
    }

    /// The same generation (number, bytes, origin, load time) with other machine code: its
    /// tier-up.
    fn rebuilt(&self, optimized: Compiled) -> Arc<Generation> {
        Arc::new(Generation {
            loaded_at: self.loaded_at,
            ..Generation::new(
                self.number,
                optimized,
                self.sha256,
                self.size,
                self.origin.clone(),
                self.digest.clone(),
            )
        })
    }

    /// Which `wasi:http` the component speaks.
    pub fn world(&self) -> World {
        self.pre.world()
    }

    /// The first 12 hex digits of the sha256, for log lines.
    pub fn short_hash(&self) -> String {
        hex::encode(&self.sha256[..6])
    }

    /// Requests of this generation that have not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request as running on this generation until the guard drops. The guard keeps the
    /// generation alive.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            generation: self.clone(),
        }
    }
}

/// A request running on a generation; see [`Generation::enter`].
pub struct InFlight {
    generation: Arc<Generation>,
}

impl InFlight {
    /// The generation serving this request.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.generation.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A verdict's log line at `level`, with the numbers that decided it as fields.
macro_rules! verdict_event {
    ($level:ident, $metrics:expr, $candidate:expr, $verdict:expr, $serving:expr, $($message:tt)+) => {
        tracing::$level!(
            route = %$metrics.route(),
            generation = $candidate.number,
            serving_before = $serving,
            cause = $verdict.cause,
            candidate_requests = $verdict.candidate.requests,
            candidate_errors = $verdict.candidate.errors,
            candidate_p99_ms = $verdict.candidate.p99.as_secs_f64() * 1e3,
            current_requests = $verdict.current.requests,
            current_errors = $verdict.current.errors,
            current_p99_ms = $verdict.current.p99.as_secs_f64() * 1e3,
            shadow_matched = $verdict.shadow.map(|s| s.matched),
            shadow_mismatched = $verdict.shadow.map(|s| s.status_mismatches + s.body_mismatches),
            $($message)+
        )
    };
}

/// The generation a request runs on, and its side of the route's canary if one runs.
pub type Picked = (Arc<Generation>, Option<(Role, Arc<Canary>)>);

/// Candidates rolled back whose bytes are remembered (and refused if they come back).
const ROLLED_BACK_KEPT: usize = 32;

/// The swap slot: the current generation, the last few good ones, or why there is none; and,
/// with a canary policy, the candidate serving beside the current one.
pub struct Slot {
    current: ArcSwapOption<Generation>,
    /// Dev mode's event stream, told when new code serves.
    events: Option<Arc<Events>>,
    /// The route's canary policy: new generations become candidates.
    canary_policy: Option<CanaryPolicy>,
    /// The canary running, if any.
    canary: ArcSwapOption<Canary>,
    /// The sha256 of candidates rolled back, newest last: not tried again until the bytes
    /// change.
    rolled_back: Mutex<VecDeque<[u8; 32]>>,
    /// The last canary's verdict, and its candidate's number.
    last_verdict: Mutex<Option<(u64, Verdict)>>,
    next_number: AtomicU64,
    unavailable: ArcSwap<String>,
    /// Good generations kept compiled, oldest first; includes the current one.
    history: Mutex<VecDeque<Arc<Generation>>>,
    keep: usize,
}

impl Slot {
    /// An empty slot that keeps the last `keep` good generations (and, with `canary`, runs
    /// each new generation as a candidate first).
    pub fn new(keep: usize, canary: Option<CanaryPolicy>) -> Self {
        Slot {
            events: None,
            current: ArcSwapOption::empty(),
            canary_policy: canary,
            canary: ArcSwapOption::empty(),
            rolled_back: Mutex::new(VecDeque::new()),
            last_verdict: Mutex::new(None),
            next_number: AtomicU64::new(1),
            unavailable: ArcSwap::from_pointee("no component has been loaded yet".to_string()),
            history: Mutex::new(VecDeque::new()),
            keep: keep.max(1),
        }
    }

    /// The same slot, telling `events` (dev mode's event stream) when new code starts serving
    /// ([`Slot::serving_now`]).
    pub fn with_events(self, events: Option<Arc<Events>>) -> Self {
        Slot { events, ..self }
    }

    /// The generation new requests should use, if any.
    pub fn current(&self) -> Option<Arc<Generation>> {
        self.current.load_full()
    }

    /// Why no generation is being served (meaningful only while [`Slot::current`] is `None`).
    pub fn unavailable_reason(&self) -> Arc<String> {
        self.unavailable.load_full()
    }

    /// Records why there is no generation to serve.
    pub fn set_unavailable_reason(&self, reason: String) {
        self.unavailable.store(Arc::new(reason));
    }

    /// The kept generations, oldest first.
    pub fn history(&self) -> Vec<Arc<Generation>> {
        self.lock_history().iter().cloned().collect()
    }

    /// A kept generation whose bytes hash to `sha256`, if any.
    pub fn find_by_hash(&self, sha256: &[u8; 32]) -> Option<Arc<Generation>> {
        self.lock_history()
            .iter()
            .rev()
            .find(|g| &g.sha256 == sha256)
            .cloned()
    }

    /// `compiled` as the next generation: numbered one past the last.
    fn next_generation(
        &self,
        compiled: Compiled,
        sha256: [u8; 32],
        size: usize,
        origin: String,
        digest: Option<String>,
    ) -> Arc<Generation> {
        Arc::new(Generation::new(
            self.next_number.fetch_add(1, Ordering::Relaxed),
            compiled,
            sha256,
            size,
            origin,
            digest,
        ))
    }

    /// Makes `compiled` the current generation, numbered one past the last, and returns it.
    /// Requests already running keep the generation they started with.
    pub fn install(
        &self,
        compiled: Compiled,
        sha256: [u8; 32],
        size: usize,
        origin: String,
        digest: Option<String>,
    ) -> Arc<Generation> {
        let generation = self.next_generation(compiled, sha256, size, origin, digest);
        self.keep_and_serve(generation.clone());
        generation
    }

    /// Replaces kept generation `number`, built by the fast tier, with `optimized`, its build
    /// by the optimising compiler: the same generation (number, bytes, origin) with better
    /// code. If it is current, new requests get the new build at once; requests already
    /// running finish on the old one. `None` if the generation is no longer kept (a newer one
    /// pushed it out) or already tiered up.
    pub fn tier_up(&self, number: u64, optimized: Compiled) -> Option<Arc<Generation>> {
        if let Some(canary) = self.canary()
            && canary.candidate().number == number
            && canary.candidate().tier != optimized.tier
        {
            let old = canary.candidate();
            let generation = old.rebuilt(optimized);
            canary.tier_up(generation.clone());
            old.retire();
            return Some(generation);
        }
        let mut history = self.lock_history();
        let at = history
            .iter()
            .position(|g| g.number == number && g.tier != optimized.tier)?;
        let old = history[at].clone();
        let generation = old.rebuilt(optimized);
        history[at] = generation.clone();
        if self.current().is_some_and(|c| Arc::ptr_eq(&c, &old)) {
            self.make_current(generation.clone());
        }
        Some(generation)
    }

    /// The route's canary policy, if it has one.
    pub fn canary_policy(&self) -> Option<&CanaryPolicy> {
        self.canary_policy.as_ref()
    }

    /// The canary running, if any.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// The generation a request with these headers runs on, and its side (with a canary
    /// running, the candidate serves its share); `None` if no generation serves.
    pub fn pick(&self, headers: &http::HeaderMap) -> Option<Picked> {
        let current = self.current()?;
        let Some(canary) = self.canary.load_full() else {
            return Some((current, None));
        };
        match canary.pick(headers) {
            Role::Candidate => Some((canary.candidate(), Some((Role::Candidate, canary)))),
            Role::Current => Some((current, Some((Role::Current, canary)))),
        }
    }

    /// Starts a canary of `compiled` (numbered one past the last) beside the current
    /// generation. A canary already running is replaced: its verdict (rolled back, cause
    /// `replaced`) is returned with it, for the log.
    pub fn start_canary(
        &self,
        compiled: Compiled,
        sha256: [u8; 32],
        size: usize,
        origin: String,
        digest: Option<String>,
    ) -> (Arc<Canary>, Option<(Arc<Canary>, Verdict)>) {
        let policy = self
            .canary_policy
            .clone()
            .expect("start_canary is only called with a policy");
        let generation = self.next_generation(compiled, sha256, size, origin, digest);
        let canary = Arc::new(Canary::new(generation.clone(), policy));
        let replaced = self.canary.swap(Some(canary.clone())).and_then(|old| {
            let verdict = old.decide(
                Decision::Rollback,
                "replaced",
                format!(
                    "generation {} replaces it as the candidate",
                    generation.number
                ),
            )?;
            old.candidate().retire();
            Some((old, verdict))
        });
        (canary, replaced)
    }

    /// An operator's verdict on the running canary (`cause` `operator`), carried out: the
    /// canary and its verdict, or why there was none to take (no canary runs, or it already
    /// has a verdict).
    pub fn decide_canary(
        &self,
        decision: Decision,
        reason: &str,
        metrics: &RouteMetrics,
    ) -> Result<(Arc<Canary>, Verdict), &'static str> {
        let canary = self.canary().ok_or("no canary is running")?;
        let verdict = canary
            .decide(decision, "operator", reason.to_string())
            .ok_or("the canary already has a verdict")?;
        if !self.conclude(&canary, &verdict, metrics) {
            return Err("the canary ended in between");
        }
        Ok((canary, verdict))
    }

    /// Whether a candidate with these bytes was rolled back (so they are not tried again).
    pub fn was_rolled_back(&self, sha256: &[u8; 32]) -> bool {
        self.lock_rolled_back().contains(sha256)
    }

    /// Carries out `verdict` on `canary`, if it is still this slot's canary: the candidate
    /// becomes current (the old current stays kept, for a rollback), or is dropped (and its
    /// bytes remembered, unless a newer build replaced it). Logs the verdict once, with the
    /// numbers that decided it, and counts it. `false` if `canary` had already ended.
    pub fn conclude(
        &self,
        canary: &Arc<Canary>,
        verdict: &Verdict,
        metrics: &RouteMetrics,
    ) -> bool {
        let candidate = canary.candidate();
        let ours = self
            .canary
            .compare_and_swap(&Some(canary.clone()), None::<Arc<Canary>>);
        if !ours.as_ref().is_some_and(|c| Arc::ptr_eq(c, canary)) {
            return false;
        }
        let serving = self.current().map(|g| g.number);
        match verdict.decision {
            Decision::Promote => {
                self.keep_and_serve(candidate.clone());
                self.serving_now(&candidate, Some("canary"), metrics);
                verdict_event!(
                    info,
                    metrics,
                    candidate,
                    verdict,
                    serving,
                    "canary: promoted generation {} ({}): {}",
                    candidate.number,
                    candidate.short_hash(),
                    verdict.reason
                );
            }
            Decision::Rollback => {
                candidate.retire();
                if verdict.cause != "replaced" {
                    let mut rolled_back = self.lock_rolled_back();
                    rolled_back.push_back(candidate.sha256);
                    while rolled_back.len() > ROLLED_BACK_KEPT {
                        rolled_back.pop_front();
                    }
                }
                verdict_event!(
                    warn,
                    metrics,
                    candidate,
                    verdict,
                    serving,
                    "canary: rolled back generation {} ({}): {}; generation {} serves everything",
                    candidate.number,
                    candidate.short_hash(),
                    verdict.reason,
                    serving.unwrap_or(0)
                );
            }
        }
        metrics.canary_verdict(verdict.decision.as_str(), verdict.cause);
        *self.last_verdict.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((candidate.number, verdict.clone()));
        true
    }

    /// The last canary's verdict, and the number of its candidate.
    pub fn last_verdict(&self) -> Option<(u64, Verdict)> {
        self.last_verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock_rolled_back(&self) -> std::sync::MutexGuard<'_, VecDeque<[u8; 32]>> {
        self.rolled_back
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `generation` (dropping the oldest kept beyond `keep`) and serves it from now on,
    /// under the history's lock, so that a rollback sees both or neither.
    fn keep_and_serve(&self, generation: Arc<Generation>) {
        let mut history = self.lock_history();
        history.push_back(generation.clone());
        while history.len() > self.keep {
            history.pop_front();
        }
        self.make_current(generation);
    }

    /// Says that `generation`, current now, serves: in the route's serving metrics and, for new
    /// code (`trigger` names what brought it; `None` for a tier-up, the same code), on dev
    /// mode's event stream.
    pub fn serving_now(
        &self,
        generation: &Generation,
        trigger: Option<&str>,
        metrics: &RouteMetrics,
    ) {
        if let (Some(events), Some(trigger)) = (&self.events, trigger) {
            events.publish(Event::Serving {
                route: metrics.route().to_string(),
                generation: generation.number,
                sha256: generation.short_hash(),
                trigger: trigger.to_string(),
            });
        }
        metrics.serving(
            generation.number,
            generation.world().as_str(),
            generation.tier.as_str(),
            generation.digest.as_deref(),
        );
    }

    /// Serves `generation` from now on; the one it replaces is retired.
    fn make_current(&self, generation: Arc<Generation>) {
        if let Some(old) = self.current.swap(Some(generation.clone()))
            && !Arc::ptr_eq(&old, &generation)
        {
            old.retire();
        }
    }

    /// Serves a kept generation again: number `target`, or the newest one older than the
    /// current one.
    pub fn rollback(&self, target: Option<u64>) -> Result<Arc<Generation>, String> {
        let history = self.lock_history();
        let current = self.current().map(|g| g.number);
        let found = match target {
            Some(n) => history
                .iter()
                .find(|g| g.number == n)
                .cloned()
                .ok_or_else(|| {
                    let kept: Vec<u64> = history.iter().map(|g| g.number).collect();
                    format!("generation {n} is not kept (kept: {kept:?})")
                })?,
            None => {
                let current = current.ok_or("no generation is being served")?;
                history
                    .iter()
                    .rev()
                    .find(|g| g.number < current)
                    .cloned()
                    .ok_or_else(|| {
                        format!("no kept generation is older than the current one ({current})")
                    })?
            }
        };
        self.make_current(found.clone());
        Ok(found)
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Generation>>> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
