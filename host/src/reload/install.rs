//! One way for a generation to start serving, whatever brought it: a new build, the optimised
//! build of a generation that serves from its fast build (a tier-up), or a kept generation
//! served again (a rollback). [`install`] puts it in the slot, and then does the bookkeeping
//! every one of them needs: the serving metrics, the request series no longer needed, the
//! compile cache entry (written after the swap: it must not delay new code), one log line, the
//! `serving` event of the dev-mode stream (sent once the generation is current; not for a
//! tier-up, which serves the same code), and the tier-up a fast build is owed.

use super::target::Pipeline;
use super::tier_up;
use super::trigger::Cause;
use crate::component::load::{Compiled, Source};
use crate::component::tier;
use crate::guest::canary::{Canary, Decision};
use crate::guest::slot::Generation;
use crate::kind::Tier;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What starts serving.
pub enum Change {
    /// A new build, as the next generation.
    New {
        /// The validated build.
        compiled: Compiled,
        /// Its component's bytes (kept for its tier-up).
        bytes: Arc<Vec<u8>>,
        /// Their sha256.
        sha256: [u8; 32],
        /// The manifest digest, for a component pulled from a registry.
        digest: Option<String>,
        /// What asked for it.
        cause: Cause,
        /// When the reload began.
        started: Instant,
    },
    /// Generation `number`'s build by the optimising compiler, replacing its fast build.
    TierUp {
        /// The generation.
        number: u64,
        /// Its optimised, validated build.
        compiled: Compiled,
        /// When the tier-up began.
        started: Instant,
    },
    /// Kept generation `to` again, or the newest one older than the current.
    Rollback {
        /// The generation asked for.
        to: Option<u64>,
    },
}

/// Serves `change` on the pipeline's route and does the bookkeeping; the generation that serves
/// now, or why nothing changed (a tier-up of a generation no longer kept, a rollback to one
/// that is not).
pub async fn install(pipeline: &Arc<Pipeline>, change: Change) -> Result<Arc<Generation>, String> {
    let target = &pipeline.target;
    let mut owed_tier_up = None;
    let (generation, unsaved, started, said) = match change {
        Change::New {
            mut compiled,
            bytes,
            sha256,
            digest,
            cause,
            started,
        } => {
            let mut unsaved = compiled.unsaved.take();
            let size = bytes.len();
            let (generation, said) =
                if target.slot.canary_policy().is_some() && target.slot.current().is_some() {
                    // A candidate is not new code for everyone: its cache entry is written
                    // before it serves, so that its log line comes before any verdict on it.
                    if let Some(unsaved) = unsaved.take() {
                        unsaved.write().await;
                    }
                    let canary = start_canary(pipeline, compiled, sha256, size, digest);
                    (canary.candidate(), Said::Candidate(cause))
                } else {
                    let generation =
                        target
                            .slot
                            .install(compiled, sha256, size, target.source.clone(), digest);
                    (generation, Said::Loaded(cause))
                };
            if tier::tiers_up(target.tier, generation.tier) {
                owed_tier_up = Some((generation.number, bytes, sha256));
            }
            (generation, unsaved, started, said)
        }
        Change::TierUp {
            number,
            mut compiled,
            started,
        } => {
            let unsaved = compiled.unsaved.take();
            let Some(generation) = target.slot.tier_up(number, compiled) else {
                target.metrics.tier_up("dropped");
                tracing::debug!(route = %target.name, generation = number, "generation {number} is no longer kept; dropping its Cranelift build");
                return Err(format!("generation {number} is no longer kept"));
            };
            target.metrics.tier_up("serving");
            (generation, unsaved, started, Said::TieredUp)
        }
        Change::Rollback { to } => {
            // A rollback is an operator's word: a canary running is aborted first (none
            // running is nothing to abort).
            let _ = target.slot.decide_canary(
                Decision::Rollback,
                "a rollback was asked for",
                &target.metrics,
            );
            let generation = target.slot.rollback(to)?;
            (generation, None, Instant::now(), Said::RolledBack)
        }
    };
    let current = target
        .slot
        .current()
        .is_some_and(|current| Arc::ptr_eq(&current, &generation));
    // Subscribers hear of new code only now that requests get it (a tier-up serves the same
    // code: nothing for a page to reload).
    if current {
        target
            .slot
            .serving_now(&generation, said.trigger(), &target.metrics);
    }
    if let Some(oldest) = target.slot.history().first() {
        target.metrics.forget_generations_below(oldest.number);
    }
    let serving_after = started.elapsed();
    // The new code serves; only now write it to the compile cache, and log once it is written
    // (a host stopped after that line finds the entry on its restart).
    if let Some(unsaved) = unsaved {
        unsaved.write().await;
    }
    said.log(&target.name, &generation, serving_after);
    if let Some((number, bytes, sha256)) = owed_tier_up {
        tier_up::spawn(pipeline.clone(), number, bytes, sha256);
    }
    Ok(generation)
}

