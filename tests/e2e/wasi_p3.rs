//! WASI 0.3 guests (`wasi:http/service`, exporting `wasi:http/handler@0.3`), on `misbehave-p3`,
//! the 0.3 twin of `misbehave`: what is 0.3's own (the world named in the log, `/status` and
//! metrics, streamed echoes, error codes, the drain and swaps of 0.3 requests, instance reuse),
//! and one host swapping between the worlds under load. The guardrails both worlds share (the
//! deadline, the memory limit, traps, the concurrency cap, body and header limits, outbound
//! HTTP, the environment, guest output, fresh memory) are tests run over both worlds, in
//! `guardrails`, `client_limits` and `core_serving`.

use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE_P3};
use hotswap_tests::health::assert_healthy;
use hotswap_tests::waits::{MARGIN, wait_for_generation};
use hotswap_tests::{Client, Server, deploy_atomic, get, metrics, noise, post};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn p3(args: &[&str]) -> Server {
    Server::start(Path::new(MISBEHAVE_P3), args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_p3_component_is_served_and_named_as_such() {
    let server = p3(&["--admin-addr", "127.0.0.1:0"]);
    let reply = get(server.addr, "/world").await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "wasi:http@0.3")
    );
    assert_eq!(reply.generation(), Some(1));
    server
        .expect_log("wasi:http@0.3", Duration::from_secs(5))
        .await;

    let admin = server.admin.unwrap();
    let status = get(admin, "/status").await.unwrap().text();
    assert!(status.contains("\"world\": \"wasi:http@0.3\""), "{status}");
    let text = get(admin, "/metrics").await.unwrap().text();
    let world = metrics::parse(&text)
        .into_iter()
        .find(|s| s.name == "hotswap_serving_world")
        .unwrap_or_else(|| panic!("no hotswap_serving_world; metrics:\n{text}"));
    assert_eq!(world.label("world"), Some("wasi:http@0.3"), "{text}");
    assert_eq!(world.value, 1.0);
    // The request counter counts 0.3 requests like any other.
    assert!(
        text.contains(
            "hotswap_requests_total{route=\"index\",status_class=\"2xx\",generation=\"1\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn p3_echo_is_byte_exact_and_big_bodies_stream() {
    let server = p3(&[]);
    for len in [0, 1, 100 << 10, 3 << 20] {
        let body = noise(len as u64, len);
        let reply = post(server.addr, "/echo", body.clone()).await.unwrap();
        assert_eq!(reply.status, 200, "{len} bytes: {}", reply.text());
        assert!(
            reply.body == body,
            "{len} bytes: the echo differs ({} bytes back)",
            reply.body.len()
        );
    }
    let reply = get(server.addr, "/big?n=10485760").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 10 << 20);
    assert!(reply.body.iter().all(|&b| b == b'x'));
}

/// A 0.3 guest can return an error code instead of a response (0.2's `ResponseOutparam::set`
/// with an error is in `client_limits`): a 500 too.
#[tokio::test(flavor = "multi_thread")]
async fn a_p3_error_code_instead_of_a_response_is_a_500() {
    let mut server = p3(&[]);
    let reply = get(server.addr, "/error-code").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(reply.text().contains("InternalError"), "{}", reply.text());
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_p3_requests_in_flight() {
    let mut server = p3(&["--shutdown-timeout", "10s"]);
    let addr = server.addr;
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "/late-log?ms=1500&head=first").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(libc::SIGTERM);
    for task in slow {
        let reply = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log()));
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, "started\ndone\n")
        );
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    server
        .expect_log("3 request(s) drained", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_p3_request_in_flight_across_a_swap_finishes_on_its_own_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::bytes(MISBEHAVE_P3)).unwrap();
    let server = Server::start(&path, &["--debounce", "50ms"]);
    let addr = server.addr;
    let slow = tokio::spawn(async move { get(addr, "/late-log?ms=3000&head=first").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    deploy_atomic(&guests::bytes(GUEST_EXAMPLE), &path);
    let fresh = wait_for_generation(&server, 2).await;
    assert!(fresh.text().contains("version"), "{}", fresh.text());
    assert!(
        !slow.is_finished(),
        "the 0.3 request should still be running"
    );
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.generation(), Some(1));
    assert_eq!(slow.text(), "started\ndone\n");
}

