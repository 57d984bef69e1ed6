//! hotswap: an HTTP host for `wasi:http` WebAssembly components (WASI 0.2 and 0.3) that swaps in
//! new builds without a restart and without dropping a request.
//!
//! Where a request goes: [`server`] accepts connections and hands each request to
//! [`http::handler::Dispatcher`], which picks its [`route::Route`] from the [`route::RouteTable`]
//! (longest path prefix; 404 if none), takes that route's current [`slot::Generation`] out of
//! its swap slot under its limits, instantiates it in a fresh store ([`engine`]; a guest that
//! computes long yields its worker thread as [`slices`] decides) and calls its handler:
//! `wasi:http/incoming-handler` for a 0.2 guest, `wasi:http/handler` for a 0.3 one (or, with
//! `--instance-reuse`, hands a 0.3 request to one of the generation's [`reuse`]d instances).
//!
//! Where a new component goes: each route has its own pipeline ([`route::start`]), which runs
//! its first build and load in the background while the host already listens (503 until
//! then). Its [`watcher`] (or its [`builder`], SIGHUP, see [`signals`], or the [`admin`] API)
//! sends a trigger to its [`reload`]er, which reads the file (or pulls from a registry,
//! [`oci`]), compiles and validates it with [`loader`] in the engine of its world and compiler
//! [`tier`] (Winch first for a large new component, Cranelift with its [`incremental`] cache
//! otherwise), and installs it in the route's [`slot`]; a Winch build is later replaced by its
//! Cranelift build as the same generation (a tier-up). Requests already running keep the
//! generation they started with. With `--apps`, [`route::apps`] starts a route for every
//! component dropped into the directory.

#![deny(missing_docs)]

pub mod admin;
pub mod atomic_write;
pub mod cli;
pub mod component;
pub mod config;
pub mod engine;
pub mod guest;
pub mod http;
pub mod metrics;
pub mod private_dir;
pub mod reload;
pub mod route;
pub mod signals;
pub mod telemetry;
#[cfg(test)]
mod vendored_tests;
pub mod wasi;
pub mod watcher;

/// A directory path of its own for one unit test (unique per test process and call), removed
/// first if an earlier run left it; the test creates what it needs in it.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hotswap-{tag}-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

use anyhow::{Context, Result, bail};
use cli::{Cli, Command, Mode};
use config::Config;
use std::io::Write;
use std::sync::Arc;

/// The whole `hotswap` command: parse the arguments, run, print any error chain, exit 1 on
/// error.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<()> {
    use clap::Parser;
    // No subcommand: `hotswap serve` with no arguments (so flags' environment twins still
    // apply), which takes the component and everything else from `hotswap.toml`.
    let command = match cli.command {
        Some(command) => command,
        None => Cli::try_parse_from(["hotswap", "serve"])?
            .command
            .context("`serve` parses to a command")?,
    };
    match command {
        Command::Serve(args) => {
            let config = Config::from_args(*args)?;
            telemetry::init(config.log_format);
            for note in &config.notes {
                tracing::warn!("{note}");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            let served = runtime.block_on(serve(config));
            // A compile still running (a stop during startup) is not waited for; a cache
            // entry being written gets a moment (it is written whole or not at all).
            runtime.shutdown_timeout(SHUTDOWN_LEFTOVERS);
            served
        }
        Command::Init(args) => {
            if args.path.exists() && !args.force {
                bail!(
                    "`{}` already exists; pass `--force` to overwrite it",
                    args.path.display()
                );
            }
            std::fs::write(&args.path, config::file::STARTER)
                .with_context(|| format!("failed to write `{}`", args.path.display()))?;
            println!("wrote {}", args.path.display());
            Ok(())
        }
    }
}

/// How long work still running on blocking threads when the host exits (a compile, a cache
/// write) is waited for.
const SHUTDOWN_LEFTOVERS: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the configured routes until a stop signal, reloading each as it changes.
pub async fn serve(config: Config) -> Result<()> {
    // Signals first, before any build, compile or pull: a signal during startup must not meet
    // the default action, which ends the process.
    let signals = signals::install()?;
    let host = tokio::select! {
        host = start(config) => host?,
        () = signals.stopped() => {
            tracing::info!("stop signal received: stopped during startup");
            return Ok(());
        }
    };
    host.run(signals).await
}

/// A host that has started: its routes load (or have loaded), its listeners are bound.
struct Started {
    config: Config,
    runtime: Arc<engine::Runtime>,
    metrics: Arc<metrics::Metrics>,
    routes: Arc<route::RouteTable>,
    listener: tokio::net::TcpListener,
    admin: Option<(tokio::net::TcpListener, Arc<admin::Admin>)>,
    _route_tasks: Vec<route::RouteTasks>,
    _apps: Option<route::apps::AppsWatcher>,
    _config_watcher: Option<watcher::FileWatcher>,
}

