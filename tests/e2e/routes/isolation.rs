//! One route's trouble stays its own: a spinning guest leaves the other routes' latency (and
//! its own route's other requests) alone; a failing build and a trap storm on one route leave
//! the other serving (on the repository's own example).

use super::*;

// ----- isolation ----------------------------------------------------------------------------

/// Timing-sensitive: ignored in the parallel run, run on its own by `scripts/test.sh`
/// (`--ignored --test-threads=1`), so no other test's server shares the machine meanwhile.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the machine to itself: scripts/test.sh runs it alone"]
async fn a_spinning_route_leaves_the_other_routes_latency_alone() {
    // Alone: no other test of this module runs servers meanwhile.
    let _alone = QUIET.write().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "loop.wasm", &guests::bytes(MISBEHAVE));
    write(dir.path(), "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    let toml = dir.path().join("hotswap.toml");
    std::fs::write(
        &toml,
        "[[route]]\nprefix = \"/loop\"\npath = \"loop.wasm\"\nmax_concurrency = 2\n\
         request_timeout = \"2s\"\nqueue_timeout = \"200ms\"\n\n\
         [[route]]\nprefix = \"/\"\npath = \"index.wasm\"\n",
    )
    .unwrap();
    // The server on CPU 0 (one worker thread: the spinners hold more slots than it has
    // threads, the worst case), the test's client free to run on the others: the latency
    // measured is the host's scheduling between routes, not the kernel's sharing of one core
    // between the host and this test.
    let server = Server::launch_on(
        server_cpu(),
        &[
            "--config",
            toml.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        Some(dir.path()),
    );
    let addr = server.addr;

    let measure = |addr| latencies(addr, "/");

    /// Saturates /loop: four clients for two slots, each asking again as soon as it is
    /// answered, until `stop`; their answers.
    fn spin(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Answer>> {
        tokio::spawn(async move {
            let mut answers = Vec::new();
            // Bounded: at most 500 requests (each takes ≥ 200 ms) or until told to stop.
            for _ in 0..500 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get(addr, "/loop").await {
                    Ok(reply) => answers.push((
                        reply.status.as_u16(),
                        reply.header("retry-after").map(str::to_string),
                        reply.text(),
                    )),
                    Err(e) => answers.push((0, None, e)),
                }
            }
            answers
        })
    }
    type Answer = (u16, Option<String>, String);

    // Three rounds of alone, then beside the spinners; each side's p99 is the median of its
    // rounds, so one burst of noise on a shared VM does not decide the outcome.
    let (mut alone_p99s, mut loaded_p99s) = (Vec::new(), Vec::new());
    let (mut alone, mut loaded) = (Vec::new(), Vec::new());
    let mut peak_in_flight: f64 = 0.0;
    let mut answers: Vec<Answer> = Vec::new();
    for round in 0..3 {
        alone = measure(addr).await;
        alone_p99s.push(p99(&mut alone));

        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..4).map(|_| spin(addr, stop.clone())).collect();
        // Both slots spinning: the route's in-flight gauge shows them.
        let saturated = eventually(Duration::from_secs(10), || async {
            let samples = scrape(&server).await;
            (value(&samples, "hotswap_requests_in_flight", "loop", &[]) == Some(2.0)).then_some(())
        })
        .await;
        assert!(
            saturated.is_some(),
            "the /loop route never had 2 requests in flight; log:\n{}",
            server.log()
        );

        loaded = measure(addr).await;
        loaded_p99s.push(p99(&mut loaded));
        for _ in 0..5 {
            let samples = scrape(&server).await;
            let n = value(&samples, "hotswap_requests_in_flight", "loop", &[]).unwrap_or(0.0);
            peak_in_flight = peak_in_flight.max(n);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round == 0 {
            // Long enough for every spinner to have been refused at least once or timed out.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for spinner in spinners {
            answers.extend(spinner.await.unwrap());
        }
        // The spinning guests end at their deadline: alone again.
        let idle = eventually(Duration::from_secs(10), || async {
            let samples = scrape(&server).await;
            (value(&samples, "hotswap_requests_in_flight", "loop", &[]) == Some(0.0)).then_some(())
        })
        .await;
        assert!(
            idle.is_some(),
            "/loop never drained; log:\n{}",
            server.log()
        );
    }
    let alone_p99 = median(&mut alone_p99s);
    let loaded_p99 = median(&mut loaded_p99s);

    // 3×, not 2×: the same host measured 2.05× on one VM and 2.19× / 2.46× on another (alone
    // p99 2.2–2.4 ms there, a noisier machine). What this guards against, guests that never
    // yield before their 10 ms slice ends, measured 45 ms against 5.7 ms alone (7.9×).
    let budget = latency_budget(alone_p99);
    let pct = |d: &[Duration], p: usize| d[(d.len() * p).div_ceil(100).max(1) - 1];
    eprintln!(
        "GET / alone: p50 {:?} p90 {:?} p99 {alone_p99:?} (rounds {alone_p99s:?}) max {:?}; \
         beside a saturated spinning route: p50 {:?} p90 {:?} p99 {loaded_p99:?} (rounds \
         {loaded_p99s:?}) max {:?} (budget {budget:?})",
        pct(&alone, 50),
        pct(&alone, 90),
        alone[alone.len() - 1],
        pct(&loaded, 50),
        pct(&loaded, 90),
        loaded[loaded.len() - 1],
    );
    assert!(
        loaded_p99 <= budget,
        "GET / p99 went from {alone_p99:?} alone to {loaded_p99:?} beside the spinning route \
         (budget {budget:?})"
    );
    assert!(
        peak_in_flight <= 2.0,
        "in flight on /loop: {peak_in_flight}"
    );

    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    let timed_out = answers.iter().filter(|(s, _, _)| *s == 504).count();
    assert!(
        !refused.is_empty(),
        "no /loop request beyond the cap got 503: {answers:?}"
    );
    assert!(
        timed_out >= 2,
        "the spinners were not stopped at 2 s: {answers:?}"
    );
    for (status, _, body) in &answers {
        assert!(
            matches!(status, 503 | 504),
            "a /loop request got {status}: {body}"
        );
    }
    for (_, retry_after, body) in refused {
        assert!(retry_after.is_some(), "a 503 without Retry-After: {body}");
    }
}

/// A request of a route that spins (here for 3 s) delays that same route's other requests by
/// no more than it would another route's: once it has run a while it yields at every tick,
/// although one route having all the traffic gives its requests long slices. Pinned to one CPU
/// (one worker thread) and run alone like the test above.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the machine to itself: scripts/test.sh runs it alone"]
async fn a_spinning_request_leaves_its_own_routes_other_requests_latency_alone() {
    let _alone = QUIET.write().await;
    let dir = tempfile::tempdir().unwrap();
    let component = write(dir.path(), "misbehave.wasm", &guests::bytes(MISBEHAVE));
    let server = Server::launch_on(
        server_cpu(),
        &[
            component.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "3s",
        ],
        &[],
        Some(dir.path()),
    );
    let addr = server.addr;
    let in_flight = |samples: &[Sample]| value(samples, "hotswap_requests_in_flight", "index", &[]);

    let (mut alone_p99s, mut loaded_p99s) = (Vec::new(), Vec::new());
    let mut spun = Vec::new();
    for _ in 0..3 {
        let mut alone = latencies(addr, "/ok").await;
        alone_p99s.push(p99(&mut alone));

        let spinners: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { get(addr, "/loop").await }))
            .collect();
        let spinning = eventually(Duration::from_secs(10), || async {
            (in_flight(&scrape(&server).await) == Some(2.0)).then_some(())
        })
        .await;
        assert!(
            spinning.is_some(),
            "the spinners never ran; log:\n{}",
            server.log()
        );
        // Past their first long slices: spinners now.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut loaded = latencies(addr, "/ok").await;
        loaded_p99s.push(p99(&mut loaded));
        for spinner in spinners {
            spun.push(spinner.await.unwrap().map(|reply| reply.status.as_u16()));
        }
    }
    let (alone_p99, loaded_p99) = (median(&mut alone_p99s), median(&mut loaded_p99s));
    // 3×: with the two spinners yielding at every tick, a GET /ok gets a fair third of the one
    // core while it runs, so up to 3x is sharing, not the spinners holding the core. (With the spinners on
    // one route's long slices instead, 10 ms a turn, it measured 23x: 22.6 ms against 0.97 ms.)
    // 2x here failed on a slow VM at 2.1x (9.8 ms against 4.6 ms alone).
    let budget = latency_budget(alone_p99);
    eprintln!(
        "GET /ok p99 alone {alone_p99:?} (rounds {alone_p99s:?}), beside two spinning requests \
         of its route {loaded_p99:?} (rounds {loaded_p99s:?}), budget {budget:?}"
    );
    assert!(
        loaded_p99 <= budget,
        "GET /ok p99 went from {alone_p99:?} alone to {loaded_p99:?} beside two spinning \
         requests of its own route (budget {budget:?})"
    );
    // The spinners were stopped at their deadline, not let run.
    assert!(spun.iter().all(|s| *s == Ok(504)), "{spun:?}");
}