/// One host swaps 0.2 → 0.3 → 0.2 … under load: no request fails, and every response is whole
/// and from the world its generation speaks.
#[tokio::test(flavor = "multi_thread")]
async fn swaps_across_worlds_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    let worlds = [guests::bytes(GUEST_EXAMPLE), guests::bytes(MISBEHAVE_P3)];
    std::fs::write(&path, &worlds[0]).unwrap();
    let server = Server::start(&path, &["--debounce", "50ms"]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            let body = noise(c as u64, 1000 + c * 4096);
            let (mut seen, mut failures) = (Vec::new(), Vec::new());
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match client.send("POST", "/echo", body.clone()).await {
                    Ok(r) if r.status == 200 && r.body == body => {
                        seen.push(r.generation().unwrap_or(0))
                    }
                    Ok(r) => failures.push(format!("status {} ({} bytes)", r.status, r.body.len())),
                    Err(e) => {
                        failures.push(e);
                        client = Client::connect(addr).await.unwrap();
                    }
                }
                // Which world answered: guest-example's `/` names a version, misbehave-p3's
                // `/world` its world; generation g is 0.2 when odd, 0.3 when even.
                if let Ok(r) = client.get("/world").await {
                    let g = r.generation().unwrap_or(0);
                    let p3 = r.status == 200 && r.text() == "wasi:http@0.3";
                    if g % 2 == 0 && !p3 || g % 2 == 1 && p3 {
                        failures.push(format!(
                            "generation {g} answered /world with {:?}",
                            r.text()
                        ));
                    }
                }
            }
            (seen, failures)
        }));
    }
    for swap in 0..6u64 {
        deploy_atomic(&worlds[((swap + 1) % 2) as usize], &path);
        wait_for_generation(&server, swap + 2).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut by_world = [0usize; 2];
    for client in clients {
        let (seen, failures) = client.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed requests: {failures:?}; log:\n{}",
            server.log()
        );
        for g in &seen {
            by_world[(g % 2) as usize] += 1;
        }
        total += seen.len();
    }
    eprintln!(
        "{total} echoes: {} on 0.3 generations, {} on 0.2",
        by_world[0], by_world[1]
    );
    assert!(
        by_world[0] > 0 && by_world[1] > 0,
        "both worlds served: {by_world:?}"
    );
    assert_eq!(get(addr, "/").await.unwrap().generation(), Some(7));
}

// ----- instance reuse (opt-in) ---------------------------------------------------------------

