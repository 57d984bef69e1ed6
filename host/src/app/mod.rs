//! The composition root: the `hotswap` command, and a host's startup (every route, both
//! listeners, signals) and shutdown.

mod run;
mod start;

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
        host = start::start(config, inherited, identity) => host?,
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
