//! Bytes → a validated, pre-instantiated component, or an error that says what is wrong.
//!
//! A component is accepted only if it compiles, its imports are all satisfied by the host's
//! linker, it exports an HTTP handler of either world, and one instance of it can be created
//! within the configured limits. The world is decided per component, as `wasmtime serve` does:
//! `wasi:http/handler@0.3` (the 0.3 `service` world) if it exports that, else
//! `wasi:http/incoming-handler@0.2` (the 0.2 `proxy` world). Anything else is a [`LoadError`]; the caller keeps serving
//! the previous generation.

use crate::component::cache::{CompileCache, Lookup};
use crate::engine::incremental::Counts;
use crate::engine::{HostState, Runtime, StoreSettings};
use crate::kind::{Tier, World};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::{p2, p3};

/// How long a trial instantiation may take before the component is rejected.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a component was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file has no bytes (often: caught in the middle of being written).
    #[error("the file is empty")]
    Empty,
    /// The bytes do not start with the wasm magic number.
    #[error("not a WebAssembly file (no `\\0asm` header)")]
    NotWasm,
    /// A core module where a component was expected.
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` or \
         with `cargo component build`"
    )]
    CoreModule,
    /// Compilation failed (truncated or malformed component, unsupported feature…).
    #[error("failed to compile the component: {0:#}")]
    Compile(wasmtime::Error),
    /// The component imports something the host does not provide.
    #[error("the component's imports cannot be satisfied by this host: {0:#}")]
    Link(wasmtime::Error),
    /// The component exports neither `wasi:http/handler@0.3` nor
    /// `wasi:http/incoming-handler@0.2`.
    #[error(
        "the component exports no HTTP handler: neither `wasi:http/handler@0.3` (a \
         `wasi:http/service` component) nor `wasi:http/incoming-handler@0.2` (a \
         `wasi:http/proxy` component): {0:#}"
    )]
    NotProxy(wasmtime::Error),
    /// A trial instance could not be created (limits too small, start function trapped…).
    #[error("the component could not be instantiated: {0:#}")]
    Instantiate(wasmtime::Error),
}

/// Where a component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled now.
    Compiled,
    /// Loaded from the on-disk compile cache.
    DiskCache,
    /// Reused from a generation still held in memory.
    Memory,
}

impl Source {
    /// Whether compilation was skipped.
    pub fn cache_hit(self) -> bool {
        self != Source::Compiled
    }
}

/// A pre-instantiated component of either world (wasmtime-wasi-http's own enum of the 0.2
/// `ProxyPre` and the 0.3 `ServicePre`); each request instantiates from it.
pub type GuestPre = ProxyPre<HostState>;

/// What the host asks of a [`GuestPre`] beyond instantiating it.
pub trait PreExt {
    /// The engine the component was compiled in; its stores must be made in it.
    fn engine(&self) -> &wasmtime::Engine;
    /// Which `wasi:http` the component speaks.
    fn world(&self) -> World;
}

impl PreExt for GuestPre {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            ProxyPre::P2(pre) => pre.engine(),
            ProxyPre::P3(pre) => pre.engine(),
        }
    }

    fn world(&self) -> World {
        match self {
            ProxyPre::P2(_) => World::P2,
            ProxyPre::P3(_) => World::P3,
        }
    }
}

/// A component that passed every check, ready to be served.
pub struct Compiled {
    /// Pre-instantiated component: each request instantiates from it. (Shared: generations
    /// that reuse a kept build, and a generation's reused instances, hold the same one.)
    pub pre: Arc<GuestPre>,
    /// How long compilation (or loading from the cache) took.
    pub compile_time: Duration,
    /// How long linking and the trial instantiation took.
    pub validate_time: Duration,
    /// Where the machine code came from.
    pub source: Source,
    /// When compiled with the incremental cache on: functions found in it and compiled.
    pub incremental: Option<Counts>,
    /// The compiler that made the code.
    pub tier: Tier,
    /// Code compiled just now with a compile cache on, not yet written to it. Whoever serves
    /// it [writes](Unsaved::write) it after the swap: writing an entry (serialize, checksum,
    /// write; tens of MB for a JavaScript or Python guest) must not delay new code.
    pub unsaved: Option<Unsaved>,
}

/// A compiled component and the compile cache it is still to be written to.
pub struct Unsaved {
    cache: Arc<CompileCache>,
    sha256: [u8; 32],
    component: Component,
}

impl Unsaved {
    /// Writes the entry on a blocking thread, and waits for it. A failed write is logged and
    /// costs only a later recompile.
    pub async fn write(self) {
        let Unsaved {
            cache,
            sha256,
            component,
        } = self;
        let dir = cache.dir().to_path_buf();
        let start = Instant::now();
        let written = tokio::task::spawn_blocking(move || cache.put(&sha256, &component))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|put| put);
        match written {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), ms = start.elapsed().as_millis() as u64, "wrote the compile cache entry")
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), dir = %dir.display(), "cannot write the compile cache")
            }
        }
    }
}

/// Rejects byte strings that cannot be a component before handing them to the compiler, so
/// the common mistakes get a precise message.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules are version 1, layer 0; components carry layer 1 in bytes 6..8.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// The world of a component, from its exports: `wasi:http/handler@0.3.*` makes it a 0.3 guest
/// (even if it also exports the 0.2 handler, as `wasmtime serve` decides), anything else is
/// taken for 0.2, and linking says whether it really is one. Unreadable bytes are 0.2 too: the
/// compiler then names what is wrong with them.
pub fn world_of(bytes: &[u8]) -> World {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                for export in exports.into_iter().flatten() {
                    if export.name.name.starts_with("wasi:http/handler@0.3") {
                        return World::P3;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    World::P2
}

/// Compiles (or loads from `cache`) and links `bytes`, in the engine of its world and `tier`.
/// Blocking and CPU-heavy: call it off the async runtime.
pub fn compile(
    runtime: &Runtime,
    bytes: &[u8],
    sha256: &[u8; 32],
    cache: Option<&Arc<CompileCache>>,
    tier: Tier,
) -> Result<Compiled, LoadError> {
    check_header(bytes)?;
    let world = world_of(bytes);
    let backend = runtime
        .backend(world, tier)
        .map_err(|e| LoadError::Compile(wasmtime::format_err!("{e:#}")))?;
    let start = Instant::now();
    let mut reused = None;
    let cached = match cache.map(|c| c.get(&backend.engine, sha256)) {
        Some(Lookup::Hit(component)) => Some(component),
        Some(Lookup::Corrupt(reason)) => {
            tracing::warn!(reason = %reason, "compile cache entry unusable; recompiling");
            None
        }
        Some(Lookup::Miss) | None => None,
    };
    let (component, source) = match cached {
        Some(component) => (component, Source::DiskCache),
        None => {
            let incremental = runtime
                .incremental
                .as_ref()
                .filter(|_| tier == Tier::Optimized);
            let before = incremental.map(|s| s.counts());
            // The memo of unchanged functions (in hotswap's wasmtime, vendor/README.md) is used
            // for the bytes of an open scope only.
            let memo = incremental.map(|_| wasmtime_internal_cranelift::wasm_memo::scope(bytes));
            let component = Component::new(&backend.engine, bytes).map_err(LoadError::Compile)?;
            drop(memo);
            // So that `--tier auto` compiles the next build of this code with Cranelift. A
            // marker already there is left as it is (rewriting it would make it newer than the
            // entries it stands for, and cost a file write per compile).
            if let Some(store) = incremental
                && let Some(code) = crate::engine::incremental::code_digest(bytes)
                && !store.knows_code(&code)
            {
                store.remember_code(&code);
            }
            // Over this compile (another route's compile at the same time adds to the counts).
            reused = before.zip(incremental).map(|(b, s)| {
                let after = s.counts();
                Counts {
                    hits: after.hits - b.hits,
                    misses: after.misses - b.misses,
                    untranslated: after.untranslated - b.untranslated,
                }
            });
            (component, Source::Compiled)
        }
    };
    let compile_time = start.elapsed();
    let start = Instant::now();
    let instance_pre = backend
        .linker
        .instantiate_pre(&component)
        .map_err(LoadError::Link)?;
    let pre = Arc::new(match world {
        World::P3 => p3::bindings::ServicePre::new(instance_pre)
            .map(ProxyPre::P3)
            .map_err(LoadError::NotProxy)?,
        World::P2 => p2::bindings::ProxyPre::new(instance_pre)
            .map(ProxyPre::P2)
            .map_err(LoadError::NotProxy)?,
    });
    let unsaved = cache
        .filter(|_| source == Source::Compiled)
        .map(|cache| Unsaved {
            cache: cache.clone(),
            sha256: *sha256,
            component: component.clone(),
        });
    Ok(Compiled {
        pre,
        compile_time,
        validate_time: start.elapsed(),
        source,
        incremental: reused,
        tier,
        unsaved,
    })
}

/// Creates one throwaway instance, proving the component fits the pool and its start-up code
/// runs, before it may replace a working generation.
pub async fn trial_instantiate(
    runtime: &Arc<Runtime>,
    settings: &StoreSettings,
    pre: &GuestPre,
) -> Result<(), LoadError> {
    let mut store = runtime.new_store(
        pre.engine(),
        settings,
        0,
        None,
        Instant::now() + VALIDATION_TIMEOUT,
        &tracing::Span::none(),
    );
    match tokio::time::timeout(VALIDATION_TIMEOUT, pre.instantiate_async(&mut store)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(LoadError::Instantiate(err)),
        Err(_) => Err(LoadError::Instantiate(wasmtime::format_err!(
            "instantiation took longer than {VALIDATION_TIMEOUT:?}"
        ))),
    }
}

/// Compiles `bytes` at `tier` on a blocking thread (or loads them from the cache), then
/// instantiates them once. The compile's parallel work runs on `pool` if given (background
/// work: a tier-up), else on the process-wide pool.
pub async fn load(
    runtime: &Arc<Runtime>,
    settings: &StoreSettings,
    bytes: Arc<Vec<u8>>,
    sha256: [u8; 32],
    cache: Option<Arc<CompileCache>>,
    tier: Tier,
    pool: Option<&'static rayon::ThreadPool>,
) -> Result<Compiled, LoadError> {
    let rt = runtime.clone();
    let mut compiled = tokio::task::spawn_blocking(move || {
        let run = || compile(&rt, &bytes, &sha256, cache.as_ref(), tier);
        let compiled = match pool {
            Some(pool) => pool.install(run),
            None => run(),
        };
        release_free_memory();
        compiled
    })
    .await
    .map_err(|join| LoadError::Compile(wasmtime::format_err!("compiler task failed: {join}")))??;
    let start = Instant::now();
    trial_instantiate(runtime, settings, &compiled.pre).await?;
    compiled.validate_time += start.elapsed();
    Ok(compiled)
}

/// Hands memory the allocator holds free back to the kernel. A compile allocates and frees tens
/// of MiB, and glibc keeps part of it in its arenas (one per thread that compiled): with the trim
/// hotswap's RSS after 10 and after 200 swaps measured 24.9/25.2 and 25.5/26.7 MiB, without it
/// 28.6/28.9 and 25.4/28.1 MiB (BENCHMARKS.md). Runs on the compile thread, once per swap.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_common_mistakes() {
        assert!(matches!(check_header(b""), Err(LoadError::Empty)));
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
