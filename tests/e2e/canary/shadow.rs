//! Shadow canaries: the candidate gets copies of a share of the requests; clients are answered
//! by the current generation alone; the copies' answers are compared, counted and dropped, and
//! judge the candidate. A copy cannot act twice: no outbound call, no write to the real
//! key-value state.

use super::{Host, Seen, admin_json, hit};
use hotswap_tests::guests::{self, STATEFUL};
use hotswap_tests::metrics;
use hotswap_tests::upstream::Upstream;
use hotswap_tests::worlds::World;
use hotswap_tests::{Client, Server, deploy_atomic, eventually, with_custom_section};
use std::time::Duration;

/// Shadow mode on 99 % of the requests (a request is left uncopied one time in a hundred).
const SHADOW: [&str; 4] = ["--canary-mode", "shadow", "--canary-weight", "99"];

/// A host on `world`'s misbehaving guest with a shadow canary on 99 % and `extra` arguments.
fn shadow_host(world: World, extra: &[&str]) -> Host {
    let mut args = SHADOW.to_vec();
    args.extend_from_slice(extra);
    Host::start(world, &args)
}

/// Asserts that every request of `seen` was answered 200 by generation `generation`.
fn all_served_by(seen: &[Seen], generation: u64) {
    assert!(
        seen.iter()
            .all(|s| s.status == 200 && s.generation == Some(generation)),
        "{seen:?}"
    );
}

