//! Components from a real OCI registry (docker-registry on loopback, pushed to with oras): a
//! tag followed and swapped in place, every failure keeping the last good generation, a fleet of
//! replicas converging on a push with no failed request, and the poll watcher for file systems
//! that send no events. And from a fake registry that misbehaves on purpose (a layer or a
//! manifest without end, a trickle, a Bearer token): every read bounded in memory and time.

use hotswap_tests::admin::status;
use hotswap_tests::fake_registry::{Body, FakeRegistry};
use hotswap_tests::guests::{self, GUEST_EXAMPLE};
use hotswap_tests::oci::Registry;
use hotswap_tests::server::run_to_exit;
use hotswap_tests::{Client, Server, deploy_in_place, eventually, get};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const POLL: &str = "300ms";
const TOKEN: &str = "registry-test-token";
/// Most the host's resident memory may grow while a registry misbehaves.
const RSS_GROWTH_LIMIT: u64 = 150 << 20;
/// How long a misbehaving registry is watched.
const WATCH: Duration = Duration::from_secs(5);

/// A host following `reference`, polling every 300 ms, its compile cache and pulled layers in
/// `cache`.
fn follow(reference: &str, cache: &Path, extra: &[&str]) -> Server {
    follow_every(POLL, reference, cache, extra)
}

/// [`follow`] with another poll interval.
fn follow_every(poll: &str, reference: &str, cache: &Path, extra: &[&str]) -> Server {
    follow_with_env(poll, reference, cache, extra, &[])
}

