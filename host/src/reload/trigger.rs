//! What asks a route's reloader for a reload ([`Trigger`], through one bounded channel) and what
//! an admin call gets back ([`Report`]).

use super::{FILE_CHANGE, POLL};
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

/// Why a reload was asked for.
pub enum Trigger {
    /// Host startup.
    Startup,
    /// The watcher saw the component file change.
    FileChanged,
    /// A build finished successfully.
    Built,
    /// SIGHUP.
    Signal,
    /// Time to poll the registry.
    Poll,
    /// `POST /reload` on the admin API.
    Admin(oneshot::Sender<Report>),
    /// `PUT /component` on the admin API: these bytes, to be validated, swapped in and then
    /// written to the component path.
    Upload(Vec<u8>, oneshot::Sender<Report>),
}

impl Trigger {
    /// The trigger's name in logs and metrics.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChanged => FILE_CHANGE,
            Trigger::Built => "build",
            Trigger::Signal => "SIGHUP",
            Trigger::Poll => POLL,
            Trigger::Admin(_) => "admin reload",
            Trigger::Upload(..) => "admin upload",
        }
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

/// What one reload attempt did, as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `loaded`, `unchanged` or `failed`.
    pub result: &'static str,
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
}
