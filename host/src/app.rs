//! The composition root: the `hotswap` command, and a host's startup (every route, both
//! listeners, signals) and shutdown.

use crate::cli::{Cli, Command, LogFormat, Mode};
use crate::component::cache::CompileCache;
use crate::config::Config;
use crate::http::events::EventStream;
use crate::http::handler::{DevTools, Dispatcher};
use crate::http::server;
use crate::http::tls::Certificates;
use crate::process::listeners::Inherited;
use crate::process::systemd::Notifier;
use crate::process::upgrade::{self, Handoff, Handover, Upgrades};
use crate::process::{self, Identity};
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
            // SAFETY: no other thread exists yet: the runtime starts below, and nothing before
            // this line starts one.
            let mut handoff = unsafe { Handoff::take_from_env() }?;
            // SAFETY: as above.
            let inherited = unsafe { process::listeners::take_from_env() };
            let served = serve_command(*args, inherited, &mut handoff);
            // Whatever stopped this process before it took over from the one it replaces, the
            // old one hears why (and serves on).
            if let (Err(err), Some(handoff)) = (&served, handoff) {
                handoff.failed(&format!("{err:#}"));
            }
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

/// `hotswap serve`: the configuration, logging, the runtime, then [`serve`].
fn serve_command(
    args: crate::cli::ServeArgs,
    inherited: Result<Option<Inherited>>,
    handoff: &mut Option<Handoff>,
) -> Result<()> {
    let config = Config::from_args(args)?;
    telemetry::init(config.log_format == LogFormat::Json);
    for note in &config.notes {
        tracing::warn!("{note}");
    }
    let inherited = inherited?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let served = runtime.block_on(serve(config, inherited, handoff));
    // A compile still running (a stop during startup) is not waited for; a cache entry being
    // written gets a moment (it is written whole or not at all).
    runtime.shutdown_timeout(SHUTDOWN_LEFTOVERS);
    served
}

/// How long work still running on blocking threads when the host exits (a compile, a cache
/// write) is waited for.
const SHUTDOWN_LEFTOVERS: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the configured routes until a stop signal (or until an upgrade hands the listeners
/// to a new process), reloading each as it changes. `inherited`: listeners handed over by
/// systemd or by the process this one replaces, used instead of binding. `handoff`: this
/// process was started by an upgrade; it says when it is ready and waits for the word to go
/// before it accepts anything (taken from the option once used).
pub async fn serve(
    config: Config,
    inherited: Option<Inherited>,
    handoff: &mut Option<Handoff>,
) -> Result<()> {
    // Signals first, before any build, compile or pull: a signal during startup must not meet
    // the default action, which ends the process.
    let signals = signals::install()?;
    let identity = Identity::current(handoff.as_ref().map(|h| h.from));
    tracing::info!(
        pid = identity.pid,
        version = identity.version,
        binary = %identity.binary.display(),
        upgraded_from = identity.upgraded_from,
        listeners_from = inherited.as_ref().map(|i| i.from.as_str()),
        "hotswap {} starting (PID {})",
        identity.version,
        identity.pid
    );
    let host = tokio::select! {
        host = start(config, inherited, identity) => host?,
        () = signals.stopped() => {
            tracing::info!("stop signal received: stopped during startup");
            return Ok(());
        }
    };
    if let Some(handoff) = handoff.take() {
        // Nothing is accepted until the old process says go: requests keep going to it while
        // this one loads.
        let startup = host.startup.clone();
        let said = tokio::select! {
            said = async move {
                let (serving, routes) = startup.wait().await;
                handoff.ready(serving, routes).await
            } => said,
            () = signals.stopped() => {
                tracing::info!("stop signal received: stopped before taking over");
                return Ok(());
            }
        };
        if !said {
            tracing::warn!(
                "the process being replaced did not hand over (it refused this one, or ended); exiting"
            );
            return Ok(());
        }
        tracing::info!(
            from = host.identity.upgraded_from,
            "took over from PID {}: serving",
            host.identity.upgraded_from.unwrap_or(0)
        );
    }
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
    /// Says when the first loads are over.
    startup: StartupFinished,
    /// This process.
    identity: Identity,
    /// Duplicates of the listeners, kept to hand over in an upgrade.
    handover: Vec<(&'static str, std::os::fd::OwnedFd)>,
    /// Where upgrades are asked for (`SIGUSR2`, `POST /upgrade`) and run from.
    upgrades: (Upgrades, tokio::sync::mpsc::Receiver<upgrade::Request>),
    /// systemd, if it listens.
    notifier: Notifier,
    /// Whether the listeners are systemd's sockets.
    systemd_sockets: bool,
    /// The dev-mode event bus, if on.
    events: Option<Arc<events::Events>>,
}

/// Starts every route (building, compiling or pulling, in the background unless
/// `--require-component`), binds the listeners (or takes the inherited ones) and prints the
/// startup lines.
async fn start(
    mut config: Config,
    inherited: Option<Inherited>,
    identity: Identity,
) -> Result<Started> {
    let (mut inherited_public, mut inherited_admin, systemd) = match inherited {
        Some(inherited) => (inherited.public, inherited.admin, inherited.systemd),
        None => (None, None, false),
    };
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
    // An admin socket passed by systemd serves the admin API even without `--admin-addr`: the
    // socket unit is its configuration.
    if let (None, Some(passed)) = (&config.admin, &inherited_admin) {
        let addr = passed
            .local_addr()
            .context("cannot read the address of the passed admin socket")?;
        config.admin = Some(crate::config::AdminConfig {
            addr,
            ..config.passed_admin.clone()
        });
    }
    // Bind the admin listener early: a bad address must fail startup before anything serves.
    let admin_listener = match &config.admin {
        Some(admin) => Some(
            match adopt(inherited_admin.take(), systemd, admin.addr, "admin")? {
                Some(listener) => listener,
                None => admin::bind(admin.addr).await?,
            },
        ),
        None => None,
    };
    if inherited_admin.is_some() {
        tracing::warn!(
            "an admin socket was passed but no admin listener is configured (`--admin-addr`); it is not used"
        );
    }
    let (upgrades, upgrade_requests) = upgrade::channel();
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
    let listener = match adopt(inherited_public.take(), systemd, config.addr, "public")? {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("failed to bind `{}`", config.addr))?,
    };
    let mut handover = vec![("public", dup_listener(&listener)?)];
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
                process: identity.clone(),
                upgrades: upgrades.clone(),
            });
            let admin_addr = listener
                .local_addr()
                .context("failed to read the admin address")?;
            let scheme = if admin.tls.is_some() { "https" } else { "http" };
            tracing::info!(addr = %admin_addr, "admin listener ready");
            handover.push(("admin", dup_listener(&listener)?));
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
    let startup = announce_startup_finished(routes.table.clone(), routes.first_loads, started);
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
        startup,
        identity,
        handover,
        upgrades: (upgrades, upgrade_requests),
        notifier: Notifier::from_env(),
        systemd_sockets: systemd,
        events,
    })
}