/// [`follow_every`] with extra environment variables.
fn follow_with_env(
    poll: &str,
    reference: &str,
    cache: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let cache = cache.to_str().unwrap();
    let mut args = vec![
        "--poll-interval",
        poll,
        "--cache-dir",
        cache,
        "--admin-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("HOTSWAP_ADMIN_TOKEN", TOKEN));
    Server::start_with_env(Path::new(reference), &args, &env)
}

/// The text guest-example answers `GET /` with, e.g. `... version v2`.
async fn version(server: &Server) -> String {
    get(server.addr, "/")
        .await
        .map(|r| r.text())
        .unwrap_or_default()
}

async fn wait_for_version(server: &Server, v: &str) -> Duration {
    let start = Instant::now();
    let seen = eventually(WAIT, || async {
        version(server)
            .await
            .contains(&format!("version {v}"))
            .then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "never served {v}; serving {:?}; log:\n{}",
        version(server).await,
        server.log()
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_tag_swaps_in_place_and_bad_pushes_keep_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let v1 = registry.push("apps/hello:live", &guests::example_version("v1"));
    let server = follow(
        &registry.reference("apps/hello:live"),
        &dir.path().join("cache"),
        &[],
    );
    assert!(version(&server).await.contains("version v1"));
    let current = &status(&server).await["current"];
    assert_eq!(current["digest"], v1.as_str(), "{current}");
    assert_eq!(
        current["source"],
        registry.reference("apps/hello:live").as_str()
    );

    let v2 = registry.push("apps/hello:live", &guests::example_version("v2"));
    let took = wait_for_version(&server, "v2").await;
    assert!(took < Duration::from_secs(10), "v2 took {took:?}");
    assert_eq!(status(&server).await["current"]["digest"], v2.as_str());
    let metrics = get(server.admin.unwrap(), "/metrics").await.unwrap().text();
    let series = format!("hotswap_serving_digest{{route=\"index\",digest=\"{v2}\"}} 1");
    assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    assert!(
        !metrics.contains(&v1),
        "the old digest's series is gone:\n{metrics}"
    );

    // Not a component; then not a wasm artifact at all: v2 keeps serving, the log says why.
    registry.push("apps/hello:live", b"this is not wasm");
    server.expect_log("not a WebAssembly file", WAIT).await;
    registry.push_as(
        "apps/hello:live",
        &guests::bytes(GUEST_EXAMPLE),
        Some("application/vnd.oci.image.config.v1+json"),
    );
    server
        .expect_log("is not a wasm component artifact", WAIT)
        .await;
    assert!(version(&server).await.contains("version v2"));
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("is not a wasm component artifact"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&registry.reference("apps/hello:live")),
        "{line}"
    );
    // A failed digest is not pulled again at every poll.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.log_count("is not a wasm component artifact"),
        1,
        "{}",
        server.log()
    );
    let metrics = get(server.admin.unwrap(), "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_registry_errors_total{route=\"index\",kind=\"not_wasm\"} 1"),
        "{metrics}"
    );
    // Uploads do not apply to a registry component: the registry is where versions go.
    let auth = format!("Bearer {TOKEN}");
    let reply = Client::connect(server.admin.unwrap())
        .await
        .unwrap()
        .send_with(
            "PUT",
            "/component",
            &[("authorization", &auth)],
            guests::example_version("v1"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("push a new version to the registry"),
        "{}",
        reply.text()
    );
    assert!(version(&server).await.contains("version v2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_a_reload_call_poll_the_tag_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push("app:live", &guests::example_version("v1"));
    // Polled once an hour: only the signal and the call can bring the new versions in time.
    let server = follow_every(
        "1h",
        &registry.reference("app:live"),
        &dir.path().join("cache"),
        &[],
    );
    assert!(version(&server).await.contains("version v1"));
    registry.push("app:live", &guests::example_version("v2"));
    server.signal(libc::SIGHUP);
    wait_for_version(&server, "v2").await;
    registry.push("app:live", &guests::example_version("v3"));
    let auth = format!("Bearer {TOKEN}");
    let reply = Client::connect(server.admin.unwrap())
        .await
        .unwrap()
        .send_with("POST", "/reload", &[("authorization", &auth)], Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(version(&server).await.contains("version v3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_registry_keeps_the_host_serving_and_v3_lands_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut registry = Registry::start(&dir.path().join("registry"));
    registry.push("app:live", &guests::example_version("v1"));
    let reference = registry.reference("app:live");
    let server = follow(&reference, &cache, &[]);
    assert!(version(&server).await.contains("version v1"));
    // A push that fails validation must not become what a restart falls back to.
    registry.push("app:live", b"this is not wasm");
    server.expect_log("not a WebAssembly file", WAIT).await;

    registry.stop();
    server.expect_log("cannot reach the registry", WAIT).await;
    for _ in 0..5 {
        assert!(version(&server).await.contains("version v1"));
    }
    // A restart while the registry is down serves the last component pulled.
    drop(server);
    let server = follow(&reference, &cache, &["--require-component"]);
    assert!(
        version(&server).await.contains("version v1"),
        "{}",
        server.log()
    );
    server
        .expect_log("serving the component last pulled from it", WAIT)
        .await;
    let metrics = get(server.admin.unwrap(), "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_registry_errors_total{route=\"index\",kind=\"unreachable\"}"),
        "{metrics}"
    );

    registry.restart();
    registry.push("app:live", &guests::example_version("v3"));
    wait_for_version(&server, "v3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_credentials_come_from_env_or_docker_config_and_wrong_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_auth(&dir.path().join("registry"), "alice", "wonderland");
    registry.push("private/app:v1", &guests::example_version("v1"));
    let reference = registry.reference("private/app:v1");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();

    let out = run_to_exit(
        &[
            "serve",
            &reference,
            "--require-component",
            "--cache-dir",
            cache,
            "--registry-username",
            "alice",
            "--registry-password",
            "wrong",
            "--addr",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let registry_name = registry.addr.to_string();
    assert!(
        out.stderr.contains("refused access") && out.stderr.contains(&registry_name),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("wrong"),
        "the password is not shown: {}",
        out.stderr
    );

    let server = Server::start_with_env(
        Path::new(&reference),
        &["--cache-dir", cache],
        &[
            ("HOTSWAP_REGISTRY_USERNAME", "alice"),
            ("HOTSWAP_REGISTRY_PASSWORD", "wonderland"),
        ],
    );
    assert!(version(&server).await.contains("version v1"));
    drop(server);

    // The docker config file's `auths` entry, as `docker login` writes it.
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"{registry_name}": {{"auth": "YWxpY2U6d29uZGVybGFuZA=="}}}}}}"#),
    )
    .unwrap();
    let fresh_cache = dir.path().join("cache2");
    let server = Server::start_with_env(
        Path::new(&reference),
        &["--cache-dir", fresh_cache.to_str().unwrap()],
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
    );
    assert!(
        version(&server).await.contains("version v1"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_digests_layers_that_do_not_match_and_oversize_layers() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let bytes = guests::example_version("v1");
    let digest = registry.push("app:v1", &bytes);
    let pinned = format!("{}@{digest}", registry.reference("app"));
    let cache = dir.path().join("cache");

    // Pinned: served, and never polled.
    let server = follow(&pinned, &cache, &[]);
    assert!(version(&server).await.contains("version v1"));
    let heads = registry.manifest_heads();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        registry.manifest_heads(),
        heads,
        "a pinned digest is not polled"
    );
    drop(server);

    let start = |cache: &Path, extra: &[&str]| {
        let mut args = vec![
            "serve",
            pinned.as_str(),
            "--require-component",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        run_to_exit(&args, Duration::from_secs(60))
    };
    // A tag that is not there.
    let missing = registry.reference("app:nope");
    let missing_cache = dir.path().join("cache-missing");
    let out = run_to_exit(
        &[
            "serve",
            &missing,
            "--require-component",
            "--addr",
            "127.0.0.1:0",
            "--cache-dir",
            missing_cache.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("was not found in the registry") && out.stderr.contains(&missing),
        "{}",
        out.stderr
    );

    let out = start(
        &dir.path().join("cache-small"),
        &["--max-component-size", "1KiB"],
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("more than the 1024 byte limit"),
        "{}",
        out.stderr
    );

    // The registry's copy of the layer goes bad on disk.
    let layer = format!("sha256:{}", sha256_hex(&bytes));
    registry.corrupt_blob(&layer);
    let out = start(&dir.path().join("cache-fresh"), &[]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not match its digest"),
        "{}",
        out.stderr
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    hotswap::digest::sha256(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_of_three_converges_on_a_push_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push("fleet/app:stable", &guests::example_version("v1"));
    let reference = registry.reference("fleet/app:stable");
    let replicas: Vec<Server> = (0..3)
        .map(|i| follow(&reference, &dir.path().join(format!("cache-{i}")), &[]))
        .collect();
    let addrs: Vec<_> = replicas.iter().map(|s| s.addr).collect();

    // A client that round-robins over the replicas, from 6 connections.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|t| {
            let addrs = addrs.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut clients = Vec::new();
                for addr in &addrs {
                    clients.push(Client::connect(*addr).await.unwrap());
                }
                let (mut ok, mut bad) = (0u64, Vec::new());
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    match clients[i % 3].get("/").await {
                        Ok(r)
                            if r.status == 200
                                && (r.text().contains("version v1")
                                    || r.text().contains("version v2")) =>
                        {
                            ok += 1
                        }
                        Ok(r) => bad.push(format!("{} {}", r.status, r.text())),
                        Err(e) => bad.push(e),
                    }
                    i += 1;
                }
                (ok, bad)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = registry.push("fleet/app:stable", &guests::example_version("v2"));
    let pushed = Instant::now();
    for replica in &replicas {
        wait_for_version(replica, "v2").await;
    }
    let converged = pushed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut bad) = (0, Vec::new());
    for task in load {
        let (o, b) = task.await.unwrap();
        ok += o;
        bad.extend(b);
    }
    assert!(
        bad.is_empty(),
        "{} failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests");
    assert!(
        converged < Duration::from_secs(10),
        "converged in {converged:?}"
    );
    for replica in &replicas {
        assert_eq!(status(replica).await["current"]["digest"], v2.as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_poll_watcher_sees_a_file_changed_where_no_events_come() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::example_version("v1")).unwrap();
    let server = Server::start(&path, &["--watch", "poll", "--poll-interval", "200ms"]);
    assert!(version(&server).await.contains("version v1"));
    deploy_in_place(&guests::example_version("v2"), &path);
    wait_for_version(&server, "v2").await;
    hotswap_tests::deploy_atomic(&guests::example_version("v3"), &path);
    wait_for_version(&server, "v3").await;
    // A deleted file keeps the last good generation, as with native events.
    std::fs::remove_file(&path).unwrap();
    server
        .expect_log("the component file does not exist", WAIT)
        .await;
    assert!(version(&server).await.contains("version v3"));
}

/// Watches the server for `window` while a registry misbehaves: its RSS sampled every 100 ms
/// must stay within [`RSS_GROWTH_LIMIT`] of `before` (the test fails at once when it does not,
/// so an unbounded host is stopped early), and `GET /` every 500 ms must be `200 … version v1`.
/// Returns the largest growth seen.
async fn bounded_while_v1_serves(server: &Server, before: u64, window: Duration) -> u64 {
    let start = Instant::now();
    let mut peak = 0;
    let mut asked: Option<Instant> = None;
    while start.elapsed() < window {
        let growth = server.rss_bytes().saturating_sub(before);
        peak = peak.max(growth);
        assert!(
            growth < RSS_GROWTH_LIMIT,
            "the host's RSS grew by {} MiB in {:?} (limit {} MiB); log:\n{}",
            growth >> 20,
            start.elapsed(),
            RSS_GROWTH_LIMIT >> 20,
            server.log()
        );
        if asked.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            let reply = get(server.addr, "/").await.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert!(reply.text().contains("version v1"), "{}", reply.text());
            asked = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "RSS: {} MiB before, at most {} MiB more over {window:?}",
        before >> 20,
        peak >> 20
    );
    peak
}

/// The WARN lines of `log` that contain `needle`.
fn warnings(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN ") && l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A host following the fake registry's `app:live` with the environment `env`, serving v1
/// from it.
async fn following_v1(fake: &FakeRegistry, cache: &Path, env: &[(&str, &str)]) -> Server {
    fake.push("app:live", &guests::example_version("v1"));
    let server = follow_with_env(POLL, &fake.reference("app:live"), cache, &[], env);
    assert!(
        version(&server).await.contains("version v1"),
        "{}",
        server.log()
    );
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_sent_without_end_is_cut_at_its_size_and_the_last_good_one_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::start().await;
    let server = following_v1(&fake, &dir.path().join("cache"), &[]).await;
    let before = server.rss_bytes();

    // The tag moves to a manifest whose 100,000-byte layer streams zeros without end.
    let layer = fake.push_layer("app:live", Body::Endless, 100_000);
    let blob = format!("GET /v2/app/blobs/{layer}");
    let asked = eventually(WAIT, || async { (fake.requests(&blob) > 0).then_some(()) }).await;
    assert!(asked.is_some(), "never pulled: {}", fake.request_log());
    bounded_while_v1_serves(&server, before, WATCH).await;

    let reason = "the registry sent more than the 100000 bytes its descriptor says";
    let warned = warnings(&server.log(), reason);
    assert_eq!(
        warned.len(),
        1,
        "one warning, not one per poll:\n{}",
        server.log()
    );
    assert!(
        warned[0].contains(&fake.reference("app:live")),
        "{}",
        warned[0]
    );
    // Refused for its content: not pulled again until the tag moves.
    assert_eq!(fake.requests(&blob), 1, "{}", fake.request_log());
    let metrics = get(server.admin.unwrap(), "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_registry_errors_total{route=\"index\",kind=\"too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_stays_down_is_warned_about_once_per_outage() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::start().await;
    let addr = fake.addr;
    let server = following_v1(&fake, &dir.path().join("cache"), &[]).await;
    let down = "cannot reach the registry";

    drop(fake);
    server.expect_log(down, WAIT).await;
    // Polls every 300 ms, backing off to 2.4 s: several fail in 5 s, one warning.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(warnings(&server.log(), down).len(), 1, "{}", server.log());

    // Back (the same manifest), then down again: a new outage is news.
    let fake = FakeRegistry::start_on(addr).await;
    fake.push("app:live", &guests::example_version("v1"));
    let polled = eventually(WAIT, || async {
        (fake.requests("HEAD /v2/app/manifests/live") > 0).then_some(())
    })
    .await;
    assert!(polled.is_some(), "no poll came back: {}", server.log());
    drop(fake);
    let again = eventually(WAIT, || async {
        (warnings(&server.log(), down).len() == 2).then_some(())
    })
    .await;
    assert!(again.is_some(), "{}", server.log());
    assert!(version(&server).await.contains("version v1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_layer_is_cut_by_the_pull_deadline_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::start().await;
    // The environment twin of `--registry-pull-timeout 2s`.
    let server = following_v1(
        &fake,
        &dir.path().join("cache"),
        &[("HOTSWAP_REGISTRY_PULL_TIMEOUT", "2s")],
    )
    .await;

    // Sixteen bytes every 100 ms: never idle long enough for a read timeout, never done.
    let layer = fake.push_layer("app:live", Body::Trickle, 100_000);
    let reason =
        "did not finish within 2s (`--registry-pull-timeout`); cut while reading the layer";
    server.expect_log(reason, Duration::from_secs(15)).await;
    assert!(version(&server).await.contains("version v1"));
    // Later polls try again (the registry may only be slow), each cut the same way, with
    // backoff and without a new warning; each cut pull hangs up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let blob = format!("GET /v2/app/blobs/{layer}");
    assert!(fake.requests(&blob) >= 2, "{}", fake.request_log());
    assert!(fake.open_streams() <= 1, "{} open", fake.open_streams());
    let warned = warnings(&server.log(), reason);
    assert_eq!(
        warned.len(),
        1,
        "one warning, not one per poll:\n{}",
        server.log()
    );
    assert!(
        warned[0].contains(&fake.reference("app:live")),
        "{}",
        warned[0]
    );
    assert!(version(&server).await.contains("version v1"));
    let metrics = get(server.admin.unwrap(), "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_registry_errors_total{route=\"index\",kind=\"timeout\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_sent_without_end_is_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::start().await;
    let server = following_v1(&fake, &dir.path().join("cache"), &[]).await;
    let before = server.rss_bytes();

    let digest = fake.push_manifest_body("app:live", Body::Endless);
    let manifest = format!("GET /v2/app/manifests/{digest}");
    let asked = eventually(WAIT, || async {
        (fake.requests(&manifest) > 0).then_some(())
    })
    .await;
    assert!(asked.is_some(), "never fetched: {}", fake.request_log());
    bounded_while_v1_serves(&server, before, WATCH).await;

    let warned = warnings(
        &server.log(),
        &format!(
            "the manifest of `{}` is too large",
            fake.reference("app:live")
        ),
    );
    assert_eq!(warned.len(), 1, "{}", server.log());
    assert_eq!(fake.requests(&manifest), 1, "{}", fake.request_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_copy_that_no_longer_matches_its_digest_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut registry = Registry::start(&dir.path().join("registry"));
    registry.push("app:live", &guests::example_version("v1"));
    let reference = registry.reference("app:live");
    let server = follow(&reference, &cache, &[]);
    assert!(version(&server).await.contains("version v1"));
    drop(server);

    // With the registry down, the kept copy of the layer is overwritten with another
    // (valid) component.
    registry.stop();
    let tampered = guests::example_version("tampered");
    let copies = wasm_files(&cache.join("oci"));
    assert!(
        !copies.is_empty(),
        "no local copy under {}",
        cache.display()
    );
    for copy in &copies {
        std::fs::write(copy, &tampered).unwrap();
    }

    // A restart cannot reach the registry and must not serve those bytes: nothing serves.
    let server = follow(&reference, &cache, &[]);
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(
        reply.status,
        503,
        "{}; log:\n{}",
        reply.text(),
        server.log()
    );
    assert!(
        !reply.text().contains("version tampered"),
        "{}",
        reply.text()
    );
    let discarded = warnings(&server.log(), "discarding the local copy");
    assert_eq!(discarded.len(), 1, "{}", server.log());
    assert!(
        discarded[0].contains("does not match its digest") && discarded[0].contains(&reference),
        "{}",
        discarded[0]
    );

    // The registry back: the component is pulled again, and the copy is good again.
    registry.restart();
    wait_for_version(&server, "v1").await;
    for copy in wasm_files(&cache.join("oci")) {
        assert_ne!(
            std::fs::read(&copy).unwrap(),
            tampered,
            "{}",
            copy.display()
        );
    }
}

/// Every `*.wasm` file under `dir`, at any depth.
fn wasm_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(wasm_files(&path));
        } else if path.extension().is_some_and(|e| e == "wasm") {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_asks_for_a_bearer_token_gets_one_and_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::start().await;
    fake.require_bearer_token();
    let server = following_v1(&fake, &dir.path().join("cache"), &[]).await;
    let scoped = "GET /token?scope=repository%3Aapp%3Apull&service=fake-registry";
    assert!(fake.requests(scoped) >= 1, "{}", fake.request_log());
    // Later polls reuse the token: one HEAD each, no new token.
    let tokens = fake.requests("/token");
    let heads = fake.requests("HEAD /v2/app/manifests/live");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.requests("/token"), tokens, "{}", fake.request_log());
    assert!(
        fake.requests("HEAD /v2/app/manifests/live") >= heads + 3,
        "{}",
        fake.request_log()
    );
    let v2 = fake.push("app:live", &guests::example_version("v2"));
    wait_for_version(&server, "v2").await;
    assert_eq!(status(&server).await["current"]["digest"], v2.as_str());
}

#[test]
fn a_pull_deadline_of_zero_or_not_a_duration_is_refused_at_startup() {
    let out = run_to_exit(
        &[
            "serve",
            "oci://127.0.0.1:1/app:v1",
            "--registry-pull-timeout",
            "0s",
        ],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("`--registry-pull-timeout` must be greater than zero"),
        "{}",
        out.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotswap.toml");
    std::fs::write(
        &file,
        "[component]\nsource = \"oci://127.0.0.1:1/app:v1\"\n[registry]\npull_timeout = \"soon\"\n",
    )
    .unwrap();
    let out = run_to_exit(
        &["serve", "--config", file.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("`registry.pull_timeout`") && out.stderr.contains("soon"),
        "{}",
        out.stderr
    );
}