/// `reused_instances` of generation `n` in the admin `/status`.
async fn reused_instances(admin: std::net::SocketAddr, n: u64) -> Option<u64> {
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.ok()?.body).ok()?;
    let routes = status["routes"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![status.clone()]);
    routes.iter().find_map(|route| {
        route["history"]
            .as_array()?
            .iter()
            .find(|g| g["generation"] == n)?["reused_instances"]
            .as_u64()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_reuse_shares_instances_within_a_generation_and_never_across_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    let v1 = guests::bytes(MISBEHAVE_P3);
    std::fs::write(&path, &v1).unwrap();
    let server = Server::start(
        &path,
        &[
            "--debounce",
            "50ms",
            "--instance-reuse",
            "128",
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    let admin = server.admin.unwrap();
    // One after another: each request finds the instance the one before it used.
    let mut client = Client::connect(server.addr).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let reply = client.get("/leftovers").await.unwrap();
        assert_eq!(reply.generation(), Some(1));
        counts.push(reply.text());
    }
    assert_eq!(counts[0], "count=0 dirty=0", "{counts:?}");
    assert!(
        counts[4].starts_with("count=4 "),
        "the instance was not reused: {counts:?}"
    );
    assert_eq!(reused_instances(admin, 1).await, Some(1));

    // A request in flight on generation 1's instance when the swap lands.
    let addr = server.addr;
    let slow = tokio::spawn(async move { get(addr, "/late-log?ms=2000&head=first").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    deploy_atomic(&hotswap_tests::with_custom_section(&v1, "v2", b"2"), &path);
    wait_for_generation(&server, 2).await;
    // New requests never reach generation 1's instance: a fresh count on generation 2.
    let reply = client.get("/leftovers").await.unwrap();
    assert_eq!(
        (reply.generation(), reply.text().as_str()),
        (Some(2), "count=0 dirty=0")
    );
    assert_eq!(reused_instances(admin, 2).await, Some(1));
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(
        (slow.generation(), slow.text().as_str()),
        (Some(1), "started\ndone\n")
    );
    // Once its request has ended, generation 1's instance is dropped (well before the idle
    // timeout would have dropped it).
    let dropped = hotswap_tests::eventually(Duration::from_secs(5), || async {
        (reused_instances(admin, 1).await == Some(0)).then_some(())
    })
    .await;
    assert!(
        dropped.is_some(),
        "generation 1's reused instance was never dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_reuse_serves_concurrent_requests_on_few_instances() {
    let server = p3(&[
        "--instance-reuse",
        "1000",
        "--instance-reuse-concurrency",
        "16",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    let addr = server.addr;
    let tasks: Vec<_> = (0..32)
        .map(|_| tokio::spawn(async move { get(addr, "/late-log?ms=300").await }))
        .collect();
    let peak = {
        tokio::time::sleep(Duration::from_millis(150)).await;
        reused_instances(server.admin.unwrap(), 1).await.unwrap()
    };
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "ok"));
    }
    // 32 requests waiting at once, up to 16 to an instance: fewer instances than requests.
    // (How few depends on timing: a worker takes a second request only once its first has
    // yielded, as in `wasmtime serve`.)
    eprintln!("{peak} reused instances for 32 concurrent requests");
    assert!(
        (1..32).contains(&peak),
        "{peak} instances for 32 concurrent requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_instance_past_its_deadline_answers_504_and_the_next_request_is_served() {
    let timeout = Duration::from_secs(3);
    let mut server = p3(&["--instance-reuse", "128", "--request-timeout", "3s"]);
    for route in ["/loop", "/sleep-forever"] {
        let started = Instant::now();
        let reply = get(server.addr, route).await.unwrap();
        assert_eq!(reply.status, 504, "{route}: {}", reply.text());
        assert!(
            started.elapsed() < timeout + MARGIN,
            "{route}: {:?}",
            started.elapsed()
        );
        // The expired request's instance lives on until its guest is stopped; the next
        // requests do not wait for that (they once did, queued behind it).
        let started = Instant::now();
        assert_healthy(&mut server).await;
        assert!(
            started.elapsed() < timeout / 2,
            "after {route}, /ok waited {:?}",
            started.elapsed()
        );
    }
    // A trap on a reused instance fails its request (500) and the next one gets a new instance;
    // neither waits for the instances stopped above.
    let started = Instant::now();
    let reply = get(server.addr, "/trap-before").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    let reply = get(server.addr, "/leftovers").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_healthy(&mut server).await;
    assert!(
        started.elapsed() < timeout / 2,
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_reuse_is_refused_when_out_of_range_and_leaves_p2_guests_fresh() {
    for (flag, value) in [
        ("--instance-reuse", "0"),
        ("--instance-reuse-concurrency", "0"),
    ] {
        let out = hotswap_tests::server::run_to_exit(
            &["serve", MISBEHAVE_P3, flag, value],
            Duration::from_secs(30),
        );
        assert!(!out.status.success());
        assert!(out.stderr.contains(flag), "{flag}: {}", out.stderr);
    }
    // The environment twin and the file key turn it on as the flag does.
    async fn third_count(addr: std::net::SocketAddr) -> String {
        let mut client = Client::connect(addr).await.unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            last = client.get("/leftovers").await.unwrap().text();
        }
        last
    }
    let env = Server::start_with_env(
        Path::new(MISBEHAVE_P3),
        &[],
        &[("HOTSWAP_INSTANCE_REUSE", "8")],
    );
    let third = third_count(env.addr).await;
    assert!(third.starts_with("count=2 "), "{third}");
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hotswap.toml");
    let file = format!("[component]\npath = {MISBEHAVE_P3:?}\n[limits]\ninstance_reuse = 8\n");
    std::fs::write(&toml, file).unwrap();
    let from_file = Server::launch(&["--config", toml.to_str().unwrap()], &[], None);
    let third = third_count(from_file.addr).await;
    assert!(third.starts_with("count=2 "), "{third}");

    // A 0.2 guest cannot serve two requests on one instance: it keeps a fresh one each.
    let server = Server::start(
        Path::new(hotswap_tests::guests::MISBEHAVE),
        &["--instance-reuse", "128"],
    );
    for _ in 0..3 {
        assert_eq!(
            get(server.addr, "/leftovers").await.unwrap().text(),
            "count=0 dirty=0"
        );
    }
}
