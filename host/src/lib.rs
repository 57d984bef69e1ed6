//! hotswap: an HTTP host for `wasi:http/proxy` WebAssembly components that swaps in new builds
//! without a restart and without dropping a request.
//!
//! Where a request goes: [`server`] accepts connections and hands each request to
//! [`handler::Dispatcher`], which takes the current [`slot::Generation`] out of the swap slot,
//! instantiates it in a fresh store ([`engine`]) and calls its `wasi:http/incoming-handler`.
//!
//! Where a new component goes: [`watcher`] (or SIGHUP, see [`signals`]) sends a trigger to
//! [`reload`], which reads the file, compiles and validates it with [`loader`], and installs
//! it in the [`slot`]. Requests already running keep the generation they started with.

#![deny(missing_docs)]

pub mod admin;
pub mod body;
pub mod builder;
pub mod cache;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod conn_io;
pub mod engine;
pub mod guest_config;
pub mod guest_io;
pub mod handler;
pub mod keyvalue;
pub mod loader;
pub mod metrics;
pub mod oci;
pub mod outbound;
pub mod reload;
pub mod server;
pub mod signals;
pub mod slot;
pub mod telemetry;
pub mod watcher;

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
            runtime.block_on(serve(config))
        }
        Command::Init(args) => {
            if args.path.exists() && !args.force {
                bail!(
                    "`{}` already exists; pass `--force` to overwrite it",
                    args.path.display()
                );
            }
            std::fs::write(&args.path, config_file::STARTER)
                .with_context(|| format!("failed to write `{}`", args.path.display()))?;
            println!("wrote {}", args.path.display());
            Ok(())
        }
    }
}

/// Serves the configured component until a stop signal, reloading it as it changes.
pub async fn serve(config: Config) -> Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let runtime = Arc::new(engine::Runtime::new(&config, metrics.clone())?);
    runtime.start_epoch_ticker()?;
    let slot = Arc::new(slot::Slot::new(config.keep_generations));
    let cache = match &config.cache_dir {
        Some(dir) => match cache::CompileCache::open(dir, &runtime.engine) {
            Ok(cache) => Some(Arc::new(cache)),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "compile cache disabled");
                None
            }
        },
        None => None,
    };
    let (triggers, trigger_rx) = reload::channel();

    // Bind the admin listener early: a bad address must fail startup before anything serves.
    let admin_listener = match &config.admin {
        Some(admin) => Some(admin::bind(admin.addr).await?),
        None => None,
    };

    // Watch before the first read, so a change landing in between is not missed. (A registry
    // component is polled by its reloader instead.)
    let _watcher = match (config.origin.file(), config.watch) {
        (Some(file), true) => {
            let triggers = triggers.clone();
            let changed = move || triggers.send(reload::Trigger::FileChanged);
            Some(match config.watch_mode {
                cli::WatchMode::Native => watcher::watch(file, config.debounce, changed)?,
                cli::WatchMode::Poll => watcher::poll(file, config.file_poll_interval, changed)?,
            })
        }
        _ => None,
    };
    // Dev mode: config values are re-read when the configuration file is saved (in prod mode
    // only on SIGHUP or `POST /reload`).
    let _config_watcher = match (
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

    // Dev loop: build once now, then on every source change.
    let _sources = match &config.build {
        Some(build) => {
            let builder = builder::Builder::new(build.clone(), metrics.clone());
            builder.run().await;
            Some(builder.start(triggers.clone())?)
        }
        None => None,
    };

    let origin = match &config.origin {
        config::ComponentOrigin::File(path) => reload::Origin::File(path.clone()),
        config::ComponentOrigin::Registry(spec) => reload::Origin::Registry(Arc::new(
            oci::Registry::new(spec, config.cache_dir.as_deref(), config.max_component_size)?,
        )),
    };
    let mut reloader = reload::Reloader::new(
        runtime.clone(),
        slot.clone(),
        origin,
        config.max_component_size,
        cache,
        metrics.clone(),
    );
    let report = reloader.handle(reload::Trigger::Startup).await;
    if let (Some(reason), true) = (&report.error, config.require_component)
        && report.result == "failed"
    {
        bail!("cannot serve `{}`: {reason}", config.origin.display());
    }
    tokio::spawn(reloader.run(trigger_rx));

    let stop = signals::install(triggers.clone())?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("failed to bind `{}`", config.addr))?;
    let addr = listener
        .local_addr()
        .context("failed to read the bound address")?;
    if let Some(listener) = admin_listener {
        let admin_addr = listener
            .local_addr()
            .context("failed to read the admin address")?;
        tracing::info!(addr = %admin_addr, "admin listener ready");
        println!("Admin API on http://{admin_addr}/");
        let admin = Arc::new(admin::Admin {
            slot: slot.clone(),
            triggers: triggers.clone(),
            metrics: metrics.clone(),
            token: config.admin.as_ref().and_then(|a| a.token.clone()),
            max_component_size: config.max_component_size,
        });
        tokio::spawn(admin::serve(listener, admin));
    }
    tracing::info!(%addr, component = %config.origin.display(), mode = ?config.mode, "listening");
    println!("Serving HTTP on http://{addr}/");
    std::io::stdout()
        .flush()
        .context("failed to write to stdout")?;

    let dispatcher = Arc::new(handler::Dispatcher::new(
        runtime,
        slot,
        config.limits.clone(),
        metrics,
        config.mode == Mode::Dev,
    ));
    server::serve(
        listener,
        dispatcher,
        &config.limits,
        config.shutdown_timeout,
        signals::stopped(stop),
    )
    .await;
    Ok(())
}
