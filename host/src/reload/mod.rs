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
//!
//! A component from a registry ([`Origin::Registry`]) takes the same path from "bytes" on: the
//! reloader polls the tag itself every `--poll-interval` (backing off while the registry fails),
//! pulls a new manifest digest, and swaps it in; a digest that failed is not pulled again until
//! the tag moves. At startup with the registry unreachable it serves the last component it
//! pulled (kept under the cache directory).

use crate::component::cache::CompileCache;
use crate::engine::Runtime;
use crate::component::load::{self as loader, Compiled, Source};
use crate::component::oci::{self, Registry};
use crate::route::Route;
use crate::guest::slot::Generation;
use crate::component::tier;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub mod builder;
mod trigger;
pub use trigger::{Origin, Report, Trigger, TriggerSender, channel};

/// The trigger name of watcher events.
const FILE_CHANGE: &str = "file change";
/// The trigger name of registry polls.
const POLL: &str = "registry poll";
/// Longest wait between two polls of a registry that keeps failing.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(300);

/// Default largest component (file, upload or registry layer) the host will read.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Runs reloads for one route's component.
pub struct Reloader {
    runtime: Arc<Runtime>,
    route: Arc<Route>,
    origin: Origin,
    max_bytes: u64,
    cache: Option<Arc<CompileCache>>,
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
    /// digest refused last is the registry's to remember: [`Registry::refuse`].)
    digest_loaded: Option<String>,
    /// Registry polls that failed in a row (the next poll backs off).
    poll_failures: u32,
    /// The reason of the last failure, so the several file events of one deletion (or one bad
    /// write) log it once.
    last_reason: Option<String>,
}

