//! The tier-up: a generation served from its Winch build is compiled again with Cranelift in
//! the background (on threads of lower priority, [`tier::background_pool`]), validated like any
//! build, and swapped in as the same generation ([`install`]). Requests in flight finish on the
//! Winch build, a failed tier-up leaves it serving, and a newer generation arriving first makes
//! the tier-up moot (it is dropped once its generation is no longer kept).

use super::install::{Change, install};
use super::target::Pipeline;
use crate::component::{load, tier};
use crate::kind::Tier;
use crate::telemetry::traces::{Steps, attr};
use std::sync::Arc;
use std::time::Instant;

/// Compiles generation `number` of the pipeline's route (whose component is `bytes`, hashing to
/// `sha256`) with Cranelift in the background, and serves that build as the same generation
/// once it validates.
pub fn spawn(pipeline: Arc<Pipeline>, number: u64, bytes: Arc<Vec<u8>>, sha256: [u8; 32]) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut steps = Steps::begin();
        let target = &pipeline.target;
        let compiled = load::load(
            &pipeline.runtime,
            &target.store,
            bytes,
            sha256,
            pipeline.cache.clone(),
            Tier::Optimized,
            tier::background_pool(),
        )
        .await;
        let attributes = vec![
            attr("hotswap.route", target.name.to_string()),
            attr("hotswap.generation", number as i64),
        ];
        match compiled {
            Ok(compiled) => {
                steps.step_ended(
                    "compile",
                    compiled.compile_time,
                    compiled.validate_time,
                    vec![attr("hotswap.tier", Tier::Optimized.as_str())],
                );
                steps.step("validate", compiled.validate_time, Vec::new());
                let change = Change::TierUp {
                    number,
                    compiled,
                    started,
                };
                // A generation no longer kept is logged and counted by `install`.
                let installing = Instant::now();
                let installed = install(&pipeline, change).await;
                steps.step("install", installing.elapsed(), Vec::new());
                steps.finish("hotswap.tier_up", attributes, installed.err().as_deref());
            }
            Err(err) => {
                target.metrics.tier_up("failed");
                tracing::warn!(route = %target.name, generation = number, error = %err, "tier-up of generation {number} failed; its Winch build keeps serving: {err}");
                steps.finish("hotswap.tier_up", attributes, Some(&err.to_string()));
            }
        }
    });
}