/// `n` POSTs of `size` bytes to `/canary`: each answer's text and generation.
async fn post(host: &Host, size: usize, n: usize) -> Vec<(String, Option<u64>)> {
    let mut client = Client::connect(host.server.addr).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..n {
        let reply = client
            .send_with("POST", "/canary", &[], vec![b'x'; size])
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        answers.push((reply.text(), reply.generation()));
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_candidate_answers_copies_clients_never_see_and_is_promoted_or_flagged() {
    let host = shadow_host(
        World::P2,
        &[
            "--canary-deterministic",
            "--canary-min-requests",
            "150",
            "--canary-shadow-body-limit",
            "1KiB",
        ],
    );
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    // The current answers every client; the candidate only copies.
    let seen = hit(host.server.addr, "/canary", 60, 2, &[]).await;
    assert!(
        seen.iter().all(|s| s.status == 200
            && s.generation == Some(1)
            && s.role.as_deref() == Some("current")),
        "{seen:?}"
    );
    // A body within the limit is copied whole (a copy that read fewer bytes would answer
    // differently); a larger one is not copied, and the current still reads all of it.
    for (text, generation) in post(&host, 1000, 20).await {
        assert_eq!((text.as_str(), generation), ("canary read 1000", Some(1)));
    }
    for (text, generation) in post(&host, 5000, 10).await {
        assert_eq!((text.as_str(), generation), ("canary read 5000", Some(1)));
    }
    let compared = eventually(Duration::from_secs(10), || async {
        let canary = host.canary().await;
        let shadow = &canary["candidate"]["shadow"];
        (shadow["matched"].as_u64()? >= 70).then_some(canary)
    })
    .await;
    let Some(canary) = compared else {
        let now = host.canary().await;
        panic!("copies never compared: {now}; log:\n{}", host.server.log());
    };
    let shadow = &canary["candidate"]["shadow"];
    assert_eq!(shadow["mismatched"], 0, "{canary}");
    assert!(
        shadow["not_copied"]["body"].as_u64().unwrap() >= 1,
        "{canary}"
    );
    assert_eq!(canary["policy"]["mode"], "shadow");
    // At 150 requests within the bounds, the candidate is promoted and serves the clients.
    hit(host.server.addr, "/canary", 100, 2, &[]).await;
    let verdict = host.verdict().await;
    assert_eq!(
        (&verdict["decision"], &verdict["cause"]),
        (&"promoted".into(), &"judged".into()),
        "{verdict}"
    );
    assert_eq!(verdict["shadow"]["mismatched"], 0, "{verdict}");
    let after = hit(host.server.addr, "/canary", 10, 1, &[]).await;
    assert!(after.iter().all(|s| s.generation == Some(2)), "{after:?}");

    // A candidate whose body differs: the clients never see it; every copy is a mismatch, and
    // on a deterministic route a mismatch is an error, so it is rolled back.
    assert_eq!(host.deploy_candidate("body").await, 3);
    let mut client = Client::connect(host.server.addr).await.unwrap();
    for _ in 0..40 {
        let reply = client.send("GET", "/canary", Vec::new()).await.unwrap();
        assert_eq!(
            (reply.text().as_str(), reply.generation()),
            ("canary ok", Some(2))
        );
    }
    let verdict = host.verdict().await;
    assert_eq!(
        (&verdict["decision"], &verdict["cause"]),
        (&"rolled_back".into(), &"errors".into()),
        "{verdict}"
    );
    assert!(verdict["shadow"]["body_mismatches"].as_u64().unwrap() >= 5);
    // The first mismatches are in the log, with their path.
    host.server
        .expect_log(
            "the shadow candidate answered differently",
            Duration::from_secs(5),
        )
        .await;
    let log = host.server.log();
    let line = log
        .lines()
        .find(|l| l.contains("answered differently"))
        .unwrap();
    assert!(
        line.contains("/canary") && line.contains("body_mismatch"),
        "{line}"
    );
    let samples = metrics::scrape(&host.server).await;
    let count = |outcome| {
        metrics::value(
            &samples,
            "hotswap_canary_shadow_total",
            "index",
            &[("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert!(count("body_mismatch") >= 5.0 && count("matched") >= 70.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_candidate_makes_no_outbound_call() {
    let upstream = Upstream::start().await;
    let allow = upstream.addr.to_string();
    let mut args = SHADOW.to_vec();
    // Errors do not end this canary: the test counts what reaches the upstream.
    args.extend([
        "--allow-outbound",
        &allow,
        "--canary-min-requests",
        "1000000",
        "--canary-max-error-increase",
        "1",
    ]);
    let host = Host::start(World::P2, &args);
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    let path = format!("/outbound?url=http://{allow}/called");
    let seen = hit(host.server.addr, &path, 30, 1, &[]).await;
    assert!(seen.iter().all(|s| s.status == 200), "{seen:?}");
    // Every copy ran, denied its call, and answered 502 where the current answered 200.
    let canary = eventually(Duration::from_secs(10), || async {
        let canary = host.canary().await;
        let candidate = &canary["candidate"];
        let compared = candidate["shadow"]["status_mismatches"].as_u64()?
            + candidate["shadow"]["matched"].as_u64()?;
        (compared >= candidate["numbers"]["candidate"]["requests"].as_u64()? && compared >= 25)
            .then_some(canary)
    })
    .await
    .unwrap_or_else(|| panic!("copies never compared; log:\n{}", host.server.log()));
    assert_eq!(canary["candidate"]["shadow"]["matched"], 0, "{canary}");
    assert_eq!(
        upstream.hits(),
        30,
        "only the current's calls reach the upstream; {canary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_candidate_leaves_the_real_key_value_state_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("stateful.wasm");
    let bytes = guests::bytes(STATEFUL);
    std::fs::write(&app, &bytes).unwrap();
    let mut args = SHADOW.to_vec();
    args.extend([
        "--keyvalue",
        "memory",
        "--admin-addr",
        "127.0.0.1:0",
        "--canary-min-requests",
        "1000000",
        "--canary-max-error-increase",
        "1",
    ]);
    let server = Server::start_with_env(&app, &args, &[("HOTSWAP_ADMIN_TOKEN", "secret")]);
    let admin = server.admin.unwrap();
    let canary = || async { admin_json(admin, "GET", "/routes/index/canary").await.1 };
    deploy_atomic(&with_custom_section(&bytes, "build", b"2"), &app);
    eventually(Duration::from_secs(60), || async {
        canary().await["candidate"]["generation"].as_u64()
    })
    .await
    .unwrap_or_else(|| panic!("no candidate; log:\n{}", server.log()));
    // Forty increments, each copied: the real counter counts each request once.
    let mut client = Client::connect(server.addr).await.unwrap();
    for expected in 1..=40u64 {
        let reply = client
            .send("GET", "/kv/incr?key=visits", Vec::new())
            .await
            .unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, expected.to_string()),
            "log:\n{}",
            server.log()
        );
    }
    // A copy's delete stays in its scratch space too.
    let reply = client
        .send("GET", "/kv/set?key=kept&value=1", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let reply = client
        .send("GET", "/kv/delete?key=kept", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let copies = eventually(Duration::from_secs(10), || async {
        let n = canary().await["candidate"]["numbers"]["candidate"]["requests"].as_u64()?;
        (n >= 35).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("the copies never ran; log:\n{}", server.log()));
    let (code, _) = admin_json(admin, "POST", "/routes/index/canary/abort").await;
    assert_eq!(code, 200);
    let reply = client
        .send("GET", "/kv/get?key=visits", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.text(), "40", "{copies} copies ran");
    let reply = client
        .send("GET", "/kv/exists?key=kept", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.text(), "false");
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_copies_are_shed_first_when_the_route_nears_its_cap() {
    let host = shadow_host(World::P2, &["--max-concurrency", "4"]);
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    let numbers = || async {
        let canary = host.canary().await;
        let candidate = &canary["candidate"];
        (
            candidate["numbers"]["candidate"]["requests"]
                .as_u64()
                .unwrap(),
            candidate["shadow"]["not_copied"]["shed"].as_u64().unwrap(),
        )
    };
    // With permits to spare, the copies run.
    hit(host.server.addr, "/canary", 20, 1, &[]).await;
    let copied = eventually(Duration::from_secs(10), || async {
        let (copies, shed) = numbers().await;
        (copies >= 15).then_some((copies, shed))
    })
    .await
    .expect("copies ran");
    assert_eq!(copied.1, 0, "nothing shed with permits to spare");
    // The last copies (a millisecond each) have ended by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copied = numbers().await;
    // Three slow requests hold three of the four permits: a client's request takes the last
    // one, and no copy may take it from the next client.
    let addr = host.server.addr;
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { hotswap_tests::get(addr, "/late-log?ms=3000").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = std::time::Instant::now();
    let seen = hit(host.server.addr, "/canary", 20, 1, &[]).await;
    let (copies, shed) = numbers().await;
    assert!(
        busy.elapsed() < Duration::from_millis(2000),
        "the slow requests ended too soon"
    );
    all_served_by(&seen, 1);
    assert_eq!(copies, copied.0, "no copy ran while the route was busy");
    assert!(shed >= 15, "{shed} copies shed");
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().status, 200);
    }
    let samples = metrics::scrape(&host.server).await;
    let counted = metrics::value(
        &samples,
        "hotswap_canary_shadow_total",
        "index",
        &[("outcome", "shed")],
    );
    assert_eq!(counted, Some(shed as f64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_p3_shadow_candidate_with_reused_instances_is_judged_on_its_copies() {
    // The current generation serves from reused instances; each copy gets a fresh one of the
    // candidate, so a promotion could not hand the clients an instance set up for copies.
    let host = shadow_host(
        World::P3,
        &[
            "--canary-deterministic",
            "--canary-min-requests",
            "40",
            "--instance-reuse",
            "8",
        ],
    );
    assert_eq!(host.deploy_candidate("body").await, 2);
    let seen = hit(host.server.addr, "/canary", 40, 2, &[]).await;
    all_served_by(&seen, 1);
    let verdict = host.verdict().await;
    assert_eq!(
        (&verdict["decision"], &verdict["cause"]),
        (&"rolled_back".into(), &"errors".into()),
        "{verdict}"
    );
    assert!(verdict["shadow"]["body_mismatches"].as_u64().unwrap() >= 5);
    // A good one is promoted on its copies and then answers the clients.
    assert_eq!(host.deploy_candidate("ok2.").await, 3);
    hit(host.server.addr, "/canary", 80, 2, &[]).await;
    let verdict = host.verdict().await;
    assert_eq!(verdict["decision"], "promoted", "{verdict}");
    assert_eq!(verdict["generation"], 3, "{verdict}");
    let after = hit(host.server.addr, "/canary", 10, 1, &[]).await;
    assert!(after.iter().all(|s| s.generation == Some(3)), "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_read_for_a_copy_is_bounded_in_time() {
    // A client that declares a body it never finishes sending: the copy's read of it ends at
    // the request deadline with a 400, as the current's own read would end at it.
    let host = shadow_host(World::P2, &["--request-timeout", "1s"]);
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    let slow = b"POST /canary HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nonly ten b";
    let addr = host.server.addr;
    let sent: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                hotswap_tests::raw::exchange(addr, slow, Duration::from_secs(10))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut refused = 0;
    for outcome in sent {
        let outcome = outcome.await.unwrap();
        assert!(
            outcome.elapsed < Duration::from_secs(4),
            "answered after {:?}: {}",
            outcome.elapsed,
            outcome.text()
        );
        if outcome.status() == Some(400) {
            assert!(
                outcome
                    .text()
                    .contains("the request body could not be read")
            );
            refused += 1;
        }
    }
    // Each request is copied (so read first) 99 times in 100.
    assert!(refused >= 1, "log:\n{}", host.server.log());
    assert_eq!(
        host.canary().await["candidate"]["numbers"]["candidate"]["requests"],
        0
    );
}
