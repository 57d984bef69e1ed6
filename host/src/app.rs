//! The composition root: the `hotswap` command, and a host's startup (every route, both
//! listeners, signals) and shutdown.

use crate::cli::{Cli, Command, LogFormat, Mode};
use crate::component::cache::CompileCache;
use crate::config::Config;
use crate::http::events::EventStream;
use crate::http::handler::{DevTools, Dispatcher};
use crate::http::server;
use crate::http::tls::Certificates;
use crate::{
    admin, engine, events, metrics, private_dir, reload, route, signals, telemetry, watcher,
};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::sync::Arc;

/// The whole `hotswap` command: parse the arguments, run, print any error chain, exit 1 on
/// error.
pub fn main() -> std::process::ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // `--help` shows each default from the constant the configuration uses.
    let matches = crate::config::defaults::annotate(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    match run(cli) {
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
            telemetry::init(config.log_format == LogFormat::Json);
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
            std::fs::write(&args.path, crate::config::defaults::starter())
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
    tls: Option<Arc<rustls::ServerConfig>>,
    certificates: Option<Arc<Certificates>>,
    _certificate_watch: Vec<watcher::FileWatcher>,
    _route_tasks: Vec<route::RouteTasks>,
    _apps: Option<route::apps::AppsWatcher>,
    _config_watcher: Option<watcher::FileWatcher>,
    traces: Option<telemetry::traces::Traces>,
    events: Option<Arc<events::Events>>,
}

/// Starts every route (building, compiling or pulling, in the background unless
/// `--require-component`), binds the listeners and prints the startup lines.
async fn start(mut config: Config) -> Result<Started> {
    let cache = open_cache(&mut config);
    let metrics = Arc::new(metrics::Metrics::default());
    // A certificate that does not check out is a startup error, before anything binds.
    let certificates = match config.tls.as_slice() {
        [] => None,
        pairs => {
            let certificates = Certificates::load(pairs.to_vec())?;
            crate::http::tls::record(&certificates.infos(), &metrics);
            Some(certificates)
        }
    };
    let tls = certificates
        .as_ref()
        .map(|c| c.server_config(None))
        .transpose()?;
    let admin_tls = match (
        &certificates,
        config.admin.as_ref().and_then(|a| a.client_ca.as_ref()),
    ) {
        (Some(certificates), Some(ca)) => Some(certificates.server_config(Some(ca))?),
        _ => None,
    };
    let certificate_watch = match (&certificates, config.watch) {
        (Some(certificates), true) => certificates.watch(config.debounce, metrics.clone())?,
        _ => Vec::new(),
    };
    let traces = start_traces(&config, &metrics)?;
    let runtime = Arc::new(engine::Runtime::new(&config, metrics.clone())?);
    runtime.start_epoch_ticker()?;
    // Bind the admin listener early: a bad address must fail startup before anything serves.
    let admin_listener = match &config.admin {
        Some(admin) => Some(admin::bind(admin.addr).await?),
        None => None,
    };
    let config_watcher = watch_config_values(&config, &runtime)?;
    // The dev-mode event bus, before any route starts: the first build's failure is an event.
    let events = config
        .dev_events
        .as_ref()
        .map(|_| events::Events::new(events::MAX_SUBSCRIBERS, events::CHANNEL_CAPACITY));
    let host = Arc::new(route::Host::new(
        &config,
        runtime.clone(),
        cache,
        metrics.clone(),
        events.clone(),
    ));
    let started = std::time::Instant::now();
    let routes = start_routes(&host, &config).await?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("failed to bind `{}`", config.addr))?;
    let addr = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let admin = match (admin_listener, &config.admin) {
        (Some(listener), Some(settings)) => {
            let admin = Arc::new(admin::Admin {
                routes: routes.table.clone(),
                guest_config: runtime.guest_config.clone(),
                metrics: metrics.clone(),
                token: settings.token.clone(),
                max_component_size: config.max_component_size,
                limits: config.conn.clone(),
                timeout: settings.timeout,
                tls: admin_tls,
                certificates: certificates.clone(),
            });
            let admin_addr = listener
                .local_addr()
                .context("failed to read the admin address")?;
            let scheme = if admin.tls.is_some() { "https" } else { "http" };
            tracing::info!(addr = %admin_addr, "admin listener ready");
            println!("Admin API on {scheme}://{admin_addr}/");
            Some((listener, admin))
        }
        _ => None,
    };
    for route in routes.table.all().iter() {
        tracing::info!(%addr, route = %route.name, prefix = %route.prefix, component = %route.source, mode = ?config.mode, "listening");
    }
    if let Some(dev) = &config.dev_events {
        tracing::info!(%addr, path = %dev.path, live_reload = dev.live_reload, "serving the event stream at {}", dev.path);
    }
    match tls {
        Some(_) => println!("Serving HTTPS on https://{addr}/"),
        None => println!("Serving HTTP on http://{addr}/"),
    }
    std::io::stdout()
        .flush()
        .context("failed to write to stdout")?;
    announce_startup_finished(routes.table.clone(), routes.first_loads, started);
    Ok(Started {
        config,
        runtime,
        metrics,
        routes: routes.table,
        listener,
        admin,
        tls,
        certificates,
        _certificate_watch: certificate_watch,
        _route_tasks: routes.tasks,
        _apps: routes.apps,
        _config_watcher: config_watcher,
        traces,
        events,
    })
}

