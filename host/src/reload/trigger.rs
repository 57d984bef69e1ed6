//! What asks a route's reloader for a reload ([`Trigger`], through one bounded channel), why
//! ([`Cause`]), and what an admin call gets back ([`Report`], whose [`Outcome`] says what
//! happened).

use crate::component::oci::Registry;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Where a reloader gets its component.
pub enum Origin {
    /// A file, watched or reloaded on request.
    File(PathBuf),
    /// A registry reference, polled.
    Registry(Arc<Registry>),
}

impl Origin {
    /// The path or `oci://` reference, for logs and `/status`.
    pub fn display(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Registry(registry) => registry.display().to_string(),
        }
    }
}

/// Why a reload was asked for, and what an admin call waits with.
pub enum Trigger {
    /// Host startup.
    Startup,
    /// The watcher saw the component file change.
    FileChanged,
    /// A build finished successfully.
    Built,
    /// SIGHUP; the report goes to the reply channel, if any (systemd hears `READY=1` once every
    /// route's reload has ended).
    Signal(Option<oneshot::Sender<Report>>),
    /// Time to poll the registry.
    Poll,
    /// `POST /reload` on the admin API.
    Admin(oneshot::Sender<Report>),
    /// `PUT /component` on the admin API: these bytes, to be validated, saved to the component
    /// path and then served.
    Upload(Vec<u8>, oneshot::Sender<Report>),
    /// `POST /rollback[?generation=N]` on the admin API: serve kept generation N again, or the
    /// newest one older than the current.
    Rollback(Option<u64>, oneshot::Sender<Report>),
}

impl Trigger {
    /// The trigger without what it carries.
    pub fn cause(&self) -> Cause {
        match self {
            Trigger::Startup => Cause::Startup,
            Trigger::FileChanged => Cause::FileChanged,
            Trigger::Built => Cause::Built,
            Trigger::Signal(_) => Cause::Signal,
            Trigger::Poll => Cause::Poll,
            Trigger::Admin(_) => Cause::Admin,
            Trigger::Upload(..) => Cause::Upload,
            Trigger::Rollback(..) => Cause::Rollback,
        }
    }
}

/// Why a reload runs: what the pipeline branches on and what its log lines name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Host startup.
    Startup,
    /// The watcher saw the component file change.
    FileChanged,
    /// A build finished successfully.
    Built,
    /// SIGHUP.
    Signal,
    /// A registry poll.
    Poll,
    /// An admin reload.
    Admin,
    /// An admin upload.
    Upload,
    /// An admin rollback.
    Rollback,
}

impl Cause {
    /// The cause's name in logs (`trigger` field).
    pub fn name(self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::FileChanged => "file change",
            Cause::Built => "build",
            Cause::Signal => "SIGHUP",
            Cause::Poll => "registry poll",
            Cause::Admin => "admin reload",
            Cause::Upload => "admin upload",
            Cause::Rollback => "admin rollback",
        }
    }

    /// Whether this cause comes back by itself, so that a failure it meets again is logged
    /// once (one deploy raises several file events; a registry that stays down fails every
    /// poll), while explicit reloads always say why they failed.
    pub fn repeats(self) -> bool {
        matches!(self, Cause::FileChanged | Cause::Poll)
    }
}

/// The sending half of the trigger channel; cheap to clone.
#[derive(Clone)]
pub struct TriggerSender(mpsc::Sender<Trigger>);

impl TriggerSender {
    /// Asks for a reload without waiting. If one is already queued this one merges into it.
    pub fn send(&self, trigger: Trigger) {
        // A full channel means a reload is already queued; that one will see the latest file.
        let _ = self.0.try_send(trigger);
    }

    /// Queues a trigger that carries a reply channel, waiting for room if needed.
    pub async fn request(&self, trigger: Trigger) -> bool {
        self.0.send(trigger).await.is_ok()
    }
}

/// A new trigger channel.
pub fn channel() -> (TriggerSender, mpsc::Receiver<Trigger>) {
    let (tx, rx) = mpsc::channel(1);
    (TriggerSender(tx), rx)
}

/// What one reload attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A new generation serves.
    #[serde(rename = "loaded")]
    Loaded,
    /// Nothing changed: what was asked for already serves.
    #[serde(rename = "unchanged")]
    Unchanged,
    /// Nothing changed: the new content was refused (the report says why).
    #[serde(rename = "failed")]
    Failed,
    /// A kept generation serves again.
    #[serde(rename = "rolled back")]
    RolledBack,
}

impl Outcome {
    /// The outcome as metrics label it (`hotswap_reloads_total{result}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled back",
        }
    }
}

/// What one reload attempt did, as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What happened.
    pub result: Outcome,
    /// The generation serving after the attempt, if any.
    pub generation: Option<u64>,
    /// Short sha256 of the content tried.
    pub sha256: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether compilation was skipped thanks to a cache.
    pub cache_hit: bool,
    /// A validated upload could not be saved to disk (507).
    #[serde(skip)]
    pub not_saved: bool,
    /// What the attempt did to the route's canary, if one ran (a rollback aborts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
}

impl Report {
    /// A report of `result` with generation `generation` serving after it.
    pub fn new(result: Outcome, generation: Option<u64>) -> Report {
        Report {
            result,
            generation,
            sha256: None,
            error: None,
            cache_hit: false,
            not_saved: false,
            canary: None,
        }
    }

    /// A failure, with `generation` still serving.
    pub fn failed(generation: Option<u64>, error: String) -> Report {
        Report {
            error: Some(error),
            ..Report::new(Outcome::Failed, generation)
        }
    }

    /// The same report, naming the content tried by its short sha256.
    pub fn of(self, sha256: Option<String>) -> Report {
        Report { sha256, ..self }
    }
}
