//! The [`Engine`]s of the process (one per `wasi:http` world and compiler [`Tier`], see
//! [`Backend`]), the [`Linker`] every component is checked against, and the state each
//! request's [`Store`] carries.
//!
//! Guests are linked with all of WASI 0.2 (and 0.3 for 0.3 guests; Rust std guests import
//! `wasi:cli/*` beyond the proxy world), wasi:http, `wasi:config/store` and `wasi:keyvalue`,
//! but granted nothing else: no inherited environment, no preopened directories, no sockets,
//! no outbound HTTP unless `--allow-outbound` says so. Config values and key-value state belong to the host, not to a
//! generation: a swap changes the code and keeps both.

pub mod incremental;
pub mod slices;

use crate::config::{Config, RouteConfig};
use crate::engine::incremental::DiskStore;
use crate::engine::slices::{SliceState, Slicer, Turn};
use crate::kind::{Tier, World};
use crate::metrics::Metrics;
use crate::wasi::config_store::{GuestConfig, Snapshot};
use crate::wasi::keyvalue::{KeyValue, KvView};
use crate::wasi::outbound::{OutboundHooks, OutboundPolicy};
use crate::wasi::stdio::{GuestLog, OutputBudget, RequestTag};
use anyhow::{Context, Result};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Enabled, Engine, PoolingAllocationConfig, Store, Strategy, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Instances reserved beyond `--max-concurrency` for validating new components.
const VALIDATION_SLOTS: u32 = 4;
/// Largest number of resources (streams, fields, bodies…) one request may hold.
const MAX_RESOURCES: usize = 10_000;
/// Largest single `wasi:random` request, in bytes.
const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Largest header field (name plus value) a guest may build, in bytes.
const MAX_FIELD_SIZE: usize = 64 << 10;
/// Largest table a guest may have, in elements.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Bytes of each linear memory reset in place (memset) rather than decommitted when an instance
/// slot returns to the pool, where the kernel has `PAGEMAP_SCAN` (Linux 6.7+): only the pages the
/// guest dirtied are reset, up to this many bytes, so a guest whose working set fits costs no
/// `madvise`, no TLB flush and no page faults on the next request (BENCHMARKS.md).
const MEMORY_KEEP_RESIDENT_DIRTY: usize = 1 << 20;
/// Without `PAGEMAP_SCAN` the first bytes of memory are reset whether the guest touched them or
/// not; 128 KiB measured best for guest-example, 1 MiB made memset the top symbol.
const MEMORY_KEEP_RESIDENT_PREFIX: usize = 128 << 10;
/// Bytes of each table reset in place when an instance slot returns to the pool.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;
/// Largest number of core instances, tables and memories one store (one guest instance) may
/// create. A componentize-py guest has 14 core instances (one per library it links), most
/// others 3 or 4; every pool slot has room for this many.
const MAX_STORE_OBJECTS: usize = 100;

/// The engines of the process, one per world and tier; all but the 0.2 Cranelift one are made
/// when the first component that needs them loads.
struct Backends {
    made: [OnceLock<Backend>; 4],
    configs: [wasmtime::Config; 4],
}

impl Backends {
    fn index(world: World, tier: Tier) -> usize {
        let w = match world {
            World::P2 => 0,
            World::P3 => 2,
        };
        w + usize::from(tier == Tier::Fast)
    }
}

/// The process-wide runtime pieces shared by every generation and request.
pub struct Runtime {
    /// The engines and linkers.
    backends: Arc<Backends>,
    /// Cranelift's per-function cache, shared by the Cranelift engines, if on.
    pub incremental: Option<Arc<DiskStore>>,
    /// The values guests read through `wasi:config/store`.
    pub guest_config: Arc<GuestConfig>,
    /// The store behind `wasi:keyvalue`; each route sees it through its own namespace.
    pub keyvalue: Arc<KeyValue>,
    /// How long guests run between yields, and the epoch ticker's pace.
    slicer: Arc<Slicer>,
}