impl Reloader {
    /// A reloader for `route`'s component from `origin` (at most `max_bytes`), swapping into
    /// the route's slot.
    pub fn new(
        runtime: Arc<Runtime>,
        route: Arc<Route>,
        origin: Origin,
        max_bytes: u64,
        cache: Option<Arc<CompileCache>>,
    ) -> Self {
        Reloader {
            runtime,
            route,
            origin,
            max_bytes,
            cache,
            last_failed: None,
            file_loaded: None,
            digest_loaded: None,
            poll_failures: 0,
            last_reason: None,
        }
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

    /// When to poll next: `None` for a file or a pinned digest; the interval, doubled per
    /// failure in a row up to 8× (and at most [`MAX_POLL_BACKOFF`]) while the registry fails.
    fn next_poll(&self) -> Option<Duration> {
        let Origin::Registry(registry) = &self.origin else {
            return None;
        };
        if registry.pinned() && self.digest_loaded.is_some() {
            return None;
        }
        let interval = registry.poll_interval();
        let factor = 1u32 << self.poll_failures.min(3);
        Some(
            interval
                .saturating_mul(factor)
                .min(MAX_POLL_BACKOFF.max(interval)),
        )
    }

    /// Handles one trigger and returns what happened.
    pub async fn handle(&mut self, trigger: Trigger) -> Report {
        let name = trigger.name();
        match trigger {
            Trigger::Admin(reply) => {
                let report = self.reload(name).await;
                let _ = reply.send(report.clone());
                report
            }
            Trigger::Upload(bytes, reply) => {
                let report = self.upload(bytes).await;
                let _ = reply.send(report.clone());
                report
            }
            _ => self.reload(name).await,
        }
    }

    async fn reload(&mut self, trigger: &'static str) -> Report {
        match &self.origin {
            Origin::File(path) => {
                let path = path.clone();
                self.reload_file(&path, trigger).await
            }
            Origin::Registry(registry) => {
                let registry = registry.clone();
                self.reload_registry(&registry, trigger).await
            }
        }
    }

    async fn reload_registry(&mut self, registry: &Registry, trigger: &'static str) -> Report {
        let started = Instant::now();
        // A poll compares with what was last pulled, so a rollback holds until the tag moves;
        // an explicit reload compares with what serves, so it undoes a rollback.
        // Only a poll skips the digest refused last; an explicit reload tries it again.
        let (known, skip_refused) = match trigger {
            POLL => (self.digest_loaded.clone(), true),
            "startup" => (self.digest_loaded.clone(), false),
            _ => (
                self.route.slot.current().and_then(|g| g.digest.clone()),
                false,
            ),
        };
        let polled = registry.poll(known.as_deref(), skip_refused).await;
        if polled.is_ok() {
            // The registry answered: a failure after this one is news, logged as a warning.
            self.last_reason = None;
        }
        let pulled = match polled {
            Ok(oci::Poll::Unchanged(digest)) => {
                self.route.metrics.registry_poll("unchanged");
                self.poll_failures = 0;
                if let Some(current) = self.route.slot.current() {
                    tracing::debug!(route = %self.route.name, reference = registry.display(), %digest, "tag unchanged");
                    let sha = current.sha256;
                    return self.unchanged(&current, &sha);
                }
                return self.fail(trigger, format!("{digest} is not loaded"), None);
            }
            Ok(oci::Poll::StillBad(digest)) => {
                self.route.metrics.registry_poll("unchanged");
                self.poll_failures = 0;
                tracing::debug!(route = %self.route.name, reference = registry.display(), %digest, "digest unchanged since its last failure");
                return Report {
                    result: "failed",
                    generation: self.route.slot.current().map(|g| g.number),
                    sha256: None,
                    error: Some(format!("{digest} was refused before; push a new version")),
                    cache_hit: false,
                    not_saved: false,
                };
            }
            Ok(oci::Poll::New(pulled)) => {
                self.route.metrics.registry_poll("new");
                self.poll_failures = 0;
                pulled
            }
            Err(err) => {
                self.route.metrics.registry_poll("error");
                self.route.metrics.registry_error(err.kind());
                if err.is_registry_failure() {
                    self.poll_failures = self.poll_failures.saturating_add(1);
                }
                let reason = err.to_string();
                // Nothing serves yet (a start with the registry down): the last pull will do.
                if self.route.slot.current().is_none()
                    && let Some(pulled) = registry.last_pulled()
                {
                    tracing::warn!(route = %self.route.name, reference = registry.display(), digest = %pulled.digest, "cannot poll the registry: {reason}; serving the component last pulled from it");
                    return self
                        .swap_in_pulled(registry, trigger, pulled, started)
                        .await;
                }
                return self.fail(trigger, reason, None);
            }
        };
        self.route.metrics.phase("read", started.elapsed());
        self.swap_in_pulled(registry, trigger, pulled, started)
            .await
    }

    async fn swap_in_pulled(
        &mut self,
        registry: &Registry,
        trigger: &'static str,
        pulled: oci::Pulled,
        started: Instant,
    ) -> Report {
        let sha256 = loader::sha256(&pulled.bytes);
        let digest = pulled.digest;
        let report = self
            .swap_in(trigger, pulled.bytes, sha256, Some(digest.clone()), started)
            .await;
        if report.result == "failed" {
            registry.refuse(&digest);
        } else {
            registry.served(&digest);
            self.digest_loaded = Some(digest);
        }
        report
    }

    async fn reload_file(&mut self, path: &Path, trigger: &'static str) -> Report {
        let started = Instant::now();
        let bytes = match read_component(path, self.max_bytes).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.file_loaded = None;
                return self.fail(trigger, reason, None);
            }
        };
        self.route.metrics.phase("read", started.elapsed());
        let sha256 = loader::sha256(&bytes);
        // What was last loaded from the file: nothing to do, whether that content is serving or
        // a rollback made another generation current.
        if trigger == FILE_CHANGE
            && self.file_loaded == Some(sha256)
            && let Some(current) = self.route.slot.current()
        {
            tracing::debug!(route = %self.route.name, path = %path.display(), serving = current.number, "file unchanged since it was last loaded; still serving generation {}", current.number);
            return self.unchanged(&current, &sha256);
        }
        let report = self.swap_in(trigger, bytes, sha256, None, started).await;
        if report.result != "failed" {
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
            return self.fail("admin upload", reason, None);
        };
        let path = path.clone();
        let started = Instant::now();
        let sha256 = loader::sha256(&bytes);
        let report = self
            .swap_in_saving("admin upload", bytes, sha256, started, Some(&path))
            .await;
        if report.result != "failed" {
            self.file_loaded = Some(sha256);
        }
        report
    }

    /// The report of a trigger that changes nothing: `current` keeps serving.
    fn unchanged(&self, current: &Generation, sha256: &[u8; 32]) -> Report {
        self.route.metrics.reload("unchanged");
        Report {
            result: "unchanged",
            generation: Some(current.number),
            sha256: Some(hex::encode(&sha256[..6])),
            error: None,
            cache_hit: false,
            not_saved: false,
        }
    }

    async fn swap_in(
        &mut self,
        trigger: &'static str,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        digest: Option<String>,
        started: Instant,
    ) -> Report {
        self.swap_in_with(trigger, bytes, sha256, digest, started, None)
            .await
    }

    /// [`Reloader::swap_in`] of an upload, which is saved to `save_to` after it validates and
    /// before it serves.
    async fn swap_in_saving(
        &mut self,
        trigger: &'static str,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        started: Instant,
        save_to: Option<&Path>,
    ) -> Report {
        self.swap_in_with(trigger, bytes, sha256, None, started, save_to)
            .await
    }

    async fn swap_in_with(
        &mut self,
        trigger: &'static str,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        digest: Option<String>,
        started: Instant,
        save_to: Option<&Path>,
    ) -> Report {
        let short = hex::encode(&sha256[..6]);
        let current = self.route.slot.current();
        if let Some(generation) = current
            .as_ref()
            .filter(|g| g.sha256 == sha256 && g.digest == digest)
        {
            tracing::debug!(route = %self.route.name, origin = %self.origin.display(), trigger, "component unchanged; no new generation");
            if let Some(path) = save_to
                && let Err(reason) = save(path, Arc::new(bytes)).await
            {
                return self.not_saved(trigger, path, reason, short);
            }
            return self.unchanged(generation, &sha256);
        }
        if trigger == FILE_CHANGE && self.last_failed == Some(sha256) {
            tracing::debug!(route = %self.route.name, origin = %self.origin.display(), "content unchanged since its last failure");
            return Report {
                result: "failed",
                generation: current.map(|g| g.number),
                sha256: Some(short),
                error: Some("unchanged since the last failed attempt".into()),
                cache_hit: false,
                not_saved: false,
            };
        }
        let size = bytes.len();
        if current.is_none() {
            self.route.slot.set_unavailable_reason(format!(
                "compiling `{}` ({} KiB)",
                self.origin.display(),
                size.div_ceil(1024)
            ));
        }
        let bytes = Arc::new(bytes);
        let mode = self.route.limits.tier;
        let compiled = match self.route.slot.find_by_hash(&sha256) {
            Some(kept) => Ok(reuse(&kept)),
            None => {
                tier::load_first(
                    mode,
                    &self.runtime,
                    &self.route,
                    bytes.clone(),
                    sha256,
                    self.cache.clone(),
                )
                .await
            }
        };
        if let (Ok(_), Some(path)) = (&compiled, save_to)
            && let Err(reason) = save(path, bytes.clone()).await
        {
            return self.not_saved(trigger, path, reason, short);
        }
        match compiled {
            Ok(mut compiled) => {
                let unsaved = compiled.unsaved.take();
                self.route.metrics.phase(
                    if compiled.source.cache_hit() {
                        "cache"
                    } else {
                        "compile"
                    },
                    compiled.compile_time,
                );
                self.route.metrics.phase("validate", compiled.validate_time);
                self.last_failed = None;
                self.last_reason = None;
                let generation =
                    self.route
                        .slot
                        .install(compiled, sha256, size, self.origin.display(), digest);
                self.route.metrics.reload("loaded");
                self.route.metrics.serving(&generation);
                if let Some(oldest) = self.route.slot.history().first() {
                    self.route.metrics.forget_generations_below(oldest.number);
                }
                let serving_after = started.elapsed();
                // The new code serves; only now write it to the compile cache, and log once it
                // is written (a host stopped after that line finds the entry on its restart).
                if let Some(unsaved) = unsaved {
                    unsaved.write().await;
                }
                log_loaded(&self.route.name, &generation, trigger, serving_after);
                if tier::tiers_up(mode, generation.tier) {
                    tier::spawn_tier_up(
                        self.runtime.clone(),
                        self.route.clone(),
                        generation.number,
                        bytes,
                        sha256,
                        self.cache.clone(),
                    );
                }
                Report {
                    result: "loaded",
                    generation: Some(generation.number),
                    sha256: Some(short),
                    error: None,
                    cache_hit: generation.code_source.cache_hit(),
                    not_saved: false,
                }
            }
            Err(err) => {
                self.last_failed = Some(sha256);
                self.fail(trigger, err.to_string(), Some(short))
            }
        }
    }

    /// The report of a validated upload that could not be saved: nothing changes.
    fn not_saved(
        &mut self,
        trigger: &'static str,
        path: &Path,
        reason: String,
        sha256: String,
    ) -> Report {
        let current = self.route.slot.current();
        tracing::warn!(route = %self.route.name, path = %path.display(), trigger, serving = current.as_ref().map(|g| g.number), "upload refused: {reason}; the file and the serving generation are unchanged");
        self.route.metrics.reload("failed");
        Report {
            result: "failed",
            generation: current.map(|g| g.number),
            sha256: Some(sha256),
            error: Some(format!(
                "{reason}; the upload does not serve and the file is unchanged"
            )),
            cache_hit: false,
            not_saved: true,
        }
    }

    fn fail(&mut self, trigger: &'static str, reason: String, sha256: Option<String>) -> Report {
        self.route.metrics.reload("failed");
        let path = self.origin.display();
        let current = self.route.slot.current();
        // The same reason again from a file event (one deploy raises several) or a poll (a
        // registry that stays down, or too slow, fails every poll) is logged at debug: the
        // first one was a warning, and a failure that lasts must not flood the log. Explicit
        // reloads (admin, SIGHUP, build) always warn.
        let repeated =
            matches!(trigger, FILE_CHANGE | POLL) && self.last_reason.as_ref() == Some(&reason);
        self.last_reason = Some(reason.clone());
        match &current {
            _ if repeated => {
                tracing::debug!(route = %self.route.name, path = %path, trigger, "reload failed again: {reason}")
            }
            Some(generation) => tracing::warn!(
                route = %self.route.name,
                path = %path,
                trigger,
                serving = generation.number,
                "reload failed: {reason}; still serving generation {}",
                generation.number
            ),
            None => {
                tracing::warn!(route = %self.route.name, path = %path, trigger, "reload failed: {reason}; no component is being served (503)");
                self.route
                    .slot
                    .set_unavailable_reason(format!("no valid component at `{path}`: {reason}"));
            }
        }
        Report {
            result: "failed",
            generation: current.map(|g| g.number),
            sha256,
            error: Some(reason),
            cache_hit: false,
            not_saved: false,
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
        incremental: None,
        tier: kept.tier,
        unsaved: None,
    }
}

