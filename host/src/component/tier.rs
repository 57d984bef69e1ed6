//! Compiler tiers: which compiler makes a new generation's code ([`first_tier`], [`load_first`]),
//! whether it is tiered up later ([`tiers_up`]: the reload pipeline's `tier_up` replaces a
//! Winch build by its Cranelift build once that is ready), and the threads that tier-up
//! compiles on ([`background_pool`]).
//!
//! Strategy: a large component never seen before (`--tier auto`, the default) is compiled with
//! Winch, validated and swapped in like any build, so it serves within a fraction of its
//! Cranelift compile time. A background task then compiles it with Cranelift (with the compile
//! and incremental caches), validates that build too, and swaps it in as the same generation:
//! new requests get the faster code, requests in flight finish on the Winch build, and a
//! failed tier-up leaves the Winch build serving. A newer generation arriving first makes the
//! tier-up moot: it is dropped once the generation is no longer kept.

use crate::cli::TierMode;
use crate::component::cache::CompileCache;
use crate::component::load::{self as loader, Compiled, LoadError};
use crate::engine::incremental;
use crate::engine::{Runtime, StoreSettings};
use crate::kind::Tier;
use std::sync::Arc;

/// Under `--tier auto`, components at least this large are compiled with Winch first (unless
/// their Cranelift build is in the compile cache, or their code was compiled with Cranelift
/// into the incremental cache before: a script edit of a JS or Python guest then compiles in
/// well under a second, faster than Winch). Cranelift compiles about 1 MB of
/// component per second here (guest-example, 0.1 MB: 0.15 s; a componentize-js guest,
/// 12.8 MB: 10 s); below this size its compile takes well under a second and a tier-up would
/// cost more than it saves.
pub const AUTO_FAST_MIN_SIZE: usize = 2 << 20;

/// Niceness of the threads tier-ups compile on: the Cranelift build of a generation that
/// already serves must not slow the requests it serves, nor the compile of a newer build.
const BACKGROUND_NICE: libc::c_int = 10;

/// The threads tier-ups compile on, at a lower priority than everything else; `None` if they
/// cannot be started (the tier-up then compiles on the process-wide pool).
///
/// Cranelift compiles a component's functions on a rayon pool. Sharing rayon's global pool with
/// the reloader's compiles made a new Winch build queue behind every function of the tier-up
/// still under way: a JavaScript edit served in 34 s instead of 5 (`bench/edit_swap.py`,
/// one core). On a pool of its own, the tier-up only gets the CPU the rest leaves.
pub fn background_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hotswap-tier-up-{i}"))
            .start_handler(|_| {
                // SAFETY: setpriority(2) on the calling thread (on Linux, `who` 0 with
                // PRIO_PROCESS is the calling thread); it only lowers its priority.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS as _, 0, BACKGROUND_NICE);
                }
            })
            .build()
            .inspect_err(|err| tracing::warn!(error = %err, "cannot start the tier-up threads; tier-ups compile beside everything else"))
            .ok()
    })
    .as_ref()
}

/// The tier a new component is compiled at first under `mode`.
pub fn first_tier(
    mode: TierMode,
    runtime: &Runtime,
    bytes: &[u8],
    sha256: &[u8; 32],
    cache: Option<&CompileCache>,
) -> Tier {
    match mode {
        TierMode::Fast => Tier::Fast,
        TierMode::Optimized => Tier::Optimized,
        TierMode::Auto if bytes.len() < AUTO_FAST_MIN_SIZE => Tier::Optimized,
        TierMode::Auto => {
            let world = loader::world_of(bytes);
            let cached = match (cache, runtime.backend(world, Tier::Optimized)) {
                (Some(cache), Ok(backend)) => cache.contains(&backend.engine, sha256),
                _ => false,
            };
            let known_code = || {
                runtime.incremental.as_ref().is_some_and(|store| {
                    incremental::code_digest(bytes).is_some_and(|code| store.knows_code(&code))
                })
            };
            if cached || known_code() {
                Tier::Optimized
            } else {
                Tier::Fast
            }
        }
    }
}

/// Compiles and validates a new component at the first tier `mode` gives it (see
/// [`first_tier`]). Under `auto`, a component Winch cannot compile (it uses a wasm proposal
/// Winch lacks, such as tail calls or exceptions) goes straight to Cranelift.
pub async fn load_first(
    mode: TierMode,
    runtime: &Arc<Runtime>,
    store: &StoreSettings,
    route: &str,
    bytes: Arc<Vec<u8>>,
    sha256: [u8; 32],
    cache: Option<Arc<CompileCache>>,
) -> Result<Compiled, LoadError> {
    // Off the async runtime: under `auto` this may hash a large component's code.
    let tier = {
        let (runtime, bytes, cache) = (runtime.clone(), bytes.clone(), cache.clone());
        tokio::task::spawn_blocking(move || {
            first_tier(mode, &runtime, &bytes, &sha256, cache.as_deref())
        })
        .await
        .unwrap_or(Tier::Optimized)
    };
    let loaded = loader::load(
        runtime,
        store,
        bytes.clone(),
        sha256,
        cache.clone(),
        tier,
        None,
    )
    .await;
    match loaded {
        Err(LoadError::Compile(err)) if mode == TierMode::Auto && tier == Tier::Fast => {
            tracing::info!(route = %route, error = %format!("{err:#}"), "Winch cannot compile the component; compiling it with Cranelift");
            loader::load(runtime, store, bytes, sha256, cache, Tier::Optimized, None).await
        }
        other => other,
    }
}

/// Whether a generation compiled at `tier` under `mode` is tiered up afterwards.
pub fn tiers_up(mode: TierMode, tier: Tier) -> bool {
    mode == TierMode::Auto && tier == Tier::Fast
}