/// An engine (it compiles components and owns an instance pool) and the host functions
/// components are linked against in it.
///
/// There is one per `wasi:http` world and [`Tier`]. WASI 0.3 needs the engine's concurrency
/// support (`Config::concurrency_support`), which costs every call into a guest, 0.3 or not:
/// 0.2 hello requests took 118 µs of CPU with it against 98 µs without (BENCHMARKS.md). So 0.2
/// guests run in an engine without it, and the 0.3 engine (with its own instance pool) exists
/// only once a 0.3 guest has been loaded. Winch and Cranelift code cannot share an engine
/// either (the compiler is an engine setting), so a Winch engine is made when the first
/// component is compiled with it.
pub struct Backend {
    /// Compiles components and owns the instance pool.
    pub engine: Engine,
    /// The host functions every component of this world is linked against.
    pub linker: Linker<HostState>,
}

impl Backend {
    /// An engine from `config` and a linker with every interface a `world` guest may import:
    /// all of WASI 0.2 (a 0.3 guest built for `wasm32-wasip2` imports 0.2's `wasi:cli` through
    /// its standard library) and, for 0.3, WASI 0.3's own versions beside them; wasi:http,
    /// `wasi:config/store` and `wasi:keyvalue`.
    fn new(config: &wasmtime::Config, world: World) -> Result<Backend> {
        let engine = Engine::new(config)
            .map_err(anyhow::Error::from)
            .context("failed to create the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to link WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to link wasi:http")?;
        if world == World::P3 {
            wasmtime_wasi::p3::add_to_linker(&mut linker)
                .map_err(anyhow::Error::from)
                .context("failed to link WASI 0.3")?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)
                .map_err(anyhow::Error::from)
                .context("failed to link wasi:http 0.3")?;
        }
        wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut HostState| {
            wasmtime_wasi_config::WasiConfig::new(&s.config.vars)
        })
        .map_err(anyhow::Error::from)
        .context("failed to link wasi:config")?;
        crate::wasi::keyvalue::add_to_linker(&mut linker, |s: &mut HostState| KvView {
            kv: &s.keyvalue,
            table: &mut s.table,
        })
        .map_err(anyhow::Error::from)
        .context("failed to link wasi:keyvalue")?;
        Ok(Backend { engine, linker })
    }
}

/// What shapes the stores of one route's requests, taken from its configuration once.
#[derive(Clone)]
pub struct StoreSettings {
    /// Bytes each linear memory may grow to.
    pub max_memory: u64,
    /// Bytes of stdout and stderr one request may log.
    pub max_guest_output: u64,
    /// The guest environment.
    pub guest_env: Arc<Vec<(String, String)>>,
    /// Outbound HTTP allow-list.
    pub outbound: OutboundPolicy,
    /// The route's key-value namespace, on the host's store; shared by every generation.
    pub keyvalue: Arc<KeyValue>,
}

