//! SIGTERM/SIGINT start a graceful shutdown (a second one exits at once); SIGHUP reloads.
//!
//! The handlers are installed first thing, before any build, compile or registry pull: a
//! signal that arrives while the host starts must not find the operating system's default
//! action (which ends the process for all three). A SIGHUP during startup is kept and acted on
//! once the routes are up (several count as one); a SIGTERM during startup stops the start and
//! exits cleanly.

use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

/// Exit code when a second stop signal cuts the drain short.
pub const FORCED_EXIT_CODE: i32 = 130;

/// The signals of the process, from the moment [`install`] returns.
pub struct Signals {
    stop: watch::Receiver<bool>,
    hangup: Arc<Notify>,
}

impl Signals {
    /// Resolves when a stop signal (SIGTERM or SIGINT) has arrived, at once if one already has.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    /// Calls `on_hangup` (reload every route) for every SIGHUP from now on, and once now if
    /// any arrived since [`install`].
    pub fn on_hangup(&self, on_hangup: impl Fn() + Send + 'static) {
        let hangup = self.hangup.clone();
        tokio::spawn(async move {
            loop {
                hangup.notified().await;
                on_hangup();
            }
        });
    }
}

/// Installs the handlers of SIGTERM, SIGINT and SIGHUP; they are in place when this returns.
pub fn install() -> Result<Signals> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let hangup = Arc::new(Notify::new());
    let notify = hangup.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading every route");
                    // Kept until a reload is listening (one permit: several count as one).
                    notify.notify_one();
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
    Ok(Signals {
        stop: stop_rx,
        hangup,
    })
}
