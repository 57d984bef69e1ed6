//! SIGTERM/SIGINT start a graceful shutdown (a second one exits at once); SIGHUP reloads;
//! SIGUSR2 upgrades the binary (nginx's signal for it).
//!
//! The handlers are installed first thing, before any build, compile or registry pull: a
//! signal that arrives while the host starts must not find the operating system's default
//! action (which ends the process for all four). A SIGHUP or SIGUSR2 during startup is kept
//! and acted on once the host serves (several count as one); a SIGTERM during startup stops the
//! start and exits cleanly.

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
    upgrade: Arc<Notify>,
}

impl Signals {
    /// Resolves when a stop signal (SIGTERM or SIGINT) has arrived, at once if one already has.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    /// Runs `on_hangup` (reload every route) for every SIGHUP from now on, and once now if
    /// any arrived since [`install`]; SIGHUPs that arrive while it runs count as one more.
    pub fn on_hangup<F, Fut>(&self, on_hangup: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::each(self.hangup.clone(), on_hangup);
    }

    /// Runs `on_upgrade` for every SIGUSR2 from now on, and once now if any arrived since
    /// [`install`].
    pub fn on_upgrade<F, Fut>(&self, on_upgrade: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::each(self.upgrade.clone(), on_upgrade);
    }

    fn each<F, Fut>(signal: Arc<Notify>, action: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            loop {
                signal.notified().await;
                action().await;
            }
        });
    }
}

/// Installs the handlers of SIGTERM, SIGINT, SIGHUP and SIGUSR2; they are in place when this
/// returns.
pub fn install() -> Result<Signals> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let hangup = Arc::new(Notify::new());
    let notify = hangup.clone();
    let upgrade = Arc::new(Notify::new());
    let notify_upgrade = upgrade.clone();
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
                _ = usr2.recv() => {
                    tracing::info!("SIGUSR2: upgrading the binary");
                    notify_upgrade.notify_one();
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
        upgrade,
    })
}
