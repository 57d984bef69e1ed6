//! `wasi:keyvalue`: state kept across swaps, restarts and hosts; limits and a backend outage
//! are errors for the guest, never for the host.

use super::*;

// ----- wasi:keyvalue -------------------------------------------------------------------------

/// Increments `hits` on `addrs` in turn, from `tasks` connections, until `stop` is set (and
/// at least `min_each` times per task); returns each answer's (status, value, generation).
async fn increment_until(
    addrs: Vec<SocketAddr>,
    tasks: usize,
    min_each: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(u16, String, Option<u64>)> {
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let addrs = addrs.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut clients = Vec::new();
                for addr in &addrs {
                    clients.push(Client::connect(*addr).await.unwrap());
                }
                let mut seen = Vec::new();
                let mut i = t;
                while seen.len() < min_each || !stop.load(Ordering::Relaxed) {
                    let client = &mut clients[i % addrs.len()];
                    i += 1;
                    match client.get("/kv/incr?key=hits").await {
                        Ok(r) => seen.push((r.status.as_u16(), r.text(), r.generation())),
                        Err(e) => seen.push((0, e, None)),
                    }
                    if seen.len() >= 5_000 {
                        break;
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all
}

/// Every answer was a 200 and the values are exactly 1..=N: no increment lost or doubled.
fn assert_every_increment_counted(answers: &[(u16, String, Option<u64>)]) -> u64 {
    let failed: Vec<_> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let values: BTreeSet<u64> = answers.iter().map(|(_, v, _)| v.parse().unwrap()).collect();
    let n = answers.len() as u64;
    assert_eq!(values.len() as u64, n, "a value was handed out twice");
    assert_eq!(values.first(), Some(&1));
    assert_eq!(values.last(), Some(&n), "values are not 1..={n}");
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_survives_ten_swaps_under_load_with_no_lost_increment() {
    let dir = tempfile::tempdir().unwrap();
    let path = stateful_in(dir.path());
    let kv = dir.path().join("kv.sqlite3");
    let store = format!("sqlite:{}", kv.display());
    let server = Server::start(&path, &["--keyvalue", &store]);
    let bytes = guests::bytes(STATEFUL);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(increment_until(vec![server.addr], 4, 20, stop.clone()));
    for version in 1..=10u64 {
        deploy_atomic(
            &with_custom_section(&bytes, "version", version.to_string().as_bytes()),
            &path,
        );
        let loaded = eventually(WAIT, || async {
            let reply = get(server.addr, "/hello").await.ok()?;
            (reply.generation() == Some(version + 1)).then_some(())
        })
        .await;
        assert!(
            loaded.is_some(),
            "generation {} never served; log:\n{}",
            version + 1,
            server.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap();
    let n = assert_every_increment_counted(&answers);
    let generations: BTreeSet<u64> = answers.iter().filter_map(|(_, _, g)| *g).collect();
    assert!(
        generations.len() >= 5,
        "the load spanned generations {generations:?}"
    );
    assert_eq!(
        call(server.addr, "/kv/get?key=hits").await,
        (200, n.to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_backed_state_survives_a_restart_and_a_killed_host_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = stateful_in(dir.path());
    let store = format!("sqlite:{}", dir.path().join("state/kv.sqlite3").display());
    let args = ["--keyvalue", store.as_str()];

    let server = Server::start(&path, &args);
    for i in 1..=25 {
        assert_eq!(
            call(server.addr, "/kv/incr?key=hits").await,
            (200, i.to_string())
        );
    }
    drop(server);
    let server = Server::start(&path, &args);
    assert_eq!(
        call(server.addr, "/kv/get?key=hits").await,
        (200, "25".into())
    );

    // Kill the host (SIGKILL) in the middle of a stream of increments.
    let stop = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn(increment_until(vec![server.addr], 4, 2_000, stop));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGKILL);
    let answers = load.await.unwrap();
    let acknowledged: Vec<u64> = answers
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, v, _)| v.parse().unwrap())
        .collect();
    assert!(
        acknowledged.len() >= 10,
        "too few increments before the kill: {}",
        acknowledged.len()
    );
    let highest = *acknowledged.iter().max().unwrap();
    drop(server);

    let server = Server::start(&path, &args);
    let (status, body) = call(server.addr, "/kv/get?key=hits").await;
    assert_eq!(status, 200);
    let kept: u64 = body.parse().unwrap();
    // Every acknowledged increment is there; at most the 4 in flight at the kill went further.
    assert!(
        (highest..=highest + 4).contains(&kept),
        "acknowledged {highest}, kept {kept}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_are_isolated_and_limits_are_errors_for_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let path = stateful_in(dir.path());
    let server = Server::start(
        &path,
        &[
            "--keyvalue",
            "memory",
            "--keyvalue-max-keys",
            "3",
            "--keyvalue-max-value-size",
            "1KiB",
        ],
    );
    let addr = server.addr;
    assert_eq!(
        call(addr, "/kv/set-many?bucket=x&pairs=a:1,b:2").await,
        (200, "ok".into())
    );
    assert_eq!(
        call(addr, "/kv/get-many?bucket=x&keys=a,b,c").await,
        (200, "a=1\nb=2\nc!\n".into())
    );
    assert_eq!(
        call(addr, "/kv/exists?bucket=x&key=a").await,
        (200, "true".into())
    );
    assert_eq!(
        call(addr, "/kv/list?bucket=x").await,
        (200, "a\nb\n".into())
    );
    // Another bucket is another set of keys.
    assert_eq!(
        call(addr, "/kv/get?bucket=y&key=a").await,
        (404, "none".into())
    );
    assert_eq!(call(addr, "/kv/list?bucket=y").await, (200, "".into()));

    // The key limit: a third key fits, a fourth is refused, by set and by increment.
    assert_eq!(
        call(addr, "/kv/set?bucket=x&key=c&value=3").await,
        (200, "ok".into())
    );
    let (status, body) = call(addr, "/kv/set?bucket=x&key=d&value=4").await;
    assert_eq!(status, 500);
    assert!(body.contains("error other: bucket `x` is full"), "{body}");
    let (status, body) = call(addr, "/kv/incr?bucket=x&key=e").await;
    assert!(status == 500 && body.contains("is full"), "{body}");
    // Replacing a key is not adding one.
    assert_eq!(
        call(addr, "/kv/set?bucket=x&key=a&value=10").await,
        (200, "ok".into())
    );
    // The value limit.
    let (status, body) = call(addr, "/kv/set-big?bucket=x&key=a&n=2000").await;
    assert!(status == 500 && body.contains("1024 byte limit"), "{body}");
    assert_eq!(
        call(addr, "/kv/get?bucket=x&key=a").await,
        (200, "10".into())
    );
    // A non-number cannot be incremented; that is an error, not a trap.
    let (status, body) = call(addr, "/kv/incr?bucket=x&key=a&by=1").await;
    assert_eq!((status, body.as_str()), (200, "11"));
    assert_eq!(
        call(addr, "/kv/set?bucket=x&key=a&value=ten").await,
        (200, "ok".into())
    );
    let (status, body) = call(addr, "/kv/incr?bucket=x&key=a").await;
    assert!(
        status == 500 && body.contains("not an unsigned decimal number"),
        "{body}"
    );

    assert_eq!(
        call(addr, "/kv/delete?bucket=x&key=a").await,
        (200, "ok".into())
    );
    assert_eq!(
        call(addr, "/kv/exists?bucket=x&key=a").await,
        (200, "false".into())
    );
    assert_eq!(
        call(addr, "/kv/set?bucket=x&key=d&value=4").await,
        (200, "ok".into())
    );
    assert_eq!(
        call(addr, "/kv/delete-many?bucket=x&keys=b,c").await,
        (200, "ok".into())
    );
    assert_eq!(call(addr, "/kv/list?bucket=x").await, (200, "d\n".into()));

    let (status, body) = call(addr, "/kv/get?bucket=a:b&key=k").await;
    assert!(status == 500 && body.contains("not a valid name"), "{body}");
    assert_eq!(call(addr, "/hello").await, (200, "hello".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_keep_apps_apart_and_a_file_is_one_hosts_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = stateful_in(dir.path());
    let store = format!("sqlite:{}", dir.path().join("kv.sqlite3").display());
    let start =
        |ns: &str| Server::start(&path, &["--keyvalue", &store, "--keyvalue-namespace", ns]);

    let one = start("one");
    assert_eq!(
        call(one.addr, "/kv/set?key=k&value=from-one").await,
        (200, "ok".into())
    );
    // A second host on the same file is refused at once, with the reason; it serves on.
    let other = start("two");
    let started = Instant::now();
    let (status, body) = call(other.addr, "/kv/get?key=k").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("in use by another hotswap process"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(call(other.addr, "/hello").await, (200, "hello".into()));
    drop(other);
    drop(one);

    // One after the other, each app sees its own keys only.
    let two = start("two");
    assert_eq!(call(two.addr, "/kv/get?key=k").await, (404, "none".into()));
    assert_eq!(
        call(two.addr, "/kv/set?key=k&value=from-two").await,
        (200, "ok".into())
    );
    drop(two);
    let one_again = start("one");
    assert_eq!(
        call(one_again.addr, "/kv/get?key=k").await,
        (200, "from-one".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_store_is_a_file_per_app_under_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = [("XDG_STATE_HOME", state.to_str().unwrap())];
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (app_a, app_b) = (stateful_in(&a), b.join("other.wasm"));
    std::fs::write(&app_b, guests::bytes(STATEFUL)).unwrap();
    // Two apps at once, each with the default store.
    let first = Server::start_with_env(&app_a, &[], &env);
    let second = Server::start_with_env(&app_b, &[], &env);
    assert_eq!(call(first.addr, "/kv/incr?key=n").await, (200, "1".into()));
    assert_eq!(call(second.addr, "/kv/incr?key=n").await, (200, "1".into()));
    for name in ["app", "other"] {
        let file = state.join(format!("hotswap/keyvalue/{name}.sqlite3"));
        assert!(file.is_file(), "{} missing", file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_share_one_counter_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let path = stateful_in(dir.path());
    let url = redis.url();
    let args = ["--keyvalue", url.as_str(), "--keyvalue-max-keys", "3"];
    let (a, b) = (Server::start(&path, &args), Server::start(&path, &args));

    let stop = Arc::new(AtomicBool::new(true));
    let answers = increment_until(vec![a.addr, b.addr], 4, 50, stop).await;
    let n = assert_every_increment_counted(&answers);
    assert_eq!(n, 200);
    assert_eq!(call(a.addr, "/kv/get?key=hits").await, (200, "200".into()));
    assert_eq!(call(b.addr, "/kv/get?key=hits").await, (200, "200".into()));

    // The same limits, enforced by Redis for both hosts.
    assert_eq!(
        call(a.addr, "/kv/set-many?bucket=lim&pairs=k1:1,k2:2").await,
        (200, "ok".into())
    );
    assert_eq!(
        call(b.addr, "/kv/set?bucket=lim&key=k3&value=3").await,
        (200, "ok".into())
    );
    let (status, body) = call(a.addr, "/kv/set?bucket=lim&key=k4&value=4").await;
    assert!(status == 500 && body.contains("is full"), "{body}");
    let (status, body) = call(b.addr, "/kv/incr?bucket=lim&key=k5").await;
    assert!(status == 500 && body.contains("is full"), "{body}");
    assert_eq!(call(b.addr, "/kv/list?bucket=lim").await.0, 200);
    assert_eq!(
        call(a.addr, "/kv/get-many?bucket=lim&keys=k1,k3,k4").await,
        (200, "k1=1\nk3=3\nk4!\n".into())
    );
    assert_eq!(
        call(a.addr, "/kv/delete-many?bucket=lim&keys=k1,k2").await,
        (200, "ok".into())
    );
    assert_eq!(
        call(b.addr, "/kv/list?bucket=lim").await,
        (200, "k3\n".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_redis_is_an_error_for_the_guest_and_the_host_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let port = redis.addr.port();
    let path = stateful_in(dir.path());
    let url = redis.url();
    let server = Server::start(&path, &["--keyvalue", &url, "--admin-addr", "127.0.0.1:0"]);
    assert_eq!(
        call(server.addr, "/kv/incr?key=hits").await,
        (200, "1".into())
    );

    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = call(server.addr, "/kv/incr?key=hits").await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("key-value store unavailable"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        // Requests that do not touch the store are served as ever.
        assert_eq!(call(server.addr, "/hello").await, (200, "hello".into()));
    }
    server
        .expect_log("key-value store unavailable; guests get an error", WAIT)
        .await;
    assert_eq!(
        server.log_count("key-value store unavailable; guests get an error"),
        1
    );
    let text = metrics(&server).await;
    let series = "hotswap_keyvalue_operations_total{op=\"increment\",result=\"error\"} 3";
    assert!(text.contains(series), "{series} missing:\n{text}");

    let _redis = Redis::start_on(dir.path(), port);
    // Redis kept nothing on disk: the counter starts again.
    let back = eventually(WAIT, || async {
        let (status, body) = call(server.addr, "/kv/incr?key=hits").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(back.as_deref(), Some("1"), "log:\n{}", server.log());
    server
        .expect_log("key-value store reachable again", WAIT)
        .await;
}