impl Runtime {
    /// Builds the engine (pooling allocator sized from the concurrency cap, epoch interruption on),
    /// the linker, the config values and the key-value store (opened on first use). Must run
    /// inside the tokio runtime (a Redis client is set up there).
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Runtime> {
        // Every route has slots of its own, so one route at its cap cannot take another's.
        let slots = u32::try_from(config.pool_slots())
            .context("`--max-concurrency` is too large")?
            .saturating_add(VALIDATION_SLOTS);
        let keep_resident = memory_keep_resident();
        let mut pool = PoolingAllocationConfig::default();
        // Each slot holds the core instances of the largest component that may load (a count
        // only, no memory), so a route's whole concurrency cap can be in flight whatever its
        // component is made of; a component with more is refused when it loads.
        let core_instances = u32::try_from(MAX_STORE_OBJECTS).expect("a small constant");
        pool.total_component_instances(slots)
            .max_core_instances_per_component(core_instances)
            .total_core_instances(slots.saturating_mul(core_instances))
            // Memories and tables reserve address space per slot, so these stay at what every
            // toolchain's guest tested needs (one memory, two tables) with room for a second.
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_memory_size(
                usize::try_from(config.max_memory()).context("`--max-memory` is too large")?,
            )
            .table_elements(MAX_TABLE_ELEMENTS)
            // Reset the pages a returning slot's guest dirtied in place instead of handing them
            // back to the kernel: per request, madvise + TLB flush + page faults cost more than
            // a memset for small guests (see BENCHMARKS.md).
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // A slot last used by another component (an older generation) is reused before an
            // untouched one: the set of slots holding resident memory stays as large as the
            // peak number of concurrent requests, however many swaps there were. (Wasmtime's
            // default, 100 such slots, made RSS climb with every new generation.) With a canary
            // policy, two generations serve at once for a while: then free slots keep their
            // generation's memory image, so that a request of one does not re-map a slot the
            // other used last (which cost a request ~50 µs of CPU, 27 % more at a 10 % weight),
            // at the price of resident memory for up to one slot per unit of concurrency more.
            .max_unused_warm_slots(if config.any_canary() { slots } else { 0 });

        tracing::debug!(slots, keep_resident_bytes = keep_resident, "instance pool");

        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(pool);
        // Winch supports epoch interruption, which is all the bounding it needs here; it has no
        // incremental cache (that is Cranelift's).
        let mut winch = wasm.clone();
        winch.strategy(Strategy::Winch);
        wasm.strategy(Strategy::Cranelift);
        let incremental = match &config.cache_dir {
            Some(dir) if config.incremental_cache_size > 0 => {
                let dir = dir.join("incremental");
                match DiskStore::open(&dir, config.incremental_cache_size) {
                    Ok(store) => Some(Arc::new(store)),
                    Err(err) => {
                        tracing::warn!(dir = %dir.display(), error = %err, "cannot open the incremental compilation cache; compiling without it");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(store) = &incremental {
            wasm.enable_incremental_compilation(store.clone())
                .map_err(anyhow::Error::from)
                .context("failed to enable incremental compilation")?;
        }
        let with_concurrency = |config: &wasmtime::Config, on: bool| {
            let mut config = config.clone();
            config.concurrency_support(on);
            config
        };
        // In `Backends::index` order.
        let configs = [
            with_concurrency(&wasm, false),
            with_concurrency(&winch, false),
            with_concurrency(&wasm, true),
            with_concurrency(&winch, true),
        ];
        let backends = Arc::new(Backends {
            made: Default::default(),
            configs,
        });
        let p2 = Backend::new(&backends.configs[0], World::P2)?;
        let _ = backends.made[0].set(p2);
        let guest_config = Arc::new(GuestConfig::new(
            config.config_values.clone(),
            config.config_overrides.clone(),
            config.config_file.clone().map(|file| {
                let reread: crate::wasi::config_store::Reread =
                    Box::new(crate::config::file::values_of);
                (file, reread)
            }),
            metrics.clone(),
        ));
        let keyvalue = Arc::new(KeyValue::new(config.keyvalue.clone(), metrics)?);

        Ok(Runtime {
            guest_config,
            keyvalue,
            backends,
            incremental,
            slicer: Arc::new(Slicer::new()),
        })
    }

    /// The engine and linker of `world`'s guests compiled at `tier`, made on first use.
    pub fn backend(&self, world: World, tier: Tier) -> Result<&Backend> {
        let i = Backends::index(world, tier);
        if let Some(backend) = self.backends.made[i].get() {
            return Ok(backend);
        }
        let backend = Backend::new(&self.backends.configs[i], world)?;
        tracing::debug!(
            world = world.as_str(),
            tier = tier.as_str(),
            "made an engine"
        );
        Ok(self.backends.made[i].get_or_init(|| backend))
    }

    /// The store settings of `route`'s requests.
    pub fn store_settings(&self, route: &RouteConfig) -> Result<StoreSettings> {
        Ok(StoreSettings {
            max_memory: route.limits.max_memory,
            max_guest_output: route.limits.max_guest_output,
            guest_env: Arc::new(route.guest_env.clone()),
            outbound: route.outbound.clone(),
            keyvalue: Arc::new(self.keyvalue.for_namespace(&route.keyvalue_namespace)?),
        })
    }

    /// A request for route `route` (its id: a number no other route has) arrived: while
    /// requests of more than one route arrive, guests run in fine slices
    /// ([`slices`]).
    pub fn route_request(&self, route: usize) {
        self.slicer.route_request(route);
    }

    /// Starts the thread that advances the engine's epoch, at the pace [`Slicer::next_tick`]
    /// sets.
    pub fn start_epoch_ticker(&self) -> Result<()> {
        // Runs as long as the runtime does (only the runtime holds its engines).
        let backends = Arc::downgrade(&self.backends);
        let slicer = self.slicer.clone();
        std::thread::Builder::new()
            .name("hotswap-epoch".into())
            .spawn(move || {
                while let Some(backends) = backends.upgrade() {
                    for backend in backends.made.iter().filter_map(OnceLock::get) {
                        backend.engine.increment_epoch();
                    }
                    drop(backends);
                    std::thread::sleep(slicer.next_tick());
                }
            })
            .context("failed to start the epoch thread")?;
        Ok(())
    }

    /// A fresh store, in `engine` (its generation's), for one request (`request`; `None` for a validation
    /// or a reused instance) of a route with `settings`, served by `generation`, which must
    /// stop executing guest code at `deadline`;
    /// guest output is logged tagged with both, inside `span`.
    pub fn new_store(
        &self,
        engine: &Engine,
        settings: &StoreSettings,
        generation: u64,
        request: Option<&RequestTag>,
        deadline: Instant,
        span: &tracing::Span,
    ) -> Store<HostState> {
        let output = OutputBudget::new(
            settings.max_guest_output,
            generation,
            request.cloned(),
            span.clone(),
        );
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&settings.guest_env)
            .stdout(GuestLog::stdout(
                generation,
                request.cloned(),
                span.clone(),
                output.clone(),
            ))
            .stderr(GuestLog::stderr(
                generation,
                request.cloned(),
                span.clone(),
                output.clone(),
            ))
            .max_random_size(MAX_RANDOM_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELD_SIZE);

        let state = HostState {
            wasi: wasi.build(),
            http,
            table,
            hooks: OutboundHooks::new(
                settings.outbound.clone(),
                generation,
                request.map(|r| r.route.clone()),
            )
            .traced(request.map(|r| r.trace.clone()).unwrap_or_default()),
            limiter: GuestLimiter::new(settings.max_memory),
            deadline,
            timed_out: false,
            slice: SliceState::new(),
            config: self.guest_config.snapshot(),
            keyvalue: settings.keyvalue.clone(),
            output,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        let slicer = self.slicer.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            let now = Instant::now();
            let state = ctx.data_mut();
            if now >= state.deadline {
                state.timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            match slicer.turn(&state.slice, now) {
                Turn::Run => Ok(UpdateDeadline::Continue(1)),
                // Yield the way tokio's own `yield_now` does: the task is woken only after the
                // worker has polled its sockets and timers. wasmtime's plain `Yield` wakes the
                // task at once, which keeps the run queue from ever emptying, so on a worker
                // busy with a spinning guest the sockets were polled only every 61st task poll
                // (over half a second of 10 ms slices, as the tick was then).
                Turn::Yield => Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                )),
            }
        });
        store
    }
}

/// How much of each linear memory to keep resident between requests (see
/// [`MEMORY_KEEP_RESIDENT_DIRTY`]).
fn memory_keep_resident() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        MEMORY_KEEP_RESIDENT_DIRTY
    } else {
        MEMORY_KEEP_RESIDENT_PREFIX
    }
}

