//! The admin calls of a route's canary: `GET /routes/{name}/canary` (its policy, both sides'
//! numbers, the verdict so far), `POST /routes/{name}/canary/promote` and
//! `POST /routes/{name}/canary/abort` (the operator's verdict, with the token).

use super::json;
use crate::config::canary::{CanaryMode, CanaryPolicy, OnTimeout, Sticky};
use crate::guest::body::ResponseBody;
use crate::guest::canary::{Canary, Decision, Verdict};
use crate::route::Route;
use http::{Response, StatusCode};

/// `GET /routes/{name}/canary`: 404 JSON without a policy.
pub(super) fn status(route: &Route) -> Response<ResponseBody> {
    match route.slot.canary_policy() {
        None => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "route": &*route.name, "error": "this route has no canary policy" }),
        ),
        Some(_) => json(StatusCode::OK, &describe(route)),
    }
}

/// The route's canary as `/status` and `GET …/canary` show it (`null` without a policy).
pub(super) fn describe(route: &Route) -> serde_json::Value {
    let Some(policy) = route.slot.canary_policy() else {
        return serde_json::Value::Null;
    };
    let running = route.slot.canary();
    serde_json::json!({
        "route": &*route.name,
        "policy": policy_json(policy),
        "current": route.slot.current().map(|g| g.number),
        "candidate": running.as_ref().map(|c| running_json(c)),
        "last_verdict": route.slot.last_verdict().map(|(generation, verdict)| {
            let mut value = verdict_json(&verdict);
            value["generation"] = generation.into();
            value["numbers"] = serde_json::json!({
                "current": verdict.current.json(),
                "candidate": verdict.candidate.json(),
            });
            if let Some(shadow) = &verdict.shadow {
                value["shadow"] = shadow.json();
            }
            value
        }),
    })
}

fn policy_json(policy: &CanaryPolicy) -> serde_json::Value {
    serde_json::json!({
        "weight": f64::from(policy.weight_bp) / 100.0,
        "min_requests": policy.min_requests,
        "max_duration_ms": policy.max_duration.as_millis() as u64,
        "on_timeout": match policy.on_timeout { OnTimeout::Rollback => "rollback", OnTimeout::Promote => "promote" },
        "max_error_increase": policy.max_error_increase,
        "max_p99_ratio": policy.max_p99_ratio,
        "p99_slack_ms": policy.p99_slack.as_secs_f64() * 1e3,
        "min_failures": policy.min_failures,
        "mode": match policy.mode { CanaryMode::Split => "split", CanaryMode::Shadow => "shadow" },
        "deterministic": policy.deterministic,
        "shadow_body_limit": policy.shadow_body_limit,
        "sticky": policy.sticky.as_ref().map(|s| match s {
            Sticky::Header(name) => format!("header:{name}"),
            Sticky::Cookie(name) => format!("cookie:{name}"),
        }),
    })
}

fn running_json(canary: &Canary) -> serde_json::Value {
    let (current, candidate) = canary.numbers();
    let generation = canary.candidate();
    serde_json::json!({
        "generation": generation.number,
        "sha256": hex::encode(generation.sha256),
        "tier": generation.tier.as_str(),
        "running_ms": canary.started.elapsed().as_millis() as u64,
        "numbers": { "current": current.json(), "candidate": candidate.json() },
        "shadow": canary.policy.shadow().then(|| canary.shadow_numbers().json()),
        "verdict": canary.verdict().as_ref().map(verdict_json),
    })
}

fn verdict_json(verdict: &Verdict) -> serde_json::Value {
    serde_json::json!({
        "decision": verdict.decision.as_str(),
        "cause": verdict.cause,
        "reason": verdict.reason,
    })
}

/// `POST …/canary/promote` or `…/canary/abort`: 409 when no canary runs (or it ended in
/// between).
pub(super) fn decide(route: &Route, decision: Decision) -> Response<ResponseBody> {
    let what = match decision {
        Decision::Promote => "promoted by the operator (POST …/canary/promote)",
        Decision::Rollback => "aborted by the operator (POST …/canary/abort)",
    };
    match route.slot.decide_canary(decision, what, &route.metrics) {
        Ok((canary, verdict)) => json(
            StatusCode::OK,
            &serde_json::json!({
                "route": &*route.name,
                "candidate": canary.candidate().number,
                "verdict": verdict_json(&verdict),
                "current": route.slot.current().map(|g| g.number),
            }),
        ),
        Err(why) => json(
            StatusCode::CONFLICT,
            &serde_json::json!({ "route": &*route.name, "error": why }),
        ),
    }
}
