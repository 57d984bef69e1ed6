//! The reload pipeline: trigger → read → compile (or cache) → validate → install.
//!
//! Strategy: everything that can ask for a reload (the file watcher, a finished build, SIGHUP,
//! the admin API, startup, a rollback) sends a [`Trigger`] into one bounded channel of capacity
//! one, so a burst of file events while a reload runs collapses into exactly one more reload. A
//! single task drains the channel and runs one reload at a time: it reads the whole file into
//! memory (never mmap a file that can change under us), skips content whose sha256 matches the
//! serving generation, reuses a kept generation or the on-disk cache when the content was seen
//! before, otherwise compiles on a blocking thread, instantiates once as a check, and only then
//! [`install`]s it: the one way a generation starts serving, for new builds, tier-ups
//! (`tier_up`) and rollbacks alike. Any failure is logged with the path and the reason and
//! leaves the serving generation untouched (and is a `refused` event on the dev-mode stream,
//! unless it repeats the failure before). Admin calls carry a reply channel and get the
//! [`Report`] back.
//!
//! The pipeline holds what it needs of its route ([`Target`]), not the route.
//!
//! A component from a registry ([`Origin::Registry`]) takes the same path from "bytes" on: the
//! reloader polls the tag itself every `--poll-interval` (backing off while the registry
//! fails), pulls a new manifest digest, and installs it; a digest that failed is not pulled
//! again until the tag moves (`registry`). At startup with the registry unreachable it serves
//! the last component it pulled (kept under the cache directory).

pub mod builder;
mod install;
mod registry;
mod target;
mod tier_up;
mod trigger;

pub use install::{Change, install};
pub use target::{Pipeline, Target};
pub use trigger::{Cause, Origin, Outcome, Report, Trigger, TriggerSender, channel};

