//! The reloader's side of a component that comes from a registry: when to poll the tag, what
//! a poll compares with, and what a pulled component goes through (the same as a file's bytes,
//! then the registry is told whether it served).

use super::{Cause, New, Origin, Outcome, Reloader, Report};
use crate::component::oci::{self, Registry};
use crate::digest;
use crate::telemetry::traces::attr;
use std::time::{Duration, Instant};

/// Longest wait between two polls of a registry that keeps failing.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(300);

impl Reloader {
    /// When to poll next: `None` for a file or a pinned digest; the interval, doubled per
    /// failure in a row up to 8× (and at most [`MAX_POLL_BACKOFF`]) while the registry fails.
    pub(super) fn next_poll(&self) -> Option<Duration> {
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

    pub(super) async fn reload_registry(&mut self, registry: &Registry, cause: Cause) -> Report {
        let started = Instant::now();
        // A poll compares with what was last pulled, so a rollback holds until the tag moves;
        // an explicit reload compares with what serves, so it undoes a rollback.
        // Only a poll skips the digest refused last; an explicit reload tries it again.
        let (known, skip_refused) = match cause {
            Cause::Poll => (self.digest_loaded.clone(), true),
            Cause::Startup => (self.digest_loaded.clone(), false),
            _ => (
                self.target().slot.current().and_then(|g| g.digest.clone()),
                false,
            ),
        };
        let polled = registry.poll(known.as_deref(), skip_refused).await;
        if polled.is_ok() {
            // The registry answered: a failure after this one is news, logged as a warning.
            self.last_reason = None;
        }
        let metrics = &self.pipeline.target.metrics;
        let pulled = match polled {
            Ok(oci::Poll::Unchanged(digest)) => {
                metrics.registry_poll("unchanged");
                self.poll_failures = 0;
                if let Some(current) = self.target().slot.current() {
                    tracing::debug!(route = %self.target().name, reference = registry.display(), %digest, "tag unchanged");
                    let sha = current.sha256;
                    return self.unchanged(&current, &sha);
                }
                return self.fail(cause, format!("{digest} is not loaded"), None);
            }
            Ok(oci::Poll::StillBad(digest)) => {
                metrics.registry_poll("unchanged");
                self.poll_failures = 0;
                self.quiet = cause.repeats();
                tracing::debug!(route = %self.target().name, reference = registry.display(), %digest, "digest unchanged since its last failure");
                return Report::failed(
                    self.target().slot.current().map(|g| g.number),
                    format!("{digest} was refused before; push a new version"),
                );
            }
            Ok(oci::Poll::New(pulled)) => {
                metrics.registry_poll("new");
                self.poll_failures = 0;
                pulled
            }
            Err(err) => {
                metrics.registry_poll("error");
                metrics.registry_error(err.kind());
                if err.is_registry_failure() {
                    self.poll_failures = self.poll_failures.saturating_add(1);
                }
                let reason = err.to_string();
                // Nothing serves yet (a start with the registry down): the last pull will do.
                if self.target().slot.current().is_none()
                    && let Some(pulled) = registry.last_pulled()
                {
                    tracing::warn!(route = %self.target().name, reference = registry.display(), digest = %pulled.digest, "cannot poll the registry: {reason}; serving the component last pulled from it");
                    return self.swap_in_pulled(registry, cause, pulled, started).await;
                }
                return self.fail(cause, reason, None);
            }
        };
        self.target().metrics.phase("read", started.elapsed());
        let attributes = vec![
            attr("hotswap.digest", pulled.digest.clone()),
            attr("hotswap.bytes", pulled.bytes.len() as i64),
        ];
        self.steps.step("pull", started.elapsed(), attributes);
        self.swap_in_pulled(registry, cause, pulled, started).await
    }

    async fn swap_in_pulled(
        &mut self,
        registry: &Registry,
        cause: Cause,
        pulled: oci::Pulled,
        started: Instant,
    ) -> Report {
        let sha256 = digest::sha256(&pulled.bytes);
        let manifest = pulled.digest;
        let new = New {
            bytes: pulled.bytes,
            sha256,
            digest: Some(manifest.clone()),
            cause,
            started,
        };
        let report = self.swap_in(new, None).await;
        if report.result == Outcome::Failed {
            registry.refuse(&manifest);
        } else {
            registry.served(&manifest);
            self.digest_loaded = Some(manifest);
        }
        report
    }
}