/// Starts every route (building, compiling or pulling, in the background unless
/// `--require-component`), binds the listeners and prints the startup lines.
async fn start(mut config: Config) -> Result<Started> {
    // Whoever can write the cache directory can make the host run their code: a directory
    // that is not private to this user is not used at all (nor the incremental cache and the
    // registry copies under it).
    if let Some(dir) = &config.cache_dir
        && let Err(err) = private_dir::ensure(dir)
    {
        tracing::warn!(dir = %dir.display(), "compile cache disabled (and the incremental cache and registry copies under it): {err}");
        config.cache_dir = None;
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let runtime = Arc::new(engine::Runtime::new(&config, metrics.clone())?);
    runtime.start_epoch_ticker()?;
    let cache = match &config.cache_dir {
        Some(dir) => match component::cache::CompileCache::open(dir) {
            Ok(cache) => Some(Arc::new(cache)),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "compile cache disabled");
                None
            }
        },
        None => None,
    };

    // Bind the admin listener early: a bad address must fail startup before anything serves.
    let admin_listener = match &config.admin {
        Some(admin) => Some(admin::bind(admin.addr).await?),
        None => None,
    };

    // Dev mode: config values are re-read when the configuration file is saved (in prod mode
    // only on SIGHUP or `POST /reload`).
    let config_watcher = match (
        &config.config_file,
        config.watch && config.mode == Mode::Dev,
    ) {
        (Some(file), true) => {
            let guest_config = runtime.guest_config.clone();
            Some(watcher::watch(file, config.debounce, move || {
                guest_config.reload("file change")
            })?)
        }
        _ => None,
    };

    // Every route: watch, build once, load, then reload on its triggers.
    let host = Arc::new(route::Host::new(
        &config,
        runtime.clone(),
        cache,
        metrics.clone(),
    ));
    let routes = Arc::new(route::RouteTable::default());
    let started = std::time::Instant::now();
    let mut route_tasks = Vec::new();
    let mut first_loads = Vec::new();
    for route_config in &config.routes {
        let (route, mut tasks) = route::start(&host, route_config, true, true).await?;
        first_loads.push(tasks.first_load());
        routes
            .insert(route)
            .map_err(anyhow::Error::msg)
            .context("the configuration let two routes collide")?;
        route_tasks.push(tasks);
    }
    let apps = match &config.apps {
        Some(apps) => {
            let mut apps =
                route::apps::serve(host.clone(), apps, config.defaults.clone(), routes.clone())
                    .await?;
            first_loads.extend(apps.take_first_loads());
            Some(apps)
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("failed to bind `{}`", config.addr))?;
    let addr = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let admin = match (admin_listener, &config.admin) {
        (Some(listener), Some(settings)) => {
            let admin_addr = listener
                .local_addr()
                .context("failed to read the admin address")?;
            tracing::info!(addr = %admin_addr, "admin listener ready");
            println!("Admin API on http://{admin_addr}/");
            let admin = Arc::new(admin::Admin {
                routes: routes.clone(),
                guest_config: runtime.guest_config.clone(),
                metrics: metrics.clone(),
                token: settings.token.clone(),
                max_component_size: config.max_component_size,
                limits: config.conn.clone(),
                timeout: settings.timeout,
            });
            Some((listener, admin))
        }
        _ => None,
    };
    for route in routes.all().iter() {
        tracing::info!(%addr, route = %route.name, prefix = %route.prefix, component = %route.source, mode = ?config.mode, "listening");
    }
    println!("Serving HTTP on http://{addr}/");
    std::io::stdout()
        .flush()
        .context("failed to write to stdout")?;
    // Without `--require-component` the routes build and load while the host already answers
    // (503 until each has a generation); say when that is over.
    {
        let routes = routes.clone();
        tokio::spawn(async move {
            for loaded in first_loads {
                loaded.await;
            }
            let all = routes.all();
            let serving = all.iter().filter(|r| r.slot.current().is_some()).count();
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(serving, routes = all.len(), elapsed_ms, "startup finished");
            println!(
                "Startup finished: {serving} of {} routes serving ({elapsed_ms} ms)",
                all.len()
            );
            let _ = std::io::stdout().flush();
        });
    }
    Ok(Started {
        config,
        runtime,
        metrics,
        routes,
        listener,
        admin,
        _route_tasks: route_tasks,
        _apps: apps,
        _config_watcher: config_watcher,
    })
}

impl Started {
    /// Serves until a stop signal, then drains.
    async fn run(self, signals: signals::Signals) -> Result<()> {
        {
            let (routes, guest_config) = (self.routes.clone(), self.runtime.guest_config.clone());
            signals.on_hangup(move || {
                guest_config.reload("SIGHUP");
                for route in routes.all().iter() {
                    route.triggers.send(reload::Trigger::Signal);
                }
            });
        }
        if let Some((listener, admin)) = self.admin {
            tokio::spawn(admin::serve(listener, admin));
        }
        let dispatcher = Arc::new(http::handler::Dispatcher::new(
            self.runtime,
            self.routes,
            self.config.conn.clone(),
            self.metrics,
            self.config.mode == Mode::Dev,
        ));
        let connections = http::server::Connections::default();
        let accept = http::server::Accept {
            limits: self.config.conn.clone(),
            max_connections: None,
            name: "public",
        };
        http::server::accept(
            self.listener,
            dispatcher.clone(),
            accept,
            connections.clone(),
            signals.stopped(),
        )
        .await;
        http::server::drain(&connections, &*dispatcher, self.config.shutdown_timeout).await;
        Ok(())
    }
}