use crate::component::tier;
use crate::digest;
use crate::events::Event;
use crate::guest::slot::Generation;
use crate::telemetry::traces::{Steps, attr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Runs reloads for one route's component.
pub struct Reloader {
    pipeline: Arc<Pipeline>,
    origin: Origin,
    max_bytes: u64,
    /// sha256 of the content that failed last, so the second file event of one bad deploy does
    /// not validate and log it again.
    last_failed: Option<[u8; 32]>,
    /// sha256 of what the component file held when it was last loaded (or written by an
    /// upload). A file event whose content still matches changes nothing, even when a rollback
    /// made another generation current: one deploy raises several file events, and a late one
    /// must not undo a rollback made in between. An explicit reload (admin, SIGHUP, build)
    /// still loads the file.
    file_loaded: Option<[u8; 32]>,
    /// The registry's counterpart of `file_loaded`: the manifest digest last loaded. (The
    /// digest refused last is the registry's to remember.)
    digest_loaded: Option<String>,
    /// Registry polls that failed in a row (the next poll backs off).
    poll_failures: u32,
    /// The reason of the last failure, so the several file events of one deletion (or one bad
    /// write) log it once.
    last_reason: Option<String>,
    /// The trace of the reload under way: its steps as they end.
    steps: Steps,
    /// The reload under way repeats the one before (a poll or file event that changes nothing,
    /// a failure with the same reason): it is not traced.
    quiet: bool,
}

impl Reloader {
    /// A reloader for the pipeline's route, its component from `origin` (at most `max_bytes`).
    pub fn new(pipeline: Arc<Pipeline>, origin: Origin, max_bytes: u64) -> Self {
        Reloader {
            pipeline,
            origin,
            max_bytes,
            last_failed: None,
            file_loaded: None,
            digest_loaded: None,
            poll_failures: 0,
            last_reason: None,
            steps: Steps::off(),
            quiet: false,
        }
    }

    fn target(&self) -> &Target {
        &self.pipeline.target
    }

    /// Handles triggers until every sender is gone, and polls a registry tag in between.
    pub async fn run(mut self, mut triggers: mpsc::Receiver<Trigger>) {
        loop {
            let poll = self.next_poll();
            tokio::select! {
                trigger = triggers.recv() => match trigger {
                    Some(trigger) => {
                        self.handle(trigger).await;
                    }
                    None => return,
                },
                () = tokio::time::sleep(poll.unwrap_or(Duration::MAX)), if poll.is_some() => {
                    self.handle(Trigger::Poll).await;
                }
            }
        }
    }

    /// Handles one trigger and returns what happened (an admin trigger's caller gets the same
    /// report).
    pub async fn handle(&mut self, trigger: Trigger) -> Report {
        let cause = trigger.cause();
        self.steps = Steps::begin();
        self.quiet = false;
        let (report, reply) = match trigger {
            Trigger::Admin(reply) => (self.reload(cause).await, Some(reply)),
            Trigger::Signal(reply) => (self.reload(cause).await, reply),
            Trigger::Upload(bytes, reply) => (self.upload(bytes).await, Some(reply)),
            Trigger::Rollback(to, reply) => (self.rollback(to).await, Some(reply)),
            _ => (self.reload(cause).await, None),
        };
        self.trace(cause, &report);
        if let Some(reply) = reply {
            let _ = reply.send(report.clone());
        }
        report
    }

    /// Sends the reload's trace, unless it repeats the one before.
    fn trace(&mut self, cause: Cause, report: &Report) {
        let steps = std::mem::replace(&mut self.steps, Steps::off());
        if self.quiet || (cause.repeats() && report.result == Outcome::Unchanged) {
            return;
        }
        let mut attributes = vec![
            attr("hotswap.route", self.target().name.to_string()),
            attr("hotswap.trigger", cause.name()),
            attr("hotswap.origin", self.origin.display().to_string()),
            attr("hotswap.outcome", report.result.as_str()),
        ];
        if let Some(generation) = report.generation {
            attributes.push(attr("hotswap.generation", generation as i64));
        }
        if let Some(sha256) = &report.sha256 {
            attributes.push(attr("hotswap.sha256", sha256.clone()));
        }
        let error =
            (report.result == Outcome::Failed).then(|| report.error.as_deref().unwrap_or("failed"));
        steps.finish("hotswap.reload", attributes, error);
    }

    async fn reload(&mut self, cause: Cause) -> Report {
        match &self.origin {
            Origin::File(path) => {
                let path = path.clone();
                self.reload_file(&path, cause).await
            }
            Origin::Registry(registry) => {
                let registry = registry.clone();
                self.reload_registry(&registry, cause).await
            }
        }
    }

    async fn reload_file(&mut self, path: &Path, cause: Cause) -> Report {
        let started = Instant::now();
        let bytes = match read_component(path, self.max_bytes).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.file_loaded = None;
                return self.fail(cause, reason, None);
            }
        };
        self.target().metrics.phase("read", started.elapsed());
        let size = bytes.len() as i64;
        self.steps
            .step("read", started.elapsed(), vec![attr("hotswap.bytes", size)]);
        let sha256 = digest::sha256(&bytes);
        // What was last loaded from the file: nothing to do, whether that content is serving or
        // a rollback made another generation current.
        if cause == Cause::FileChanged
            && self.file_loaded == Some(sha256)
            && let Some(current) = self.target().slot.current()
        {
            tracing::debug!(route = %self.target().name, path = %path.display(), serving = current.number, "file unchanged since it was last loaded; still serving generation {}", current.number);
            return self.unchanged(&current, &sha256);
        }
        let new = New {
            bytes,
            sha256,
            digest: None,
            cause,
            started,
        };
        let report = self.swap_in(new, None).await;
        if report.result != Outcome::Failed {
            self.file_loaded = Some(sha256);
        }
        report
    }

    /// An upload: validated, then saved to the component path (synced), and only then
    /// served. An upload that cannot be saved is refused and changes nothing: a restart must
    /// never go back to another version than the one that serves.
    async fn upload(&mut self, bytes: Vec<u8>) -> Report {
        let Origin::File(path) = &self.origin else {
            let reason = format!(
                "the component comes from `{}`: push a new version to the registry instead",
                self.origin.display()
            );
            return self.fail(Cause::Upload, reason, None);
        };
        let path = path.clone();
        let sha256 = digest::sha256(&bytes);
        let new = New {
            bytes,
            sha256,
            digest: None,
            cause: Cause::Upload,
            started: Instant::now(),
        };
        let report = self.swap_in(new, Some(&path)).await;
        if report.result != Outcome::Failed {
            self.file_loaded = Some(sha256);
        }
        report
    }

    /// A rollback: a kept generation serves again, until the component file gets new content
    /// (file events for the same content leave it alone, `file_loaded` says which) or the
    /// registry tag moves.
    async fn rollback(&mut self, to: Option<u64>) -> Report {
        let installing = Instant::now();
        let canary = self.target().slot.canary().map(|c| {
            format!(
                "the canary of generation {} was aborted (rolled back)",
                c.candidate().number
            )
        });
        let installed = install(&self.pipeline, Change::Rollback { to }).await;
        self.steps.step("install", installing.elapsed(), Vec::new());
        match installed {
            Ok(generation) => Report {
                canary,
                ..Report::new(Outcome::RolledBack, Some(generation.number))
            },
            Err(reason) => Report::failed(self.target().slot.current().map(|g| g.number), reason),
        }
    }

    /// Compiles and validates `new` (unless it serves already, or a kept generation has it),
    /// saves it first to `save_to` if given (an upload), and installs it.
    async fn swap_in(&mut self, new: New, save_to: Option<&Path>) -> Report {
        let short = digest::short(&new.sha256);
        if let Some(report) = self.nothing_to_do(&new, save_to).await {
            return report;
        }
        let bytes = Arc::new(new.bytes);
        let compiled = match self.compile(&bytes, new.sha256).await {
            Ok(compiled) => compiled,
            Err(err) => {
                self.last_failed = Some(new.sha256);
                return self.fail(new.cause, err.to_string(), Some(short));
            }
        };
        let saving = Instant::now();
        if let Some(path) = save_to
            && let Err(reason) = save(path, bytes.clone()).await
        {
            return self.not_saved(new.cause, path, reason, short);
        }
        let saved = saving.elapsed();
        let metrics = &self.pipeline.target.metrics;
        let phase = if compiled.source.cache_hit() {
            "cache"
        } else {
            "compile"
        };
        metrics.phase(phase, compiled.compile_time);
        metrics.phase("validate", compiled.validate_time);
        self.steps.step_ended(
            phase,
            compiled.compile_time,
            compiled.validate_time + saved,
            vec![attr("hotswap.tier", compiled.tier.as_str())],
        );
        self.steps
            .step_ended("validate", compiled.validate_time, saved, Vec::new());
        if save_to.is_some() {
            self.steps.step("save", saved, Vec::new());
        }
        let installing = Instant::now();
        self.last_failed = None;
        self.last_reason = None;
        let change = Change::New {
            compiled,
            bytes,
            sha256: new.sha256,
            digest: new.digest,
            cause: new.cause,
            started: new.started,
        };
        let replacing = self.target().slot.canary().map(|c| c.candidate().number);
        let installed = install(&self.pipeline, change).await;
        self.steps.step("install", installing.elapsed(), Vec::new());
        match installed {
            Ok(generation) => {
                let slot = &self.target().slot;
                self.target().metrics.reload(Outcome::Loaded.as_str());
                let current = slot.current().map(|g| g.number);
                let canary = (current != Some(generation.number)).then(|| match replacing {
                    Some(old) => format!(
                        "generation {} runs as the canary candidate in place of generation {old}, \
                         dropped before a verdict",
                        generation.number
                    ),
                    None => format!(
                        "generation {} runs as the canary candidate beside generation {}",
                        generation.number,
                        current.unwrap_or_default()
                    ),
                });
                Report {
                    cache_hit: generation.code_source.cache_hit(),
                    canary,
                    ..Report::new(Outcome::Loaded, Some(generation.number)).of(Some(short))
                }
            }
            Err(reason) => self.fail(new.cause, reason, Some(short)),
        }
    }

    /// The report of `new` when it needs no compile: it serves already (an upload of it is
    /// still saved), or it failed last time and a file event brings it again.
    async fn nothing_to_do(&mut self, new: &New, save_to: Option<&Path>) -> Option<Report> {
        let short = digest::short(&new.sha256);
        let target = &self.pipeline.target;
        let current = target.slot.current();
        if let Some(generation) = current
            .as_ref()
            .filter(|g| g.sha256 == new.sha256 && g.digest == new.digest)
        {
            tracing::debug!(route = %target.name, origin = %self.origin.display(), trigger = new.cause.name(), "component unchanged; no new generation");
            if let Some(path) = save_to
                && let Err(reason) = save(path, Arc::new(new.bytes.clone())).await
            {
                return Some(self.not_saved(new.cause, path, reason, short));
            }
            return Some(self.unchanged(generation, &new.sha256));
        }
        if let Some(canary) = target.slot.canary()
            && canary.candidate().sha256 == new.sha256
            && canary.candidate().digest == new.digest
        {
            let said = format!(
                "generation {} runs on as the canary candidate",
                canary.candidate().number
            );
            // A file event for the same bytes is routine; an operator's reload is answered.
            if new.cause == Cause::FileChanged {
                tracing::debug!(route = %target.name, origin = %self.origin.display(), trigger = new.cause.name(), "component unchanged: {said}");
            } else {
                tracing::info!(route = %target.name, origin = %self.origin.display(), trigger = new.cause.name(), "component unchanged: {said}");
            }
            if let Some(path) = save_to
                && let Err(reason) = save(path, Arc::new(new.bytes.clone())).await
            {
                return Some(self.not_saved(new.cause, path, reason, short));
            }
            target.metrics.reload(Outcome::Unchanged.as_str());
            return Some(Report {
                canary: Some(said),
                ..Report::new(Outcome::Unchanged, current.map(|g| g.number)).of(Some(short))
            });
        }
        if target.slot.was_rolled_back(&new.sha256) {
            let reason =
                "a canary rolled this build back; it is not tried again until its bytes change"
                    .to_string();
            return Some(self.fail(new.cause, reason, Some(short)));
        }
        if new.cause == Cause::FileChanged && self.last_failed == Some(new.sha256) {
            tracing::debug!(route = %target.name, origin = %self.origin.display(), "content unchanged since its last failure");
            let report = Report::failed(
                current.map(|g| g.number),
                "unchanged since the last failed attempt".into(),
            );
            return Some(report.of(Some(short)));
        }
        if current.is_none() {
            target.slot.set_unavailable_reason(format!(
                "compiling `{}` ({} KiB)",
                self.origin.display(),
                new.bytes.len().div_ceil(1024)
            ));
        }
        None
    }

    /// The validated build of `bytes`: a kept generation's, or compiled (or taken from the
    /// compile cache) at the tier the route's mode gives it.
    async fn compile(
        &self,
        bytes: &Arc<Vec<u8>>,
        sha256: [u8; 32],
    ) -> Result<crate::component::load::Compiled, crate::component::load::LoadError> {
        let target = &self.pipeline.target;
        if let Some(kept) = target.slot.find_by_hash(&sha256) {
            return Ok(install::reuse(&kept));
        }
        tier::load_first(
            target.tier,
            &self.pipeline.runtime,
            &target.store,
            &target.name,
            bytes.clone(),
            sha256,
            self.pipeline.cache.clone(),
        )
        .await
    }

    /// The report of a trigger that changes nothing: `current` keeps serving.
    fn unchanged(&self, current: &Generation, sha256: &[u8; 32]) -> Report {
        self.target().metrics.reload(Outcome::Unchanged.as_str());
        Report::new(Outcome::Unchanged, Some(current.number)).of(Some(digest::short(sha256)))
    }

    /// The report of a validated upload that could not be saved: nothing changes.
    fn not_saved(&mut self, cause: Cause, path: &Path, reason: String, sha256: String) -> Report {
        let current = self.target().slot.current();
        self.target().metrics.reload(Outcome::Failed.as_str());
        tracing::warn!(route = %self.target().name, path = %path.display(), trigger = cause.name(), serving = current.as_ref().map(|g| g.number), "upload refused: {reason}; the file and the serving generation are unchanged");
        Report {
            not_saved: true,
            ..Report::failed(
                current.map(|g| g.number),
                format!("{reason}; the upload does not serve and the file is unchanged"),
            )
            .of(Some(sha256))
        }
    }

    fn fail(&mut self, cause: Cause, reason: String, sha256: Option<String>) -> Report {
        let path = self.origin.display();
        let target = &self.pipeline.target;
        target.metrics.reload(Outcome::Failed.as_str());
        let current = target.slot.current();
        // The same reason again from a cause that repeats by itself (one deploy raises several
        // file events; a registry that stays down, or too slow, fails every poll) is logged at
        // debug: the first one was a warning, and a failure that lasts must not flood the log.
        // Explicit reloads (admin, SIGHUP, build) always warn.
        let repeated = cause.repeats() && self.last_reason.as_ref() == Some(&reason);
        self.quiet = repeated;
        self.last_reason = Some(reason.clone());
        let trigger = cause.name();
        if let (false, Some(events)) = (repeated, &self.pipeline.events) {
            events.publish(Event::Refused {
                route: target.name.to_string(),
                reason: reason.clone(),
                sha256: sha256.clone(),
            });
        }
        match &current {
            _ if repeated => {
                tracing::debug!(route = %target.name, path = %path, trigger, "reload failed again: {reason}")
            }
            Some(generation) => tracing::warn!(
                route = %target.name,
                path = %path,
                trigger,
                serving = generation.number,
                "reload failed: {reason}; still serving generation {}",
                generation.number
            ),
            None => {
                tracing::warn!(route = %target.name, path = %path, trigger, "reload failed: {reason}; no component is being served (503)");
                target
                    .slot
                    .set_unavailable_reason(format!("no valid component at `{path}`: {reason}"));
            }
        }
        Report::failed(current.map(|g| g.number), reason).of(sha256)
    }
}

/// A component read (or pulled) to be swapped in, and why.
struct New {
    bytes: Vec<u8>,
    sha256: [u8; 32],
    digest: Option<String>,
    cause: Cause,
    started: Instant,
}

async fn read_component(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
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
    if metadata.len() > max_bytes {
        return Err(format!(
            "the component file is {} bytes, more than the {max_bytes} byte limit",
            metadata.len(),
        ));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read the component file: {e}"))
}

/// Saves an upload to the component path whole or not at all, and durably
/// ([`crate::atomic_write`]), so the watcher and any reader see either the old file or the
/// whole new one, and a restart finds what was saved.
async fn save(path: &Path, bytes: Arc<Vec<u8>>) -> Result<(), String> {
    let target = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::atomic_write::write(&target, &bytes))
        .await
        .map_err(|e| e.to_string())
        .and_then(|written| written.map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot save the upload to `{}`: {e}", path.display()))
}