/// Traces, if an OTLP endpoint is configured (before any route starts, so that its first
/// load is traced too).
fn start_traces(
    config: &Config,
    metrics: &metrics::Metrics,
) -> Result<Option<telemetry::traces::Traces>> {
    let Some(settings) = &config.traces else {
        return Ok(None);
    };
    let counters = telemetry::traces::SpanCounters {
        exported: metrics.trace_spans("exported"),
        dropped: metrics.trace_spans("dropped"),
        failed: metrics.trace_spans("failed"),
    };
    let traces = telemetry::traces::init(settings, counters)?;
    tracing::info!(
        endpoint = %settings.endpoint,
        service = %settings.service_name,
        sampler = ?settings.sampler,
        "sending traces over OTLP"
    );
    Ok(Some(traces))
}

/// How long spans still queued at shutdown get to reach the collector.
const TRACES_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The compile cache, if it is on and its directory is private. Whoever can write the cache
/// directory can make the host run their code: a directory that is not private to this user
/// is not used at all (nor the incremental cache and the registry copies under it).
fn open_cache(config: &mut Config) -> Option<Arc<CompileCache>> {
    let dir = config.cache_dir.as_ref()?;
    if let Err(err) = private_dir::ensure(dir) {
        tracing::warn!(dir = %dir.display(), "compile cache disabled (and the incremental cache and registry copies under it): {err}");
        config.cache_dir = None;
        return None;
    }
    match CompileCache::open(dir) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "compile cache disabled");
            None
        }
    }
}

/// Dev mode: config values are re-read when the configuration file is saved (in prod mode only
/// on SIGHUP or `POST /reload`).
fn watch_config_values(
    config: &Config,
    runtime: &Arc<engine::Runtime>,
) -> Result<Option<watcher::FileWatcher>> {
    match (
        &config.config_file,
        config.watch && config.mode == Mode::Dev,
    ) {
        (Some(file), true) => {
            let guest_config = runtime.guest_config.clone();
            Ok(Some(watcher::watch(file, config.debounce, move || {
                guest_config.reload("file change")
            })?))
        }
        _ => Ok(None),
    }
}

/// The routes the host starts with, and what keeps them going.
struct Routes {
    table: Arc<route::RouteTable>,
    tasks: Vec<route::RouteTasks>,
    apps: Option<route::apps::AppsWatcher>,
    first_loads: Vec<route::FirstLoad>,
}

/// Every configured route (and every app of `--apps`): watch, build once, load, then reload on
/// its triggers.
async fn start_routes(host: &Arc<route::Host>, config: &Config) -> Result<Routes> {
    let table = Arc::new(route::RouteTable::default());
    let mut tasks = Vec::new();
    let mut first_loads = Vec::new();
    for route_config in &config.routes {
        let (route, mut started) = route::start(host, route_config, true, true).await?;
        first_loads.push(started.first_load());
        table
            .insert(route)
            .map_err(anyhow::Error::msg)
            .context("the configuration let two routes collide")?;
        tasks.push(started);
    }
    let apps = match &config.apps {
        Some(apps) => {
            let mut apps =
                route::apps::serve(host.clone(), apps, config.defaults.clone(), table.clone())
                    .await?;
            first_loads.extend(apps.take_first_loads());
            Some(apps)
        }
        None => None,
    };
    Ok(Routes {
        table,
        tasks,
        apps,
        first_loads,
    })
}

/// Without `--require-component` the routes build and load while the host already answers
/// (503 until each has a generation): says when that is over.
fn announce_startup_finished(
    routes: Arc<route::RouteTable>,
    first_loads: Vec<route::FirstLoad>,
    started: std::time::Instant,
) {
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

impl Started {
    /// Serves until a stop signal, then drains.
    async fn run(mut self, signals: signals::Signals) -> Result<()> {
        let traces = self.traces.take();
        {
            let (routes, guest_config) = (self.routes.clone(), self.runtime.guest_config.clone());
            let (certificates, metrics) = (self.certificates.clone(), self.metrics.clone());
            signals.on_hangup(move || {
                guest_config.reload("SIGHUP");
                if let Some(certificates) = &certificates {
                    certificates.reload_and_log("SIGHUP", &metrics);
                }
                for route in routes.all().iter() {
                    route.triggers.send(reload::Trigger::Signal);
                }
            });
        }
        if let Some((listener, admin)) = self.admin {
            tokio::spawn(admin::serve(listener, admin));
        }
        let dev = match (&self.config.dev_events, &self.events) {
            (Some(settings), Some(events)) => Some(DevTools {
                stream: EventStream {
                    path: settings.path.clone(),
                    events: events.clone(),
                },
                live_reload: settings.live_reload,
            }),
            _ => None,
        };
        let dispatcher = Arc::new(Dispatcher::new(
            self.runtime,
            self.routes,
            self.config.conn.clone(),
            self.metrics,
            dev,
        ));
        let connections = server::Connections::default();
        let accept = server::Accept {
            limits: self.config.conn.clone(),
            max_connections: None,
            name: "public",
            tls: self.tls,
        };
        server::accept(
            self.listener,
            dispatcher.clone(),
            accept,
            connections.clone(),
            signals.stopped(),
        )
        .await;
        // Event streams never end by themselves: end them, so their connections can close.
        if let Some(events) = &self.events {
            events.close();
        }
        server::drain(&connections, &*dispatcher, self.config.shutdown_timeout).await;
        if let Some(traces) = traces {
            traces.shutdown(TRACES_FLUSH).await;
        }
        Ok(())
    }
}