// ----- one route's trouble, the repository's own example ------------------------------------

/// Lines of the log that mention `needle` and name `route`.
fn route_lines(server: &Server, needle: &str, route: &str) -> usize {
    server
        .log()
        .lines()
        .filter(|l| l.contains(needle) && mentions_route(l, route))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_build_and_a_trap_storm_on_one_route_leave_the_other_alone() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bad-src")).unwrap();
    std::fs::write(dir.path().join("bad-src/lib.rs"), "// v1\n").unwrap();
    write(dir.path(), "misbehave.wasm", &guests::bytes(MISBEHAVE));
    write(dir.path(), "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    // The /trap-before route builds by copying, and fails once `broken` exists.
    std::fs::write(
        dir.path().join("hotswap.toml"),
        "[[route]]\nprefix = \"/trap-before\"\nname = \"bad\"\npath = \"out/bad.wasm\"\n\n\
         [route.build]\ncmd = \"if [ -e broken ]; then echo 'error[E0308]: mismatched types' >&2; exit 1; fi; \
         mkdir -p out; cp misbehave.wasm out/bad.wasm\"\ndir = \".\"\nwatch = [\"bad-src\"]\n\
         delay = \"50ms\"\n\n[[route]]\nprefix = \"/\"\npath = \"index.wasm\"\n",
    )
    .unwrap();
    let server = Server::launch(
        &["--config", "hotswap.toml", "--admin-addr", "127.0.0.1:0"],
        &[],
        Some(dir.path()),
    );
    expect_served(&server, "/", "index", 1).await;

    // A trap storm on one route: every request a 500 there, while the other serves 200s.
    let mut bad = Client::connect(server.addr).await.unwrap();
    let mut good = Client::connect(server.addr).await.unwrap();
    for i in 0..100 {
        let reply = bad.get("/trap-before").await.unwrap();
        assert_eq!(reply.status, 500, "trap {i}: {}", reply.text());
        assert_eq!(route_of(&reply), Some("bad"));
        let reply = good.get("/").await.unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(reply.generation(), Some(1));
    }
    let samples = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "bad",
            &[("kind", "trap")]
        ),
        Some(100.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "index",
            &[("kind", "trap")]
        ),
        None,
        "the index route never trapped: {samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_requests_total",
            "index",
            &[("status_class", "2xx")]
        ),
        Some(101.0),
        "{samples:#?}"
    );

    // A failing build on that route: its compiler output in the log, both routes as they were.
    std::fs::write(dir.path().join("broken"), "").unwrap();
    std::fs::write(dir.path().join("bad-src/lib.rs"), "// v2, broken\n").unwrap();
    let failed = eventually(SWAP_WAIT, || async {
        (route_lines(&server, "build failed", "bad") == 1).then_some(())
    })
    .await;
    assert!(failed.is_some(), "no failed build; log:\n{}", server.log());
    assert!(
        server.log().contains("mismatched types"),
        "the compiler's output is logged: {}",
        server.log()
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(bad.get("/trap-before").await.unwrap().generation(), Some(1));
    let reply = good.get("/").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.generation()), (200, Some(1)));
    let samples = scrape(&server).await;
    assert_eq!(
        value(
            &samples,
            "hotswap_builds_total",
            "bad",
            &[("result", "failed")]
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        route_lines(&server, "building", "index"),
        0,
        "the index route has no build; log:\n{}",
        server.log()
    );
}