/// The inherited listener `listener` as the `what` listener, if there is one. An inherited
/// listener is always used (systemd's socket unit, or the process being replaced, decides the
/// address): a configured address that differs is only logged. `systemd`: the sockets are
/// systemd's.
fn adopt(
    listener: Option<std::net::TcpListener>,
    systemd: bool,
    configured: std::net::SocketAddr,
    what: &str,
) -> Result<Option<tokio::net::TcpListener>> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let addr = listener
        .local_addr()
        .with_context(|| format!("cannot read the address of the inherited {what} socket"))?;
    let same = addr.ip() == configured.ip()
        && (configured.port() == 0 || addr.port() == configured.port());
    match systemd {
        // The socket unit decides the address.
        true => tracing::info!(listener = what, %addr, "serving on the socket systemd passed"),
        false if !same => {
            tracing::warn!(listener = what, inherited = %addr, configured = %configured, "serving on the inherited socket; the configured address is not used (restart to move)")
        }
        _ => {}
    }
    let listener = tokio::net::TcpListener::from_std(listener)
        .with_context(|| format!("cannot serve on the inherited {what} socket"))?;
    Ok(Some(listener))
}

/// A duplicate of `listener`'s socket, kept to hand over in an upgrade.
fn dup_listener(listener: &tokio::net::TcpListener) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    listener
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate the listener (kept for an upgrade)")
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

/// Says, once the startup builds and first loads are over, how many of the routes serve.
#[derive(Clone)]
struct StartupFinished(tokio::sync::watch::Receiver<Option<(usize, usize)>>);

impl StartupFinished {
    /// The routes serving and all routes, once the first loads are over.
    async fn wait(mut self) -> (usize, usize) {
        match self.0.wait_for(Option::is_some).await {
            Ok(counts) => counts.unwrap_or_default(),
            Err(_) => (0, 0),
        }
    }
}

/// Without `--require-component` the routes build and load while the host already answers
/// (503 until each has a generation): says when that is over.
fn announce_startup_finished(
    routes: Arc<route::RouteTable>,
    first_loads: Vec<route::FirstLoad>,
    started: std::time::Instant,
) -> StartupFinished {
    let (tx, rx) = tokio::sync::watch::channel(None);
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
        let _ = tx.send(Some((serving, all.len())));
    });
    StartupFinished(rx)
}

