//! A route: one component served under a path prefix, with everything a single component has
//! — its own swap slot, reloader, file watcher, build, concurrency cap and limits — so that
//! nothing one route does (a bad file, a failing build, a trap storm, a guest at its cap)
//! changes what another serves.
//!
//! [`start`] makes a route and its tasks: watch its file, build it once, load it, then reload it
//! on every trigger. The [`RouteTable`] says which route serves a path; [`apps`] adds a route
//! for every component dropped into an apps directory.

pub mod apps;
mod table;

pub use table::{RouteTable, matches};

use crate::cli::WatchMode;
use crate::component::cache::CompileCache;
use crate::component::oci;
use crate::config::{ComponentOrigin, Config, RouteConfig};
use crate::engine::Runtime;
use crate::events::Events;
use crate::guest::bounds::Bounds;
use crate::guest::orphans::Orphans;
use crate::guest::slot::Slot;
use crate::metrics::{Metrics, RouteMetrics, RouteName};
use crate::reload::Reloader;
use crate::reload::builder::{Builder, SourceWatcher};
use crate::reload::{self, Outcome, Pipeline, Target, Trigger, TriggerSender};
use crate::watcher::{self, FileWatcher};
use anyhow::{Result, bail};
use http::HeaderValue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Name of the response header that says which route served a request.
pub const ROUTE_HEADER: &str = "x-hotswap-route";

/// One served component and its bounds.
pub struct Route {
    /// A number no other route of the process has (what the guests' time slicing tells routes
    /// apart by).
    pub id: usize,
    /// Names the route in the admin API, metrics and logs.
    pub name: RouteName,
    /// The path prefix it serves (`/`, or no trailing `/`).
    pub prefix: String,
    /// Where its component comes from, for `/status` and logs.
    pub source: String,
    /// The generation it serves.
    pub slot: Arc<Slot>,
    /// What its guests run with: their limits, store settings and metrics, and its guests
    /// whose client went away.
    pub guests: Arc<Bounds>,
    /// Its concurrency cap.
    pub permits: Arc<Semaphore>,
    /// Where its reloads are asked for.
    pub triggers: TriggerSender,
    /// Its series of the metrics.
    pub metrics: RouteMetrics,
    /// Its name as a response header value.
    pub header: HeaderValue,
    /// Served since the host started (a configured route, or an app found at startup): only
    /// such routes decide `/readyz`. An app dropped in later never makes the host unready.
    pub startup: bool,
}

impl Route {
    /// Requests currently holding one of its concurrency slots.
    pub fn in_flight(&self) -> usize {
        self.guests.limits.max_concurrency - self.permits.available_permits()
    }

    /// Resolves once none of its requests holds a slot, counting guests that run on after their
    /// client left. Takes every slot as it does so: only for shutdown.
    pub async fn all_finished(&self) {
        let all = u32::try_from(self.guests.limits.max_concurrency).unwrap_or(u32::MAX);
        // The semaphore is never closed, so this only returns once every slot is free.
        let _all = self.permits.acquire_many(all).await;
    }
}

/// What every route of a host shares: the runtime, the code cache and the host-wide settings
/// of watching and loading.
#[derive(Clone)]
pub struct Host {
    /// The engine and linker.
    pub runtime: Arc<Runtime>,
    /// The on-disk compile cache, if on.
    pub cache: Option<Arc<CompileCache>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Watch component files.
    pub watch: bool,
    /// How: OS events or polling.
    pub watch_mode: WatchMode,
    /// Quiet period after a file event.
    pub debounce: Duration,
    /// Interval of `--watch poll`.
    pub file_poll_interval: Duration,
    /// Largest component accepted.
    pub max_component_size: u64,
    /// Good generations kept per route.
    pub keep_generations: usize,
    /// A route without a valid component at startup is an error.
    pub require_component: bool,
    /// The compile cache directory (registry layers are kept under it).
    pub cache_dir: Option<PathBuf>,
    /// A failed request's 500 body carries the guest's error (dev mode).
    pub expose_errors: bool,
    /// The dev-mode event bus its reloads and builds publish into, if the stream is on.
    pub events: Option<Arc<Events>>,
}

impl Host {
    /// The shared parts of `config`'s routes; `events`: the bus they publish into (dev mode).
    pub fn new(
        config: &Config,
        runtime: Arc<Runtime>,
        cache: Option<Arc<CompileCache>>,
        metrics: Arc<Metrics>,
        events: Option<Arc<Events>>,
    ) -> Host {
        Host {
            runtime,
            cache,
            metrics,
            watch: config.watch,
            watch_mode: config.watch_mode,
            debounce: config.debounce,
            file_poll_interval: config.file_poll_interval,
            max_component_size: config.max_component_size,
            keep_generations: config.keep_generations,
            require_component: config.require_component,
            cache_dir: config.cache_dir.clone(),
            expose_errors: config.mode == crate::cli::Mode::Dev,
            events,
        }
    }
}

/// The watchers a route needs while it serves; dropping them stops its reloads on change.
pub struct RouteTasks {
    _file: Option<FileWatcher>,
    _sources: Option<SourceWatcher>,
    first_load: Option<oneshot::Receiver<()>>,
}

/// Resolves once a route's startup build and first load have ended, loaded or not.
pub type FirstLoad = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl RouteTasks {
    /// The end of the route's startup build and first load (at once if they ran in
    /// [`start`]).
    pub fn first_load(&mut self) -> FirstLoad {
        let done = self.first_load.take();
        Box::pin(async move {
            if let Some(done) = done {
                let _ = done.await;
            }
        })
    }
}

