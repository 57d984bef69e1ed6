//! The reload pipeline: trigger → read → compile → validate → swap.
//!
//! Strategy: everything that can ask for a reload (the file watcher, SIGHUP, startup) sends a
//! [`Trigger`] into one bounded channel of capacity one, so a burst of triggers while a reload
//! runs collapses into exactly one more reload. A single task drains the channel and runs one
//! reload at a time: it reads the whole file into memory (never mmap a file that can change
//! under us), skips content whose sha256 matches the serving generation, compiles on a
//! blocking thread, instantiates once as a check, and only then swaps the slot. Any failure
//! is logged with the path and the reason and leaves the serving generation untouched.

use crate::engine::Runtime;
use crate::loader::{self, LoadError};
use crate::slot::{Generation, Slot};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Largest component file the host will read.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Host startup.
    Startup,
    /// The watcher saw the component file change.
    FileChanged,
    /// SIGHUP.
    Signal,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChanged => "file change",
            Trigger::Signal => "SIGHUP",
        }
    }
}

/// The sending half of the trigger channel; cheap to clone.
#[derive(Clone)]
pub struct TriggerSender(mpsc::Sender<Trigger>);

impl TriggerSender {
    /// Asks for a reload. If one is already queued this one merges into it.
    pub fn send(&self, trigger: Trigger) {
        // A full channel means a reload is already queued; that one will see the latest file.
        let _ = self.0.try_send(trigger);
    }
}

/// A new trigger channel.
pub fn channel() -> (TriggerSender, mpsc::Receiver<Trigger>) {
    let (tx, rx) = mpsc::channel(1);
    (TriggerSender(tx), rx)
}

/// What one reload attempt did.
pub enum Outcome {
    /// A new generation is serving.
    Loaded(Arc<Generation>),
    /// The file's content equals the serving generation's; nothing changed.
    Unchanged,
    /// The file could not be read or was not a valid component.
    Failed(String),
}

/// Runs reloads for one component path.
pub struct Reloader {
    runtime: Arc<Runtime>,
    slot: Arc<Slot>,
    path: PathBuf,
}

impl Reloader {
    /// A reloader for the component at `path`, swapping into `slot`.
    pub fn new(runtime: Arc<Runtime>, slot: Arc<Slot>, path: PathBuf) -> Self {
        Reloader { runtime, slot, path }
    }

    /// Handles triggers until every sender is gone.
    pub async fn run(mut self, mut triggers: mpsc::Receiver<Trigger>) {
        while let Some(trigger) = triggers.recv().await {
            self.reload(trigger).await;
        }
    }

    /// Reads, validates and (if new and valid) swaps in the component file once.
    pub async fn reload(&mut self, trigger: Trigger) -> Outcome {
        let started = Instant::now();
        let path = self.path.display().to_string();
        let current = self.slot.current();
        let bytes = match read_component(&self.path).await {
            Ok(bytes) => bytes,
            Err(reason) => return self.fail(trigger, reason, current.as_deref()),
        };
        let sha256 = loader::sha256(&bytes);
        if current.as_ref().is_some_and(|g| g.sha256 == sha256) {
            tracing::debug!(path = %path, trigger = trigger.name(), "component unchanged; no new generation");
            return Outcome::Unchanged;
        }
        let size = bytes.len();
        let bytes = Arc::new(bytes);
        match loader::load(&self.runtime, bytes).await {
            Ok(compiled) => {
                let generation = self.slot.install(compiled, sha256, size, self.path.clone());
                tracing::info!(
                    generation = generation.number,
                    sha256 = %generation.short_hash(),
                    size,
                    compile_ms = generation.compile_time.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    trigger = trigger.name(),
                    path = %path,
                    "loaded generation {} ({}, {} bytes, compiled in {} ms)",
                    generation.number,
                    generation.short_hash(),
                    size,
                    generation.compile_time.as_millis(),
                );
                Outcome::Loaded(generation)
            }
            Err(err) => self.fail(trigger, describe(&err), current.as_deref()),
        }
    }

    fn fail(&self, trigger: Trigger, reason: String, current: Option<&Generation>) -> Outcome {
        let path = self.path.display();
        match current {
            Some(generation) => tracing::warn!(
                path = %path,
                trigger = trigger.name(),
                serving = generation.number,
                "reload failed: {reason}; still serving generation {}",
                generation.number
            ),
            None => {
                tracing::warn!(
                    path = %path,
                    trigger = trigger.name(),
                    "reload failed: {reason}; no component is being served (503)"
                );
                self.slot
                    .set_unavailable_reason(format!("no valid component at `{path}`: {reason}"));
            }
        }
        Outcome::Failed(reason)
    }
}

fn describe(err: &LoadError) -> String {
    err.to_string()
}

async fn read_component(path: &Path) -> Result<Vec<u8>, String> {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("the component file does not exist (deleted or not yet written)".into());
        }
        Err(e) => return Err(format!("cannot read the component file: {e}")),
    };
    if !metadata.is_file() {
        return Err("the component path is not a regular file".into());
    }
    if metadata.len() > MAX_COMPONENT_BYTES {
        return Err(format!(
            "the component file is {} bytes, more than the {} byte limit",
            metadata.len(),
            MAX_COMPONENT_BYTES
        ));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read the component file: {e}"))
}