impl Started {
    /// Serves until a stop signal, or until an upgrade hands the listeners to a new process;
    /// then drains.
    async fn run(mut self, signals: signals::Signals) -> Result<()> {
        let traces = self.traces.take();
        let notifier = self.notifier.clone();
        self.on_hangup(&signals);
        // Stop accepting: on a stop signal, or once a new process has taken over.
        let (handed_over, handed) = tokio::sync::watch::channel(false);
        self.on_upgrade(&signals, handed_over);
        let stop = || {
            let stopped = signals.stopped();
            let mut handed = handed.clone();
            async move {
                tokio::select! {
                    () = stopped => {}
                    _ = handed.wait_for(|h| *h) => {}
                }
            }
        };
        let admin_connections = server::Connections::default();
        if let Some((listener, admin)) = self.admin.take() {
            tokio::spawn(admin::serve(
                listener,
                admin,
                admin_connections.clone(),
                stop(),
            ));
        }
        self.tell_systemd_when_ready();
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
            stop(),
        )
        .await;
        if !*handed.borrow() {
            notifier.stopping();
        }
        // Event streams never end by themselves: end them, so their connections can close.
        if let Some(events) = &self.events {
            events.close();
        }
        server::drain(&connections, &*dispatcher, self.config.shutdown_timeout).await;
        // Admin calls still open (the `POST /upgrade` that started a handover among them) get
        // their answer out.
        admin_connections.close_all();
        let _ = tokio::time::timeout(server::CLOSE_GRACE, admin_connections.closed()).await;
        if let Some(traces) = traces {
            traces.shutdown(TRACES_FLUSH).await;
        }
        Ok(())
    }

    /// SIGHUP: re-read config values and certificates, reload every route; systemd hears
    /// `RELOADING=1` before and `READY=1` once every route's reload has ended.
    fn on_hangup(&self, signals: &signals::Signals) {
        let (routes, guest_config) = (self.routes.clone(), self.runtime.guest_config.clone());
        let (certificates, metrics) = (self.certificates.clone(), self.metrics.clone());
        let notifier = self.notifier.clone();
        signals.on_hangup(move || {
            let (routes, guest_config) = (routes.clone(), guest_config.clone());
            let (certificates, metrics) = (certificates.clone(), metrics.clone());
            let notifier = notifier.clone();
            async move {
                notifier.reloading();
                guest_config.reload("SIGHUP");
                if let Some(certificates) = &certificates {
                    certificates.reload_and_log("SIGHUP", &metrics);
                }
                let all = routes.all();
                let mut reports = Vec::with_capacity(all.len());
                for route in all.iter() {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if route
                        .triggers
                        .request(reload::Trigger::Signal(Some(tx)))
                        .await
                    {
                        reports.push(rx);
                    }
                }
                for report in reports {
                    let _ = tokio::time::timeout(HANGUP_REPORT_WAIT, report).await;
                }
                notifier.ready(&serving_status(&routes));
            }
        });
    }

    /// `SIGUSR2` and `POST /upgrade`: one upgrade at a time, each handing the listeners to a new
    /// process; once one has taken over, `handed_over` says so and no more are run.
    fn on_upgrade(
        &mut self,
        signals: &signals::Signals,
        handed_over: tokio::sync::watch::Sender<bool>,
    ) {
        let (upgrades, mut requests) = {
            let (upgrades, requests) = upgrade::channel();
            std::mem::replace(&mut self.upgrades, (upgrades, requests))
        };
        signals.on_upgrade(move || {
            let upgrades = upgrades.clone();
            async move {
                if !upgrades.ask("SIGUSR2") {
                    tracing::warn!("SIGUSR2: an upgrade is already under way; this one is ignored");
                }
            }
        });
        let handover = Handover {
            listeners: std::mem::take(&mut self.handover),
            binary: self.identity.binary.clone(),
            timeout: self.config.upgrade_timeout,
            systemd: self.systemd_sockets,
            notifier: self.notifier.clone(),
        };
        let (routes, pid) = (self.routes.clone(), self.identity.pid);
        let stopped = signals.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                // A stop drops the listeners' duplicates kept for the handover with `handover`,
                // so that the sockets close (and refuse connections) once the accept loops end.
                let request = tokio::select! {
                    request = requests.recv() => match request {
                        Some(request) => request,
                        None => return,
                    },
                    () = &mut stopped => return,
                };
                let serving = routes
                    .all()
                    .iter()
                    .filter(|r| r.slot.current().is_some())
                    .count();
                let outcome = handover.run(serving).await;
                match &outcome {
                    Ok(upgraded) => tracing::info!(
                        by = request.by,
                        new_pid = upgraded.pid,
                        "upgrade: PID {} serves now; this process (PID {pid}) stops accepting and drains",
                        upgraded.pid
                    ),
                    Err(reason) => tracing::warn!(
                        by = request.by,
                        "upgrade refused: {reason}; this process (PID {pid}) serves on"
                    ),
                }
                let done = outcome.is_ok();
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
                if done {
                    let _ = handed_over.send(true);
                    return;
                }
            }
        });
    }

    /// `READY=1` for systemd: at once for a process that took over (its routes loaded before),
    /// else once the first loads are over.
    fn tell_systemd_when_ready(&self) {
        if !self.notifier.is_on() {
            return;
        }
        let (notifier, routes, startup) = (
            self.notifier.clone(),
            self.routes.clone(),
            self.startup.clone(),
        );
        tokio::spawn(async move {
            startup.wait().await;
            notifier.ready(&serving_status(&routes));
        });
    }
}

/// How long systemd's `READY=1` after a SIGHUP waits for one route's reload.
const HANGUP_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// systemd's status line: how many routes serve.
fn serving_status(routes: &route::RouteTable) -> String {
    let all = routes.all();
    let serving = all.iter().filter(|r| r.slot.current().is_some()).count();
    format!(
        "serving {serving} of {} routes (PID {})",
        all.len(),
        std::process::id()
    )
}
