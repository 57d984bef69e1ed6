//! The reload pipeline: trigger → read → compile (or cache) → validate → swap.
//!
//! Strategy: everything that can ask for a reload (the file watcher, a finished build, SIGHUP,
//! the admin API, startup) sends a [`Trigger`] into one bounded channel of capacity one, so a
//! burst of file events while a reload runs collapses into exactly one more reload. A single
//! task drains the channel and runs one reload at a time: it reads the whole file into memory
//! (never mmap a file that can change under us), skips content whose sha256 matches the
//! serving generation, reuses a kept generation or the on-disk cache when the content was seen
//! before, otherwise compiles on a blocking thread, instantiates once as a check, and only then
//! swaps the slot. Any failure is logged with the path and the reason and leaves the serving
//! generation untouched. Admin calls carry a reply channel and get the [`Report`] back.

use crate::cache::CompileCache;
use crate::engine::Runtime;
use crate::loader::{self, Compiled, Source};
use crate::metrics::Metrics;
use crate::slot::{Generation, Slot};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The trigger name of watcher events.
const FILE_CHANGE: &str = "file change";

/// Largest component file the host will read.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

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
    /// `POST /reload` on the admin API.
    Admin(oneshot::Sender<Report>),
    /// `PUT /component` on the admin API: these bytes, to be validated, swapped in and then
    /// written to the component path.
    Upload(Vec<u8>, oneshot::Sender<Report>),
}

impl Trigger {
    fn name(&self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChanged => FILE_CHANGE,
            Trigger::Built => "build",
            Trigger::Signal => "SIGHUP",
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
}

/// Runs reloads for one component path.
pub struct Reloader {
    runtime: Arc<Runtime>,
    slot: Arc<Slot>,
    path: PathBuf,
    cache: Option<Arc<CompileCache>>,
    metrics: Arc<Metrics>,
    /// sha256 of the content that failed last, so the second file event of one bad deploy does
    /// not validate and log it again.
    last_failed: Option<[u8; 32]>,
    /// sha256 of what the component file held when it was last loaded (or written by an
    /// upload). A file event whose content still matches changes nothing, even when a rollback
    /// made another generation current: one deploy raises several file events, and a late one
    /// must not undo a rollback made in between. An explicit reload (admin, SIGHUP, build)
    /// still loads the file.
    file_loaded: Option<[u8; 32]>,
}

impl Reloader {
    /// A reloader for the component at `path`, swapping into `slot`.
    pub fn new(
        runtime: Arc<Runtime>,
        slot: Arc<Slot>,
        path: PathBuf,
        cache: Option<Arc<CompileCache>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            runtime,
            slot,
            path,
            cache,
            metrics,
            last_failed: None,
            file_loaded: None,
        }
    }

    /// Handles triggers until every sender is gone.
    pub async fn run(mut self, mut triggers: mpsc::Receiver<Trigger>) {
        while let Some(trigger) = triggers.recv().await {
            self.handle(trigger).await;
        }
    }

    /// Handles one trigger and returns what happened.
    pub async fn handle(&mut self, trigger: Trigger) -> Report {
        let name = trigger.name();
        // An explicit reload re-reads the config values too (the only way in prod mode).
        if matches!(trigger, Trigger::Signal | Trigger::Admin(_)) {
            self.runtime.guest_config.reload(name);
        }
        match trigger {
            Trigger::Admin(reply) => {
                let report = self.reload_file(name).await;
                let _ = reply.send(report.clone());
                report
            }
            Trigger::Upload(bytes, reply) => {
                let report = self.upload(bytes).await;
                let _ = reply.send(report.clone());
                report
            }
            _ => self.reload_file(name).await,
        }
    }

