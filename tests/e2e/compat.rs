//! The compatibility suite: components built by real third-party toolchains (Rust's `wstd`,
//! Spin's SDK for 0.2 and 0.3, componentize-py, componentize-js, C with wit-bindgen), fetched
//! from their registries by `tests/compat/build.sh`, which `scripts/test.sh` runs first. Each
//! is the same app: `GET /` says `hello from NAME`, `POST /echo` returns the body.
//!
//! These tests are `#[ignore]`d in a plain `cargo test` (the guests must be built first);
//! `scripts/test.sh` runs them. A toolchain that could not be installed leaves a `.skip` file
//! with its reason, which the tests print; too few built guests fail them.

use hotswap_tests::guests::GUEST_TARGET_DIR;
use hotswap_tests::{Client, Server, deploy_atomic, eventually, get, noise, post};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One line of `guests.tsv`.
struct Guest {
    name: String,
    toolchain: String,
    world: String,
    path: PathBuf,
}

/// Where `tests/compat/build.sh` put the guests: `$HOTSWAP_COMPAT_DIR`, else `compat/` beside
/// the test guests.
fn compat_dir() -> PathBuf {
    std::env::var_os("HOTSWAP_COMPAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(GUEST_TARGET_DIR).parent().unwrap().join("compat"))
}

/// The built guests; the skipped ones are printed with their reasons. Fails unless at least
/// four toolchains built, one of them a 0.3 guest and one of them 10 MB or more.
fn built_guests() -> Vec<Guest> {
    let dir = compat_dir();
    let table = std::fs::read_to_string(dir.join("guests.tsv")).unwrap_or_else(|e| {
        panic!(
            "no {}/guests.tsv ({e}): build the guests first with `tests/compat/build.sh {}`",
            dir.display(),
            dir.display()
        )
    });
    let mut guests = Vec::new();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, toolchain, world, ..] = fields[..] else {
            panic!("malformed guests.tsv line {line:?}");
        };
        let path = dir.join(format!("{name}.wasm"));
        if world == "skipped" {
            eprintln!(
                "SKIPPED compat guest {name} ({toolchain}): {}",
                fields.last().unwrap()
            );
            assert!(!path.exists(), "{name} is both built and skipped");
            continue;
        }
        assert!(
            path.exists(),
            "guests.tsv lists {name} but {} is missing",
            path.display()
        );
        guests.push(Guest {
            name: name.to_string(),
            toolchain: toolchain.to_string(),
            world: world.to_string(),
            path,
        });
    }
    let names: Vec<&str> = guests.iter().map(|g| g.name.as_str()).collect();
    assert!(
        guests.len() >= 4,
        "only {} compat guests built: {names:?}",
        guests.len()
    );
    assert!(
        guests.iter().any(|g| g.world.starts_with("wasi:http@0.3")),
        "no 0.3 guest among {names:?}"
    );
    assert!(
        guests
            .iter()
            .any(|g| std::fs::metadata(&g.path).unwrap().len() >= 10_000_000),
        "no guest of 10 MB or more among {names:?}"
    );
    guests
}

/// `GET /` names the guest and `POST /echo` returns 100 KiB byte-exact.
async fn check_app(server: &Server, guest: &Guest) {
    let reply = get(server.addr, "/")
        .await
        .unwrap_or_else(|e| panic!("{}: GET / failed: {e}; log:\n{}", guest.name, server.log()));
    assert_eq!(
        reply.status,
        200,
        "{} ({}): {}",
        guest.name,
        guest.toolchain,
        reply.text()
    );
    let hello = format!("hello from {}", guest.name);
    assert!(
        reply.text().contains(&hello),
        "{}: GET / said {:?}",
        guest.name,
        reply.text()
    );
    let body = noise(1, 100 << 10);
    let reply = post(server.addr, "/echo", body.clone()).await.unwrap();
    assert_eq!(reply.status, 200, "{}: {}", guest.name, reply.text());
    assert!(
        reply.body == body,
        "{} ({}): the 100 KiB echo differs ({} bytes back)",
        guest.name,
        guest.toolchain,
        reply.body.len()
    );
}

/// A client that echoes 8 KiB to `addr` until `stop` (at most a million times), reconnecting after a failure; it returns
/// the echoes that came back whole (and, if `generation` is given, from that generation) and a
/// description of every other reply.
fn echo_stream(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    generation: Option<u64>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let mut client = Client::connect(addr).await.unwrap();
        let body = noise(2, 8 << 10);
        let (mut ok, mut failures) = (0usize, Vec::new());
        for _ in 0..1_000_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match client.send("POST", "/echo", body.clone()).await {
                Ok(r)
                    if r.status == 200
                        && r.body == body
                        && generation.is_none_or(|g| r.generation() == Some(g)) =>
                {
                    ok += 1
                }
                Ok(r) => failures.push(format!(
                    "generation {:?}: status {} ({} bytes)",
                    r.generation(),
                    r.status,
                    r.body.len()
                )),
                Err(e) => {
                    failures.push(e);
                    client = Client::connect(addr).await.unwrap();
                }
            }
        }
        (ok, failures)
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the guests of tests/compat/build.sh; scripts/test.sh builds them and runs this"]
async fn every_toolchains_guest_serves_hello_and_a_byte_exact_echo() {
    for guest in built_guests() {
        let server = Server::start(&guest.path, &[]);
        check_app(&server, &guest).await;
        let world = if guest.world.starts_with("wasi:http@0.3") {
            "wasi:http@0.3"
        } else {
            "wasi:http@0.2"
        };
        server.expect_log(world, Duration::from_secs(5)).await;
        eprintln!(
            "compat guest {} ({}, {}) served",
            guest.name, guest.toolchain, world
        );
    }
}

