//! SIGTERM/SIGINT start a graceful shutdown (a second one exits at once); SIGHUP reloads.

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Exit code when a second stop signal cuts the drain short.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Installs the signal handlers and returns a receiver that flips to `true` on the first
/// SIGTERM or SIGINT; SIGHUP calls `on_hangup` (reload every route). Handlers are in place when
/// this returns.
pub fn install(on_hangup: impl Fn() + Send + 'static) -> Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading every route");
                    on_hangup();
                    continue;
                }
            };
            if *stop_tx.borrow() {
                tracing::warn!(signal = name, "second stop signal: exiting now");
                std::process::exit(FORCED_EXIT_CODE);
            }
            tracing::info!(signal = name, "stop signal received");
            let _ = stop_tx.send(true);
        }
    });
    Ok(stop_rx)
}

/// Resolves when `stop` flips to `true`.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