/// Everything one request's store holds.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    /// Memory and table limits; remembers whether the guest hit one.
    pub limiter: GuestLimiter,
    /// When guest code must stop running.
    pub deadline: Instant,
    /// Set when the epoch callback interrupted the guest at its deadline.
    pub timed_out: bool,
    /// Where the guest is in its time slices.
    slice: SliceState,
    /// The config values current when the request started.
    config: Arc<Snapshot>,
    keyvalue: Arc<KeyValue>,
    /// What the guest may still log of its stdout and stderr.
    output: Arc<OutputBudget>,
}

impl HostState {
    /// A request begins on a reused instance: a new first slice starts now (so that a short
    /// request on a long-lived store runs without yields too), and the request gets the whole
    /// output budget.
    pub fn start_slice(&mut self) {
        self.slice.restart();
        self.output.renew();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// A [`wasmtime::ResourceLimiter`] that denies growth past the configured limits and records
/// that it did, so the failure can be named "memory limit" in the log.
pub struct GuestLimiter {
    max_memory: u64,
    /// The guest asked for more linear memory than allowed.
    pub hit_memory_limit: bool,
}

impl GuestLimiter {
    fn new(max_memory: u64) -> Self {
        GuestLimiter {
            max_memory,
            hit_memory_limit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory {
            self.hit_memory_limit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_STORE_OBJECTS
    }

    fn tables(&self) -> usize {
        MAX_STORE_OBJECTS
    }

    fn memories(&self) -> usize {
        MAX_STORE_OBJECTS
    }
}
