//! A host's startup: the listeners (bound, or inherited from systemd or the process an
//! upgrade replaces), every route, traces, the compile cache, and the lines that say when it
//! serves.

use super::*;

/// A host that has started: its routes load (or have loaded), its listeners are bound.
pub(super) struct Started {
    pub(super) config: Config,
    pub(super) runtime: Arc<engine::Runtime>,
    pub(super) metrics: Arc<metrics::Metrics>,
    pub(super) routes: Arc<route::RouteTable>,
    pub(super) listener: tokio::net::TcpListener,
    pub(super) admin: Option<(tokio::net::TcpListener, Arc<admin::Admin>)>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) certificates: Option<Arc<Certificates>>,
    pub(super) _certificate_watch: Vec<watcher::FileWatcher>,
    pub(super) _route_tasks: Vec<route::RouteTasks>,
    pub(super) _apps: Option<route::apps::AppsWatcher>,
    pub(super) _config_watcher: Option<watcher::FileWatcher>,
    pub(super) traces: Option<telemetry::traces::Traces>,
    /// Says when the first loads are over.
    pub(super) startup: StartupFinished,
    /// This process.
    pub(super) identity: Identity,
    /// Duplicates of the listeners, kept to hand over in an upgrade.
    pub(super) handover: Vec<(&'static str, std::os::fd::OwnedFd)>,
    /// Where upgrades are asked for (`SIGUSR2`, `POST /upgrade`) and run from.
    pub(super) upgrades: (Upgrades, tokio::sync::mpsc::Receiver<upgrade::Request>),
    /// systemd, if it listens.
    pub(super) notifier: Notifier,
    /// Whether the listeners are systemd's sockets.
    pub(super) systemd_sockets: bool,
    /// The dev-mode event bus, if on.
    pub(super) events: Option<Arc<events::Events>>,
}

/// Starts every route (building, compiling or pulling, in the background unless
/// `--require-component`), binds the listeners (or takes the inherited ones) and prints the
/// startup lines.
pub(super) async fn start(
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
pub(super) struct StartupFinished(tokio::sync::watch::Receiver<Option<(usize, usize)>>);

impl StartupFinished {
    /// The routes serving and all routes, once the first loads are over.
    pub(super) async fn wait(mut self) -> (usize, usize) {
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