/// The repository's own `hotswap.toml` (what `cargo run --release` serves): guest-api at `/api`
/// and guest-example at `/`, each built at startup, and a save under one guest's sources
/// rebuilds that guest alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_repositorys_hotswap_toml_serves_two_routes_each_rebuilt_on_its_own() {
    let _shared = QUIET.read().await;
    let root = Path::new(guests::ROOT);
    let cache = tempfile::tempdir().unwrap();
    // Flags beat the file: a free port for both listeners.
    let server = Server::launch(
        &[
            "--config",
            "hotswap.toml",
            "--admin-addr",
            "127.0.0.1:0",
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ],
        &[],
        Some(root),
    );
    let api = expect_served(&server, "/api", "api", 1).await;
    assert!(api.text().contains("\"service\":\"api\""), "{}", api.text());
    let index = expect_served(&server, "/", "index", 1).await;
    assert!(
        index.text().contains("hello from hotswap guest-example"),
        "{}",
        index.text()
    );
    assert_eq!(route_lines(&server, "build succeeded", "api"), 1);
    assert_eq!(route_lines(&server, "build succeeded", "index"), 1);

    // A save of guest-api's source (a new mtime, the same text: the repository stays as it is)
    // rebuilds guest-api alone; the same bytes make no new generation.
    let source = root.join("guest-api/src/lib.rs");
    std::fs::File::options()
        .append(true)
        .open(&source)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let rebuilt = eventually(SWAP_WAIT, || async {
        (route_lines(&server, "build succeeded", "api") == 2).then_some(())
    })
    .await;
    assert!(
        rebuilt.is_some(),
        "guest-api was not rebuilt; log:\n{}",
        server.log()
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        route_lines(&server, "building", "index"),
        1,
        "guest-example was rebuilt too; log:\n{}",
        server.log()
    );
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;
}
