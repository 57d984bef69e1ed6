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

pub mod body;
pub mod cli;
pub mod config;
pub mod engine;
pub mod guest_io;
pub mod handler;
pub mod loader;
pub mod outbound;
pub mod reload;
pub mod server;
pub mod signals;
pub mod slot;
pub mod telemetry;
pub mod watcher;

use anyhow::{Context, Result, bail};
use cli::{Cli, Command};
use config::Config;
use std::io::Write;
use std::sync::Arc;

/// Runs the command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::from_args(args)?;
            telemetry::init(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

/// Serves `config.component` until a stop signal, reloading it as it changes.
pub async fn serve(config: Config) -> Result<()> {
    let runtime = Arc::new(engine::Runtime::new(&config)?);
    runtime.start_epoch_ticker()?;
    let slot = Arc::new(slot::Slot::default());
    let (triggers, trigger_rx) = reload::channel();

    // Watch before the first read, so a change landing in between is not missed.
    let _watcher = if config.watch {
        Some(watcher::watch(&config.component, config.debounce, triggers.clone())?)
    } else {
        None
    };

    let mut reloader = reload::Reloader::new(runtime.clone(), slot.clone(), config.component.clone());
    if let reload::Outcome::Failed(reason) = reloader.reload(reload::Trigger::Startup).await
        && config.require_component
    {
        bail!("cannot serve `{}`: {reason}", config.component.display());
    }
    tokio::spawn(reloader.run(trigger_rx));

    let stop = signals::install(triggers)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("failed to bind `{}`", config.addr))?;
    let addr = listener.local_addr().context("failed to read the bound address")?;
    tracing::info!(%addr, component = %config.component.display(), "listening");
    println!("Serving HTTP on http://{addr}/");
    std::io::stdout().flush().context("failed to write to stdout")?;

    let dispatcher = Arc::new(handler::Dispatcher::new(runtime, slot, config.limits.clone()));
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