fn log_loaded(route: &str, generation: &Generation, trigger: &'static str, total: Duration) {
    let how = match (generation.code_source, generation.incremental) {
        (Source::Compiled, Some(c)) if c.hits > 0 => format!(
            "compiled in {} ms, {} of {} functions from the incremental cache ({} untranslated)",
            generation.compile_time.as_millis(),
            c.hits,
            c.hits + c.misses,
            c.untranslated
        ),
        (Source::Compiled, _) => {
            format!("compiled in {} ms", generation.compile_time.as_millis())
        }
        (Source::DiskCache, _) => format!(
            "cache hit, loaded in {} ms",
            generation.compile_time.as_millis()
        ),
        (Source::Memory, _) => "cache hit, reused from memory".to_string(),
    };
    tracing::info!(
        route = %route,
        generation = generation.number,
        world = generation.world().as_str(),
        sha256 = %generation.short_hash(),
        size = generation.size,
        compile_ms = generation.compile_time.as_millis() as u64,
        cache_hit = generation.code_source.cache_hit(),
        incremental_hits = generation.incremental.map(|c| c.hits),
        incremental_misses = generation.incremental.map(|c| c.misses),
        incremental_untranslated = generation.incremental.map(|c| c.untranslated),
        total_ms = total.as_millis() as u64,
        trigger,
        path = %generation.origin,
        digest = generation.digest.as_deref(),
        tier = generation.tier.as_str(),
        "loaded generation {} ({}, {}, {}, {} bytes, {how})",
        generation.number,
        generation.world().as_str(),
        generation.tier.compiler(),
        generation.short_hash(),
        generation.size,
    );
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
