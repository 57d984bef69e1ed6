//! A started host's life: serving until a stop signal or an upgrade's handover, SIGHUP
//! reloads, upgrades, systemd's readiness, and the drain.

use super::start::Started;
use super::*;

/// How long spans still queued at shutdown get to reach the collector.
const TRACES_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

impl Started {
    /// Serves until a stop signal, or until an upgrade hands the listeners to a new process;
    /// then drains.
    pub(super) async fn run(mut self, signals: signals::Signals) -> Result<()> {
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
