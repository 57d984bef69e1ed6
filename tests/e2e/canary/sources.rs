//! Every source of a new generation makes a candidate, and an operator's reload says what it
//! did to the running canary: an upload, SIGHUP, `POST /reload` (file drops and registry tags
//! are in `split`); a promotion tells dev mode's event stream that new code serves.

use super::{Host, admin_json};
use hotswap_tests::guests::canary_build;
use hotswap_tests::sse::EventReader;
use hotswap_tests::worlds::World;
use hotswap_tests::{Client, eventually};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn uploads_and_sighup_make_candidates_and_say_what_they_did_to_the_canary() {
    // Without a watcher, only an upload, SIGHUP or `POST /reload` brings new bytes.
    let host = Host::start(
        World::P2,
        &[
            "--no-watch",
            "--canary-weight",
            "50",
            "--canary-min-requests",
            "1000000",
        ],
    );
    let admin = host.server.admin.unwrap();
    let mut client = Client::connect(admin).await.unwrap();
    let upload = client
        .send_with(
            "PUT",
            "/component",
            &[("authorization", "Bearer secret")],
            canary_build(World::P2.misbehave_guest(), "ok2."),
        )
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&upload.text()).unwrap();
    assert_eq!(upload.status, 200, "{report}");
    assert_eq!(
        (&report["result"], &report["generation"]),
        (&"loaded".into(), &2.into()),
        "{report}"
    );
    assert_eq!(
        report["canary"],
        "generation 2 runs as the canary candidate beside generation 1"
    );
    assert_eq!(host.canary().await["candidate"]["generation"], 2);

    // New bytes on disk, then SIGHUP: they replace the running candidate.
    std::fs::write(&host.app, canary_build(World::P2.misbehave_guest(), "ok3.")).unwrap();
    host.server.signal(libc::SIGHUP);
    let replaced = eventually(Duration::from_secs(60), || async {
        (host.canary().await["candidate"]["generation"] == 3).then_some(())
    })
    .await;
    assert!(replaced.is_some(), "log:\n{}", host.server.log());
    host.server
        .expect_log(
            "canary: dropped candidate generation 2 before a verdict",
            Duration::from_secs(5),
        )
        .await;

    // The same bytes again: the candidate runs on, and both SIGHUP and `POST /reload` say so.
    host.server.signal(libc::SIGHUP);
    host.server
        .expect_log(
            "component unchanged: generation 3 runs on as the canary candidate",
            Duration::from_secs(10),
        )
        .await;
    let (code, report) = admin_json(admin, "POST", "/reload").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["result"], "unchanged", "{report}");
    assert_eq!(
        report["canary"],
        "generation 3 runs on as the canary candidate"
    );
    let canary = host.canary().await;
    assert_eq!(
        (&canary["current"], &canary["candidate"]["generation"]),
        (&1.into(), &3.into()),
        "{canary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_tells_the_dev_event_stream_and_a_candidate_does_not() {
    let host = Host::start(
        World::P2,
        &["--canary-weight", "50", "--canary-min-requests", "1000000"],
    );
    let mut stream = EventReader::open(host.server.addr, "/_hotswap/events")
        .await
        .unwrap();
    assert_eq!(host.deploy_candidate("ok2.").await, 2);
    // A candidate serves only its share: a page is not told to reload for it.
    let (serving, _) = stream
        .next_named("serving", Duration::from_millis(500))
        .await;
    assert!(serving.is_none(), "{serving:?}");
    let (code, answer) = admin_json(
        host.server.admin.unwrap(),
        "POST",
        "/routes/index/canary/promote",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let (serving, before) = stream.next_named("serving", Duration::from_secs(5)).await;
    let serving = serving.unwrap_or_else(|| panic!("no serving event: {before:?}"));
    assert_eq!(serving.data["generation"], 2, "{}", serving.data);
    assert_eq!(serving.data["trigger"], "canary", "{}", serving.data);
}