/// One host swaps through every guest in turn, twice, under a steady stream of echo requests
/// (every world, every toolchain): no request fails.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the guests of tests/compat/build.sh; scripts/test.sh builds them and runs this"]
async fn one_host_hot_swaps_across_every_toolchain_under_load() {
    let guests = built_guests();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::copy(&guests[0].path, &path).unwrap();
    let server = Server::start(&path, &["--debounce", "50ms"]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let load = echo_stream(addr, stop.clone(), None);
    let mut generation = 1;
    check_app(&server, &guests[0]).await;
    for guest in guests.iter().skip(1).chain(guests.iter()) {
        generation += 1;
        deploy_atomic(&std::fs::read(&guest.path).unwrap(), &path);
        // A never-seen 20 MB guest compiles for seconds (longer on a loaded 2-core machine).
        eventually(Duration::from_secs(180), || async {
            get(addr, "/")
                .await
                .ok()
                .filter(|r| r.generation() == Some(generation))
        })
        .await
        .unwrap_or_else(|| panic!("{} never served; log:\n{}", guest.name, server.log()));
        check_app(&server, guest).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed requests across the swaps: {failures:?}"
    );
    assert!(ok > 0);
    eprintln!(
        "{ok} echoes across {} swaps through {} toolchains",
        generation - 1,
        guests.len()
    );
}

/// The largest guests (10 MB or more), never seen (empty caches): the host listens at once and
/// answers 503 while it compiles; the Winch build then serves, and the Cranelift build replaces
/// it as the same generation under a stream of echoes, none of which fails.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the guests of tests/compat/build.sh; scripts/test.sh builds them and runs this"]
async fn a_large_guest_listens_at_once_serves_from_winch_and_tiers_up_under_load() {
    let large: Vec<Guest> = built_guests()
        .into_iter()
        .filter(|g| std::fs::metadata(&g.path).unwrap().len() >= 10_000_000)
        .collect();
    for guest in &large {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let server = Server::launch_listening(
            &[
                guest.path.to_str().unwrap(),
                "--tier",
                "auto",
                "--cache-dir",
                cache.to_str().unwrap(),
            ],
            &[],
            None,
        );
        // Read first (`loading …`), then compiled for seconds: 503 with the reason meanwhile.
        let early = eventually(Duration::from_secs(10), || async {
            get(server.addr, "/")
                .await
                .ok()
                .filter(|r| r.status == 503 && r.text().contains("compiling"))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{}: never 503 `compiling`; log:\n{}",
                guest.name,
                server.log()
            )
        });
        assert_eq!(
            early.header("retry-after"),
            Some("1"),
            "{}: {:?}",
            guest.name,
            early.headers
        );
        eventually(Duration::from_secs(120), || async {
            get(server.addr, "/").await.ok().filter(|r| r.status == 200)
        })
        .await
        .unwrap_or_else(|| panic!("{} never served; log:\n{}", guest.name, server.log()));
        // The reload line follows the compile cache write, a moment after the build serves.
        assert!(
            server.wait_for_log("Winch", Duration::from_secs(10)).await,
            "{}: not served from a Winch build first; log:\n{}",
            guest.name,
            server.log()
        );

        let (addr, stop) = (server.addr, Arc::new(AtomicBool::new(false)));
        let load = echo_stream(addr, stop.clone(), Some(1));
        server
            .expect_log("tiered up generation 1", Duration::from_secs(240))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let (ok, failures) = load.await.unwrap();
        assert!(
            failures.is_empty(),
            "{}: failed requests across the tier-up: {failures:?}",
            guest.name
        );
        assert!(ok > 0, "{}: no echo ran", guest.name);
        check_app(&server, guest).await;
        let log = server.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("loaded generation") || l.contains("tiered up"))
            .map(|l| l.split(" route=").next().unwrap_or(l))
            .collect();
        eprintln!("{} ({ok} echoes across the tier-up): {lines:?}", guest.name);
    }
}

/// Every guest can have its whole concurrency cap in flight at once: the instance pool holds
/// `--max-concurrency` instances of any component that loads, however many core modules it is
/// made of (a componentize-py guest instantiates 14, one per library it links). The GETs go out
/// together, and the guests yield to each other, so most of them are alive at the same time.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the guests of tests/compat/build.sh; scripts/test.sh builds them and runs this"]
async fn every_guest_serves_its_whole_concurrency_cap_at_once() {
    const CAP: usize = 64;
    for guest in built_guests() {
        let cap = CAP.to_string();
        let server = Server::start(&guest.path, &["--max-concurrency", &cap]);
        let addr = server.addr;
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..CAP {
            requests.spawn(async move { get(addr, "/").await });
        }
        let replies = requests.join_all().await;
        let failed: Vec<String> = replies
            .iter()
            .filter_map(|r| match r {
                Ok(reply) if reply.status == 200 => None,
                Ok(reply) => Some(format!("{}: {}", reply.status, reply.text())),
                Err(e) => Some(e.clone()),
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{} ({}): {} of {CAP} concurrent requests failed: {:?}; log:\n{}",
            guest.name,
            guest.toolchain,
            failed.len(),
            &failed[..failed.len().min(3)],
            server.log()
        );
        eprintln!(
            "compat guest {}: {CAP} concurrent requests served",
            guest.name
        );
    }
}
