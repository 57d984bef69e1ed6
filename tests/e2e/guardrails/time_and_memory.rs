//! The request deadline (a spinning guest, a sleeping guest, a slow request body) and the
//! memory limit: each stops one request with its status and leaves the host serving, whichever
//! world the guest targets.

use super::*;

// ----- request deadline --------------------------------------------------------------------

/// Runs `world`'s misbehave `route` under a 2 s deadline while `/ok` is served on another
/// connection.
async fn deadline_stops(world: World, route: &'static str) {
    let deadline = Duration::from_secs(2);
    let mut server = world.misbehave(&["--request-timeout", "2s"]);
    let addr = server.addr;
    let started = Instant::now();
    let stuck = tokio::spawn(async move {
        let reply = get(addr, route).await;
        (reply, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile, other connections are served.
    for _ in 0..3 {
        let ok = get(addr, "/ok").await.unwrap();
        assert_eq!(ok.status, 200, "{world}: {}", ok.text());
    }
    assert!(
        !stuck.is_finished(),
        "{world}: {route} answered before its deadline"
    );

    let (reply, elapsed) = stuck.await.unwrap();
    let reply = reply.unwrap_or_else(|e| panic!("{world}: {route}: {e}; log:\n{}", server.log()));
    assert_eq!(reply.status, 504, "{world}: {route}: {}", reply.text());
    assert!(
        elapsed >= deadline - Duration::from_millis(100) && elapsed < deadline + MARGIN,
        "{world}: {route} answered after {elapsed:?}, deadline {deadline:?}"
    );
    assert!(
        reply.text().contains("deadline"),
        "{world}: {}",
        reply.text()
    );
    server
        .expect_log("deadline exceeded", Duration::from_secs(5))
        .await;
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_stops_a_spinning_guest_with_504() {
    both_worlds(async |world| deadline_stops(world, "/loop").await).await;
}

/// A guest spinning on the CPU yields at every epoch tick in a way that lets the runtime poll
/// its sockets, so other clients are answered within a few ticks even on a host with a single
/// worker thread (one CPU), not only when the spinner's deadline ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_leaves_room_for_other_clients_on_a_single_worker_thread() {
    let mut server = Server::start_with_env(
        Path::new(MISBEHAVE),
        &["--request-timeout", "15s"],
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    let addr = server.addr;
    let stuck = tokio::spawn(async move { get(addr, "/loop").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    for _ in 0..5 {
        let ok = get(addr, "/ok").await.unwrap();
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    let took = started.elapsed();
    assert!(!stuck.is_finished(), "the spinner ended early");
    // Each of the five needs a few 10 ms ticks; starved, each waited for tokio's I/O check every
    // 61st task poll, i.e. 61 of the spinner's slices (over half a second).
    assert!(
        took < Duration::from_millis(1500),
        "5 requests beside a spinning guest took {took:?}"
    );
    stuck.abort();
    assert_healthy(&mut server).await;
}

/// A 0.2 guest blocks on a clock's pollable, a 0.3 guest awaits `wait-for`: either waits in the
/// host, never to wake in time.
#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_stops_a_sleeping_guest_with_504() {
    both_worlds(async |world| deadline_stops(world, "/sleep-forever").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_body_is_cut_at_the_request_deadline() {
    // A client that promises 1000 bytes and sends 5 must not hold the only slot forever.
    let server = example(&[
        "--request-timeout",
        "1s",
        "--max-concurrency",
        "1",
        "--queue-timeout",
        "10s",
    ]);
    let outcome = raw::exchange(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nhello",
        Duration::from_secs(1) + MARGIN + Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(
        outcome.closed,
        "the stalled upload was still open after {:?}: {:?}",
        outcome.elapsed,
        outcome.text()
    );
    assert!(
        outcome.elapsed < Duration::from_secs(1) + MARGIN,
        "closed after {:?}",
        outcome.elapsed
    );
    // guest-example echoes as it reads: a 504, or a 200 whose chunked body was cut (no last
    // chunk), never a response that looks complete.
    match outcome.status() {
        Some(504) | None => {}
        Some(200) => assert!(
            !outcome.text().ends_with("\r\n0\r\n\r\n"),
            "a cut upload looks echoed whole: {}",
            outcome.text()
        ),
        Some(other) => panic!("status {other}: {}", outcome.text()),
    }
    // The slot is free again.
    let started = Instant::now();
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for the slot",
        started.elapsed()
    );
}

// ----- memory ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_gets_500_and_the_log_names_the_memory_limit() {
    both_worlds(async |world| {
        let mut server = world.misbehave(&["--max-memory", "16MiB"]);
        let started = Instant::now();
        let reply = get(server.addr, "/alloc").await.unwrap();
        assert_eq!(reply.status, 500, "{world}: {}", reply.text());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{world}: took {:?}",
            started.elapsed()
        );
        assert!(
            reply.text().contains("memory limit"),
            "{world}: {}",
            reply.text()
        );
        server
            .expect_log("memory limit", Duration::from_secs(5))
            .await;
        assert_healthy(&mut server).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_memory_hogs_keep_host_rss_bounded() {
    // Each /alloc fills 64 MiB of guest memory; if freed instances kept their pages, 20 of
    // them would hold over 1 GiB.
    let mut server = misbehave(&["--max-memory", "64MiB"]);
    let baseline = server.rss_bytes();
    let mut peak = baseline;
    let started = Instant::now();
    for i in 0..20 {
        let reply = get(server.addr, "/alloc").await.unwrap();
        assert_eq!(reply.status, 500, "round {i}: {}", reply.text());
        peak = peak.max(server.rss_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "20 rounds took too long"
        );
    }
    let mib = |b: u64| b >> 20;
    eprintln!(
        "host RSS: {} MiB at start, {} MiB at peak",
        mib(baseline),
        mib(peak)
    );
    assert!(
        peak < 400 << 20,
        "host RSS grew from {} MiB to {} MiB over 20 memory hogs",
        mib(baseline),
        mib(peak)
    );
    assert_healthy(&mut server).await;
}