/// Starts a canary of a new build beside the current generation (replacing a canary still
/// running, which is logged), and the task that judges it at its `max_duration`.
fn start_canary(
    pipeline: &Arc<Pipeline>,
    compiled: crate::component::load::Compiled,
    sha256: [u8; 32],
    size: usize,
    digest: Option<String>,
) -> Arc<Canary> {
    let target = &pipeline.target;
    let (canary, replaced) =
        target
            .slot
            .start_canary(compiled, sha256, size, target.source.clone(), digest);
    if let Some((old, verdict)) = replaced {
        tracing::warn!(
            route = %target.name,
            generation = old.candidate().number,
            cause = verdict.cause,
            "canary: dropped candidate generation {} before a verdict: {}",
            old.candidate().number,
            verdict.reason
        );
        target
            .metrics
            .canary_verdict(verdict.decision.as_str(), verdict.cause);
    }
    target.metrics.canary_candidate(canary.candidate().number);
    // The task holds the canary weakly: one that ends before its deadline is not kept alive.
    let (slot, metrics, weak) = (
        target.slot.clone(),
        target.metrics.clone(),
        Arc::downgrade(&canary),
    );
    let deadline = canary.policy.max_duration;
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if let Some(canary) = weak.upgrade()
            && let Some(verdict) = canary.time_out()
        {
            slot.conclude(&canary, &verdict, &metrics);
        }
    });
    canary
}

/// Which log line a change gets.
enum Said {
    Loaded(Cause),
    /// A new build that serves as the canary candidate.
    Candidate(Cause),
    TieredUp,
    RolledBack,
}

impl Said {
    /// What brought new code to serve, for the event stream; `None` for a tier-up.
    fn trigger(&self) -> Option<&'static str> {
        match self {
            Said::Loaded(cause) | Said::Candidate(cause) => Some(cause.name()),
            Said::TieredUp => None,
            Said::RolledBack => Some("rollback"),
        }
    }

    fn log(self, route: &str, generation: &Generation, total: Duration) {
        match self {
            Said::Loaded(cause) => log_loaded(route, generation, cause, total),
            Said::Candidate(cause) => {
                log_loaded(route, generation, cause, total);
                tracing::info!(
                    route = %route,
                    generation = generation.number,
                    "canary: generation {} serves beside the current one as the candidate until \
                     it is promoted or rolled back",
                    generation.number
                );
            }
            Said::TieredUp => tracing::info!(
                route = %route,
                generation = generation.number,
                tier = Tier::Optimized.as_str(),
                compile_ms = generation.compile_time.as_millis() as u64,
                total_ms = total.as_millis() as u64,
                cache_hit = generation.code_source.cache_hit(),
                "tiered up generation {}: its Cranelift build serves now (compiled in {} ms); \
                 requests in flight finish on the Winch build",
                generation.number,
                generation.compile_time.as_millis()
            ),
            Said::RolledBack => tracing::info!(
                route = %route,
                generation = generation.number,
                sha256 = %generation.short_hash(),
                "rolled back to generation {}",
                generation.number
            ),
        }
    }
}

fn log_loaded(route: &str, generation: &Generation, cause: Cause, total: Duration) {
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
        trigger = cause.name(),
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

/// A kept generation's compiled code, reused for content seen before.
pub(super) fn reuse(kept: &Generation) -> Compiled {
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