/// Starts `config`'s route: watches its file (unless `watch_file` is false: an apps directory
/// watches for it), runs its build once and watches its sources, loads it, and leaves its
/// reloader running. `startup`: the route is one of those the host starts with (it decides
/// readiness).
///
/// With `--require-component` the build and the load happen before this returns, and a route
/// that cannot load is an error. Otherwise they run in the background, so the host can listen
/// at once: until the first generation loads, the route answers 503 with `Retry-After` and
/// says why (building, compiling, or no valid component). [`RouteTasks::first_load`] says when
/// that phase is over.
pub async fn start(
    host: &Host,
    config: &RouteConfig,
    watch_file: bool,
    startup: bool,
) -> Result<(Arc<Route>, RouteTasks)> {
    let (triggers, trigger_rx) = reload::channel();
    let route = Arc::new(Route::new(host, config, triggers.clone(), startup)?);
    // Watch before the first read, so a change landing in between is not missed. (A registry
    // component is polled by its reloader instead.)
    let file = match (config.origin.file(), host.watch && watch_file) {
        (Some(file), true) => Some(watch(host, file, triggers.clone())?),
        _ => None,
    };
    // Dev loop: build once now, then on every source change (one build at a time).
    let (first_build, sources) = match &config.build {
        Some(build) => {
            let builder = Builder::new(build.clone(), route.metrics.clone(), host.events.clone());
            (Some(builder.clone()), Some(builder.start(triggers)?))
        }
        None => None.unzip(),
    };
    let reloader = reloader(host, config, &route)?;
    let first_load = if host.require_component {
        // Validate first, fail fast: nothing listens until this route serves.
        load_now(reloader, trigger_rx, first_build, config).await?;
        None
    } else {
        route.slot.set_unavailable_reason(match &first_build {
            Some(builder) => format!("building: the first build (`{}`) is running", builder.cmd()),
            None => format!("loading `{}`", config.origin.display()),
        });
        Some(load_in_background(reloader, trigger_rx, first_build))
    };
    Ok((
        route,
        RouteTasks {
            _file: file,
            _sources: sources,
            first_load,
        },
    ))
}

impl Route {
    fn new(
        host: &Host,
        config: &RouteConfig,
        triggers: TriggerSender,
        startup: bool,
    ) -> Result<Route> {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let metrics = host.metrics.route(&config.name);
        Ok(Route {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: metrics.route().clone(),
            prefix: config.prefix.clone(),
            source: config.origin.display(),
            slot: Arc::new(
                Slot::new(host.keep_generations, config.canary.clone())
                    .with_events(host.events.clone()),
            ),
            guests: Arc::new(Bounds {
                store: host.runtime.store_settings(config)?,
                limits: config.limits.clone(),
                metrics: metrics.clone(),
                orphans: Orphans::new(config.limits.max_concurrency, metrics.clone()),
                expose_errors: host.expose_errors,
            }),
            permits: Arc::new(Semaphore::new(config.limits.max_concurrency)),
            triggers,
            header: HeaderValue::from_str(&config.name)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
            startup,
            metrics,
        })
    }
}

/// Watches `file` (natively or by polling, as the host is configured), asking `triggers` for a
/// reload on each change.
fn watch(host: &Host, file: &Path, triggers: TriggerSender) -> Result<FileWatcher> {
    let changed = move || triggers.send(Trigger::FileChanged);
    match host.watch_mode {
        WatchMode::Native => watcher::watch(file, host.debounce, changed),
        WatchMode::Poll => watcher::poll(file, host.file_poll_interval, changed),
    }
}

/// The reloader of `route`: its pipeline (what it feeds of the route, and the host's engines
/// and cache) and where its component comes from.
fn reloader(host: &Host, config: &RouteConfig, route: &Route) -> Result<Reloader> {
    let origin =
        match &config.origin {
            ComponentOrigin::File(path) => reload::Origin::File(path.clone()),
            ComponentOrigin::Registry(spec) => reload::Origin::Registry(Arc::new(
                oci::Registry::new(spec, host.cache_dir.as_deref(), host.max_component_size)?,
            )),
        };
    let pipeline = Arc::new(Pipeline {
        runtime: host.runtime.clone(),
        cache: host.cache.clone(),
        events: host.events.clone(),
        target: Target {
            name: route.name.clone(),
            source: route.source.clone(),
            slot: route.slot.clone(),
            store: route.guests.store.clone(),
            tier: route.guests.limits.tier,
            metrics: route.metrics.clone(),
        },
    });
    Ok(Reloader::new(pipeline, origin, host.max_component_size))
}

/// `--require-component`: builds and loads now, and fails if the route cannot serve; then
/// leaves the reloader running.
async fn load_now(
    mut reloader: Reloader,
    triggers: mpsc::Receiver<Trigger>,
    build: Option<Builder>,
    config: &RouteConfig,
) -> Result<()> {
    if let Some(builder) = &build {
        builder.run().await;
    }
    let report = reloader.handle(Trigger::Startup).await;
    if let (Some(reason), Outcome::Failed) = (&report.error, report.result) {
        bail!(
            "cannot serve `{}` (route `{}`): {reason}",
            config.origin.display(),
            config.name
        );
    }
    tokio::spawn(reloader.run(triggers));
    Ok(())
}

/// Builds and loads in the background while the host listens; the receiver says when that
/// first load has ended, loaded or not. Then the reloader runs on.
fn load_in_background(
    mut reloader: Reloader,
    triggers: mpsc::Receiver<Trigger>,
    build: Option<Builder>,
) -> oneshot::Receiver<()> {
    let (done, first_load) = oneshot::channel();
    tokio::spawn(async move {
        if let Some(builder) = build {
            builder.run().await;
        }
        reloader.handle(Trigger::Startup).await;
        let _ = done.send(());
        reloader.run(triggers).await;
    });
    first_load
}
