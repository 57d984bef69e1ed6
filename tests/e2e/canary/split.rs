//! Split mode: the candidate answers its share of the clients.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_candidate_gets_its_weight_and_every_response_names_its_side() {
    let host = Host::start(
        World::P2,
        &["--canary-weight", "20", "--canary-min-requests", "1000000"],
    );
    let addr = host.server.addr;
    // No candidate yet: every response is the current one's, and says so.
    let before = hit(addr, "/canary", 20, 1, &[]).await;
    assert!(
        before
            .iter()
            .all(|s| s.role.as_deref() == Some("current") && s.generation == Some(1))
    );
    let candidate = host.deploy_candidate("ok2.").await;
    assert_eq!(candidate, 2);
    let seen = hit(addr, "/canary", 10_000, 4, &[]).await;
    assert!(seen.iter().all(|s| s.status == 200));
    for s in &seen {
        let expected = if s.role.as_deref() == Some("candidate") {
            2
        } else {
            1
        };
        assert_eq!(s.generation, Some(expected), "{s:?}");
    }
    let candidate_share = share(&seen, "candidate");
    assert!(
        (candidate_share - 0.20).abs() <= 0.03,
        "the candidate served {:.1} % of 10,000 requests, not 20 ± 3",
        candidate_share * 100.0
    );
    // The numbers the host counted are the requests it served.
    let canary = host.canary().await;
    let numbers = &canary["candidate"]["numbers"];
    let counted = numbers["current"]["requests"].as_u64().unwrap()
        + numbers["candidate"]["requests"].as_u64().unwrap();
    assert!(counted >= 10_000, "{canary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_cookie_keeps_each_client_on_one_side() {
    let host = Host::start(
        World::P2,
        &[
            "--canary-weight",
            "50",
            "--canary-min-requests",
            "1000000",
            "--canary-sticky",
            "cookie:session",
        ],
    );
    host.deploy_candidate("ok2.").await;
    let mut roles = std::collections::HashSet::new();
    for user in 0..24 {
        let cookie = format!("theme=dark; session=user-{user}");
        let seen = hit(host.server.addr, "/canary", 12, 1, &[("cookie", &cookie)]).await;
        let first = seen[0].role.clone();
        assert!(
            seen.iter().all(|s| s.role == first),
            "user {user} flipped sides: {seen:?}"
        );
        roles.insert(first);
    }
    assert_eq!(roles.len(), 2, "24 users all landed on one side: {roles:?}");
    // Without the cookie a request goes to a side at random.
    let anonymous = hit(host.server.addr, "/canary", 200, 1, &[]).await;
    let candidate_share = share(&anonymous, "candidate");
    assert!((0.3..=0.7).contains(&candidate_share), "{candidate_share}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_candidate_is_promoted_and_the_old_current_is_kept_for_a_rollback() {
    let host = Host::start(
        World::P2,
        &["--canary-weight", "30", "--canary-min-requests", "50"],
    );
    let candidate = host.deploy_candidate("ok2.").await;
    let addr = host.server.addr;
    eventually(Duration::from_secs(30), || async {
        let seen = hit(addr, "/canary", 40, 2, &[]).await;
        seen.iter()
            .all(|s| s.generation == Some(candidate) && s.role.as_deref() == Some("current"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("never promoted; log:\n{}", host.server.log()));
    let verdict = host.verdict().await;
    assert_eq!(verdict["decision"], "promoted", "{verdict}");
    assert_eq!(verdict["cause"], "judged");
    assert!(
        verdict["numbers"]["candidate"]["requests"]
            .as_u64()
            .unwrap()
            >= 50
    );
    host.server
        .expect_log(
            &format!("canary: promoted generation {candidate}"),
            Duration::from_secs(5),
        )
        .await;
    let metrics = get(host.server.admin.unwrap(), "/metrics")
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains(&format!(
            "hotswap_generation{{route=\"index\"}} {candidate}"
        )),
        "{metrics}"
    );
    // The old current is kept: a rollback goes back to it.
    let (code, report) = admin_json(host.server.admin.unwrap(), "POST", "/rollback").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["generation"], 1);
}

/// Deploys `mode` under load and waits for the canary's verdict on it; the verdict. (A failing
/// candidate may be judged before a poll of the admin API ever sees it run.)
async fn judged_under_load(host: &Host, mode: &str) -> serde_json::Value {
    let addr = host.server.addr;
    let before = host.canary().await["last_verdict"]["generation"].as_u64();
    let load = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2000 {
            seen.extend(hit(addr, "/canary", 20, 2, &[]).await);
        }
        seen
    });
    deploy_atomic(&canary_build(host.world.misbehave_guest(), mode), &host.app);
    let verdict = eventually(LOAD_WAIT, || async {
        let verdict = host.canary().await["last_verdict"].clone();
        (verdict["generation"].as_u64() != before && !verdict.is_null()).then_some(verdict)
    })
    .await
    .unwrap_or_else(|| panic!("no verdict on `{mode}`; log:\n{}", host.server.log()));
    load.abort();
    verdict
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_that_fails_or_traps_is_rolled_back_after_min_failures_in_both_worlds() {
    both_worlds(async |world| {
        let host = Host::start(
            world,
            &["--canary-weight", "25", "--canary-min-requests", "200", "--canary-min-failures", "5"],
        );
        for mode in ["fail", "trap"] {
            let verdict = judged_under_load(&host, mode).await;
            assert_eq!(verdict["decision"], "rolled_back", "{mode}: {verdict}");
            assert_eq!(verdict["cause"], "errors", "{mode}: {verdict}");
            let errors = verdict["numbers"]["candidate"]["errors"].as_u64().unwrap();
            let requests = verdict["numbers"]["candidate"]["requests"].as_u64().unwrap();
            eprintln!("{world} {mode}: rolled back after {errors} failures in {requests} requests");
            assert!(errors >= 5 && requests < 200, "{mode}: {verdict}");
            // After the verdict the current generation serves everything.
            let after = hit(host.server.addr, "/canary", 100, 2, &[]).await;
            assert!(
                after.iter().all(|s| s.status == 200 && s.generation == Some(1)),
                "{mode}: {after:?}"
            );
        }
        // The trap's log line names the side it happened on.
        assert!(
            host.server
                .log()
                .lines()
                .any(|l| l.contains("role=\"candidate\"") && l.contains("trap")),
            "no trap logged with its role; log:\n{}",
            host.server.log()
        );
        // The same bytes again are not tried again.
        deploy_atomic(&canary_build(world.misbehave_guest(), "fail"), &host.app);
        let (code, report) = admin_json(host.server.admin.unwrap(), "POST", "/reload").await;
        assert_eq!(code, 422, "{report}");
        assert!(
            report["error"].as_str().unwrap().contains("not tried again until its bytes change"),
            "{report}"
        );
        assert!(host.canary().await["candidate"].is_null());
        let metrics = get(host.server.admin.unwrap(), "/metrics").await.unwrap().text();
        assert!(
            metrics.contains(
                "hotswap_canary_verdicts_total{route=\"index\",verdict=\"rolled_back\",cause=\"errors\"} 2"
            ),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_with_a_worse_p99_is_rolled_back_on_latency() {
    let host = Host::start(
        World::P2,
        &[
            "--canary-weight",
            "50",
            "--canary-min-requests",
            "60",
            "--canary-max-p99-ratio",
            "1.5",
        ],
    );
    let verdict = judged_under_load(&host, "slow").await;
    assert_eq!(verdict["decision"], "rolled_back", "{verdict}");
    assert_eq!(verdict["cause"], "latency", "{verdict}");
    let p99 = verdict["numbers"]["candidate"]["p99_ms"].as_f64().unwrap();
    assert!(p99 >= 50.0, "{verdict}");
    host.server
        .expect_log("canary: rolled back generation 2", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_build_replaces_a_running_candidate_and_operators_promote_or_abort() {
    let host = Host::start(
        World::P2,
        &["--canary-weight", "50", "--canary-min-requests", "1000000"],
    );
    let admin = host.server.admin.unwrap();
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    hit(host.server.addr, "/canary", 50, 2, &[]).await;
    // A newer file takes the running candidate's place, with fresh numbers.
    assert_eq!(host.deploy_candidate("body").await, 3);
    host.server
        .expect_log(
            "canary: dropped candidate generation 2 before a verdict",
            Duration::from_secs(5),
        )
        .await;
    let canary = host.canary().await;
    assert_eq!(
        canary["candidate"]["numbers"]["candidate"]["requests"], 0,
        "{canary}"
    );
    // Abort: the candidate is dropped, the current serves everything.
    let (code, answer) = admin_json(admin, "POST", "/routes/index/canary/abort").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["verdict"]["decision"], "rolled_back");
    assert_eq!(answer["current"], 1);
    let after = hit(host.server.addr, "/canary", 40, 2, &[]).await;
    assert!(after.iter().all(|s| s.generation == Some(1)));
    let (code, _) = admin_json(admin, "POST", "/routes/index/canary/abort").await;
    assert_eq!(code, 409, "nothing to abort");
    // Without the token, no verdict.
    let mut client = Client::connect(admin).await.unwrap();
    let reply = client
        .send("POST", "/routes/index/canary/promote", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 401);
    // Promote: the candidate serves everything at once.
    assert_eq!(host.deploy_candidate("ok3.").await, 4);
    let (code, answer) = admin_json(admin, "POST", "/routes/index/canary/promote").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["current"], 4);
    let after = hit(host.server.addr, "/canary", 40, 2, &[]).await;
    assert!(
        after
            .iter()
            .all(|s| s.generation == Some(4) && s.role.as_deref() == Some("current"))
    );
    // A rollback during a canary says what it did to it.
    assert_eq!(host.deploy_candidate("ok..").await, 5);
    let (code, report) = admin_json(admin, "POST", "/rollback").await;
    assert_eq!(code, 200, "{report}");
    assert!(
        report["canary"]
            .as_str()
            .unwrap()
            .contains("canary of generation 5 was aborted"),
        "{report}"
    );
    assert!(host.canary().await["candidate"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn canaries_work_with_instance_reuse_and_with_a_tier_up_of_the_candidate() {
    // WASI 0.3 with reused instances: a failing candidate is rolled back, the current's
    // reused instances keep serving.
    let host = Host::start(
        World::P3,
        &[
            "--instance-reuse",
            "8",
            "--canary-weight",
            "25",
            "--canary-min-failures",
            "5",
        ],
    );
    let verdict = judged_under_load(&host, "fail").await;
    assert_eq!(verdict["cause"], "errors", "{verdict}");
    drop(host);
    // A candidate compiled by Winch first (padded past `--tier auto`'s 2 MiB threshold) tiers
    // up to Cranelift as the same generation while it runs: the canary goes on with it.
    let host = Host::start(
        World::P2,
        &[
            "--tier",
            "auto",
            "--canary-weight",
            "50",
            "--canary-min-requests",
            "1000000",
            "--no-cache",
        ],
    );
    let padded = hotswap_tests::with_custom_section(
        &canary_build(MISBEHAVE, "ok2."),
        "padding",
        &vec![0u8; 5 << 19],
    );
    deploy_atomic(&padded, &host.app);
    let candidate = eventually(LOAD_WAIT, || async {
        hit(host.server.addr, "/canary", 10, 1, &[]).await;
        host.canary().await["candidate"]["generation"].as_u64()
    })
    .await
    .unwrap_or_else(|| panic!("no candidate; log:\n{}", host.server.log()));
    let canary = eventually(Duration::from_secs(60), || async {
        hit(host.server.addr, "/canary", 10, 1, &[]).await;
        let canary = host.canary().await;
        (canary["candidate"]["tier"] == "optimized").then_some(canary)
    })
    .await
    .unwrap_or_else(|| panic!("the candidate never tiered up; log:\n{}", host.server.log()));
    assert_eq!(canary["candidate"]["generation"], candidate, "{canary}");
    host.server
        .expect_log(
            &format!("tiered up generation {candidate}"),
            Duration::from_secs(5),
        )
        .await;
    let seen = hit(host.server.addr, "/canary", 100, 2, &[]).await;
    assert!(seen.iter().all(|s| s.status == 200));
    assert!(seen.iter().any(|s| s.generation == Some(candidate)));
    let (code, answer) = admin_json(
        host.server.admin.unwrap(),
        "POST",
        "/routes/index/canary/promote",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let status = hotswap_tests::admin::status(&host.server).await;
    assert_eq!(status["current"]["generation"], candidate, "{status}");
    assert_eq!(status["current"]["tier"], "optimized", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_routes_canary_never_touches_another_routes_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (canaried, other) = (
        dir.path().join("canaried.wasm"),
        dir.path().join("other.wasm"),
    );
    std::fs::write(&canaried, canary_build(MISBEHAVE, "ok..")).unwrap();
    std::fs::write(&other, canary_build(MISBEHAVE, "ok2.")).unwrap();
    let routes = [
        format!("/canary={}", canaried.display()),
        format!("/={}", other.display()),
    ];
    let server = Server::launch(
        &[
            "--route",
            &routes[0],
            "--route",
            &routes[1],
            "--admin-addr",
            "127.0.0.1:0",
            "--canary-weight",
            "50",
            "--canary-min-failures",
            "5",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", "secret")],
        None,
    );
    let addr = server.addr;
    let other_load = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen.extend(hit(addr, "/ok", 10, 1, &[]).await);
        }
        seen
    });
    deploy_atomic(&canary_build(MISBEHAVE, "fail"), &canaried);
    let admin = server.admin.unwrap();
    let verdict = eventually(LOAD_WAIT, || async {
        hit(addr, "/canary", 20, 2, &[]).await;
        let canary = admin_json(admin, "GET", "/routes/canary/canary").await.1;
        (!canary["last_verdict"].is_null()).then(|| canary["last_verdict"].clone())
    })
    .await
    .unwrap_or_else(|| panic!("no verdict on /canary; log:\n{}", server.log()));
    assert_eq!(verdict["decision"], "rolled_back", "{verdict}");
    let other_seen = other_load.await.unwrap();
    assert!(
        other_seen.iter().all(|s| s.status == 200
            && s.generation == Some(1)
            && s.role.as_deref() == Some("current")),
        "the other route saw the canary: {:?}",
        other_seen
            .iter()
            .find(|s| s.role.as_deref() != Some("current"))
    );
    let other_canary = admin_json(admin, "GET", "/routes/index/canary").await.1;
    assert!(
        other_canary["last_verdict"].is_null() && other_canary["candidate"].is_null(),
        "{other_canary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_following_a_tag_canaries_each_new_digest_and_refuses_a_rolled_back_one() {
    let dir = tempfile::tempdir().unwrap();
    let registry = hotswap_tests::oci::Registry::start(&dir.path().join("registry"));
    registry.push("apps/canary:live", &canary_build(MISBEHAVE, "ok.."));
    let reference = registry.reference("apps/canary:live");
    let cache = dir.path().join("cache");
    let server = Server::start_with_env(
        Path::new(&reference),
        &[
            "--poll-interval",
            "300ms",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
            "--canary-weight",
            "50",
            "--canary-min-requests",
            "40",
            "--canary-min-failures",
            "5",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", "secret")],
    );
    let (addr, admin) = (server.addr, server.admin.unwrap());
    // A bad digest under the tag: canaried, rolled back, and not pulled into a canary again
    // while the tag stays on it.
    let bad = registry.push("apps/canary:live", &canary_build(MISBEHAVE, "fail"));
    let verdict = eventually(LOAD_WAIT, || async {
        hit(addr, "/canary", 20, 2, &[]).await;
        let canary = admin_json(admin, "GET", "/routes/index/canary").await.1;
        (!canary["last_verdict"].is_null()).then(|| canary["last_verdict"].clone())
    })
    .await
    .unwrap_or_else(|| panic!("no verdict; log:\n{}", server.log()));
    assert_eq!(verdict["decision"], "rolled_back", "{verdict}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let canary = admin_json(admin, "GET", "/routes/index/canary").await.1;
    assert!(
        canary["candidate"].is_null(),
        "{bad} came back as a candidate: {canary}"
    );
    assert_eq!(
        hit(addr, "/canary", 20, 1, &[])
            .await
            .iter()
            .filter(|s| s.generation != Some(1))
            .count(),
        0
    );
    // The tag moves to a good digest: canaried, then promoted.
    registry.push("apps/canary:live", &canary_build(MISBEHAVE, "ok2."));
    let promoted = eventually(LOAD_WAIT, || async {
        hit(addr, "/canary", 20, 2, &[]).await;
        let canary = admin_json(admin, "GET", "/routes/index/canary").await.1;
        (canary["last_verdict"]["decision"] == "promoted").then_some(canary)
    })
    .await
    .unwrap_or_else(|| panic!("the good digest was never promoted; log:\n{}", server.log()));
    assert_eq!(
        promoted["current"], promoted["last_verdict"]["generation"],
        "{promoted}"
    );
}