    async fn reload_file(&mut self, trigger: &'static str) -> Report {
        let started = Instant::now();
        let bytes = match read_component(&self.path).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.file_loaded = None;
                return self.fail(trigger, reason, None);
            }
        };
        self.metrics.phase("read", started.elapsed());
        let sha256 = loader::sha256(&bytes);
        // What was last loaded from the file: nothing to do, whether that content is serving or
        // a rollback made another generation current.
        if trigger == FILE_CHANGE
            && self.file_loaded == Some(sha256)
            && let Some(current) = self.slot.current()
        {
            tracing::debug!(path = %self.path.display(), serving = current.number, "file unchanged since it was last loaded; still serving generation {}", current.number);
            return self.unchanged(&current, &sha256);
        }
        let report = self.swap_in(trigger, bytes, sha256, started).await;
        if report.result != "failed" {
            self.file_loaded = Some(sha256);
        }
        report
    }

    async fn upload(&mut self, bytes: Vec<u8>) -> Report {
        let started = Instant::now();
        let copy = bytes.clone();
        let sha256 = loader::sha256(&bytes);
        let report = self.swap_in("admin upload", bytes, sha256, started).await;
        if report.result != "failed" {
            let path = self.path.clone();
            let written = tokio::task::spawn_blocking(move || write_atomically(&path, &copy)).await;
            if let Err(err) | Ok(Err(err)) = written.map_err(|e| e.to_string()) {
                tracing::warn!(path = %self.path.display(), error = %err, "uploaded component is serving but could not be saved; a restart will not keep it");
                return Report {
                    error: Some(format!("serving, but not saved to disk: {err}")),
                    ..report
                };
            }
            self.file_loaded = Some(sha256);
        }
        report
    }

    /// The report of a trigger that changes nothing: `current` keeps serving.
    fn unchanged(&self, current: &Generation, sha256: &[u8; 32]) -> Report {
        self.metrics.reload("unchanged");
        Report {
            result: "unchanged",
            generation: Some(current.number),
            sha256: Some(hex::encode(&sha256[..6])),
            error: None,
            cache_hit: false,
        }
    }

    async fn swap_in(
        &mut self,
        trigger: &'static str,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        started: Instant,
    ) -> Report {
        let short = hex::encode(&sha256[..6]);
        let current = self.slot.current();
        if let Some(generation) = current.as_ref().filter(|g| g.sha256 == sha256) {
            tracing::debug!(path = %self.path.display(), trigger, "component unchanged; no new generation");
            return self.unchanged(generation, &sha256);
        }
        if trigger == FILE_CHANGE && self.last_failed == Some(sha256) {
            tracing::debug!(path = %self.path.display(), "content unchanged since its last failure");
            return Report {
                result: "failed",
                generation: current.map(|g| g.number),
                sha256: Some(short),
                error: Some("unchanged since the last failed attempt".into()),
                cache_hit: false,
            };
        }
        let size = bytes.len();
        let compiled = match self.slot.find_by_hash(&sha256) {
            Some(kept) => Ok(reuse(&kept)),
            None => loader::load(&self.runtime, Arc::new(bytes), sha256, self.cache.clone()).await,
        };
        match compiled {
            Ok(compiled) => {
                self.metrics.phase(
                    if compiled.source.cache_hit() {
                        "cache"
                    } else {
                        "compile"
                    },
                    compiled.compile_time,
                );
                self.metrics.phase("validate", compiled.validate_time);
                self.last_failed = None;
                let generation = self.slot.install(compiled, sha256, size, self.path.clone());
                self.metrics.reload("loaded");
                self.metrics.generation.set(generation.number as i64);
                if let Some(oldest) = self.slot.history().first() {
                    self.metrics.forget_generations_below(oldest.number);
                }
                log_loaded(&generation, trigger, started.elapsed());
                Report {
                    result: "loaded",
                    generation: Some(generation.number),
                    sha256: Some(short),
                    error: None,
                    cache_hit: generation.code_source.cache_hit(),
                }
            }
            Err(err) => {
                self.last_failed = Some(sha256);
                self.fail(trigger, err.to_string(), Some(short))
            }
        }
    }

    fn fail(&self, trigger: &'static str, reason: String, sha256: Option<String>) -> Report {
        self.metrics.reload("failed");
        let path = self.path.display();
        let current = self.slot.current();
        match &current {
            Some(generation) => tracing::warn!(
                path = %path,
                trigger,
                serving = generation.number,
                "reload failed: {reason}; still serving generation {}",
                generation.number
            ),
            None => {
                tracing::warn!(path = %path, trigger, "reload failed: {reason}; no component is being served (503)");
                self.slot
                    .set_unavailable_reason(format!("no valid component at `{path}`: {reason}"));
            }
        }
        Report {
            result: "failed",
            generation: current.map(|g| g.number),
            sha256,
            error: Some(reason),
            cache_hit: false,
        }
    }
}

/// A kept generation's compiled code, reused for content seen before.
fn reuse(kept: &Generation) -> Compiled {
    Compiled {
        pre: kept.pre.clone(),
        compile_time: Duration::ZERO,
        validate_time: Duration::ZERO,
        source: Source::Memory,
    }
}

fn log_loaded(generation: &Generation, trigger: &'static str, total: Duration) {
    let how = match generation.code_source {
        Source::Compiled => format!("compiled in {} ms", generation.compile_time.as_millis()),
        Source::DiskCache => format!(
            "cache hit, loaded in {} ms",
            generation.compile_time.as_millis()
        ),
        Source::Memory => "cache hit, reused from memory".to_string(),
    };
    tracing::info!(
        generation = generation.number,
        sha256 = %generation.short_hash(),
        size = generation.size,
        compile_ms = generation.compile_time.as_millis() as u64,
        cache_hit = generation.code_source.cache_hit(),
        total_ms = total.as_millis() as u64,
        trigger,
        path = %generation.source.display(),
        "loaded generation {} ({}, {} bytes, {how})",
        generation.number,
        generation.short_hash(),
        generation.size,
    );
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

/// Writes `bytes` to `path` via a temp file in the same directory and a rename, so the watcher
/// and any reader see either the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.upload-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move the upload over `{}`: {e}", path.display())
    })
}
