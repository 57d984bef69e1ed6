//! Serving guest-example: routes, bodies, protocols, and life without a component; and fresh
//! guest memory for every request, in either world.

use hotswap_tests::guests::{self, GUEST_EXAMPLE};
use hotswap_tests::server::run_to_exit;
use hotswap_tests::worlds::{World, both_worlds};
use hotswap_tests::{Client, Server, deploy_atomic, eventually, get, post};
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn serves_greeting_with_version_and_generation_one() {
    let server = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text()
            .starts_with("hello from hotswap guest-example version "),
        "{}",
        reply.text()
    );
    assert_eq!(reply.generation(), Some(1));
    server
        .expect_log("loaded generation 1", std::time::Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_round_trips_one_mebibyte_byte_exact() {
    let server = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let body: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let reply = post(server.addr, "/echo", body.clone()).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), body.len());
    assert!(reply.body == body, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_http2_cleartext_and_keeps_connections_alive() {
    let server = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let mut h2 = Client::connect_h2(server.addr).await.unwrap();
    let mut h1 = Client::connect(server.addr).await.unwrap();
    for _ in 0..5 {
        assert_eq!(h2.get("/").await.unwrap().status, 200);
        assert_eq!(h1.get("/").await.unwrap().status, 200);
    }
    assert_eq!(h2.get("/no-such-route").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_component_answers_503_until_a_valid_one_lands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    let server = Server::start(&path, &["--debounce", "50ms"]);
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.text().contains("does not exist"), "{}", reply.text());

    deploy_atomic(&guests::bytes(GUEST_EXAMPLE), &path);
    let reply = eventually(Duration::from_secs(20), || async {
        get(server.addr, "/").await.ok().filter(|r| r.status == 200)
    })
    .await
    .expect("the component that appeared is served");
    assert_eq!(reply.generation(), Some(1));
}

#[test]
fn require_component_fails_startup_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.wasm");
    let out = run_to_exit(
        &[
            "serve",
            missing.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--require-component",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(
        !out.stdout.contains("Serving HTTP"),
        "must fail before binding: {}",
        out.stdout
    );

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let out = run_to_exit(
        &[
            "serve",
            garbage.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--require-component",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("not a WebAssembly file"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_flags_are_reported_before_binding() {
    let out = run_to_exit(
        &[
            "serve",
            GUEST_EXAMPLE,
            "--addr",
            "127.0.0.1:0",
            "--max-concurrency",
            "0",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("--max-concurrency"), "{}", out.stderr);
    let out = run_to_exit(
        &["serve", GUEST_EXAMPLE, "--debounce", "soon"],
        Duration::from_secs(30),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        out.stderr.contains("invalid duration `soon`"),
        "{}",
        out.stderr
    );
    let out = run_to_exit(&["serve", "/no/such/dir/app.wasm"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

/// Instance slots are reused and the pages a guest dirtied are reset in place, not handed back
/// to the kernel: whatever one request writes (a static, freshly grown memory, pages of its
/// memory image in more separate runs than one page scan reports) must be gone for the next,
/// on the same connection and across concurrent ones, whichever world the guest targets.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_starts_from_fresh_guest_memory() {
    both_worlds(async |world| {
        let server = world.misbehave(&[]);
        let mut client = Client::connect(server.addr).await.unwrap();
        for i in 0..30 {
            let reply = client.get("/leftovers").await.unwrap();
            assert_eq!(reply.status, 200, "{world}: request {i}: {}", reply.text());
            assert_eq!(reply.text(), "count=0 dirty=0", "{world}: request {i}");
            // Only misbehave (0.2) has `/scatter`.
            if world == World::P2 {
                let reply = client.get("/scatter").await.unwrap();
                assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
                assert_eq!(reply.text(), "runs=72 changed=0", "request {i}");
            }
        }
        for round in 0..5 {
            let addr = server.addr;
            let replies: Vec<_> = (0..8)
                .map(|_| tokio::spawn(async move { get(addr, "/leftovers").await }))
                .collect();
            for reply in replies {
                let reply = reply.await.unwrap().unwrap();
                assert_eq!(reply.text(), "count=0 dirty=0", "{world}: round {round}");
            }
        }
    })
    .await;
}
