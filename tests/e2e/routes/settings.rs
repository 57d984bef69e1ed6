//! Per-route limits, environment, memory and outbound settings, builds, and the apps
//! directory (one route per file).

use super::*;

// ----- per-route settings -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_env_apply_per_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    for name in ["echo.wasm", "sleep.wasm", "index.wasm"] {
        write(dir.path(), name, &guests::bytes(GUEST_EXAMPLE));
    }
    for name in ["stuck.wasm", "env.wasm"] {
        write(dir.path(), name, &guests::bytes(MISBEHAVE));
    }
    let toml = dir.path().join("hotswap.toml");
    std::fs::write(
        &toml,
        "[[route]]\nprefix = \"/echo\"\npath = \"echo.wasm\"\nmax_body_size = \"1KiB\"\n\n\
         [[route]]\nprefix = \"/sleep-forever\"\npath = \"stuck.wasm\"\nrequest_timeout = \"300ms\"\n\n\
         [[route]]\nprefix = \"/sleep\"\npath = \"sleep.wasm\"\n\n\
         [[route]]\nprefix = \"/env\"\npath = \"env.wasm\"\nenv = { WHO = \"the env route\" }\n\n\
         [[route]]\nprefix = \"/\"\npath = \"index.wasm\"\n",
    )
    .unwrap();
    let server = Server::launch(&["--config", toml.to_str().unwrap()], &[], Some(dir.path()));

    // Body size: 1 KiB on /echo, the default (10 MiB) elsewhere.
    let reply = post(server.addr, "/echo", vec![b'x'; 1500]).await.unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    let reply = post(server.addr, "/echo", vec![b'x'; 500]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body.len(), 500);
    assert_eq!(route_of(&reply), Some("echo"));
    // guest-example answers a POST to `/` with 404: the body was let through to the guest.
    let reply = post(server.addr, "/", vec![b'x'; 1500]).await.unwrap();
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(route_of(&reply), Some("index"));

    // Request deadline: 300 ms on /sleep-forever, the default (30 s) on /sleep.
    let addr = server.addr;
    let stuck = tokio::spawn(async move {
        let started = Instant::now();
        (get(addr, "/sleep-forever").await, started.elapsed())
    });
    let sleeper = tokio::spawn(async move { get(addr, "/sleep?ms=600").await });
    let (reply, elapsed) = stuck.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "the 300 ms deadline answered after {elapsed:?}"
    );
    let reply = sleeper.await.unwrap().unwrap();
    assert_text(&reply, 200, "slept 600 ms\n");
    assert_eq!(route_of(&reply), Some("sleep"));

    // The route's environment, and nothing of the host's.
    let reply = expect_served(&server, "/env?key=WHO", "env", 1).await;
    assert_text(&reply, 200, "the env route");
    let reply = fetch(&server, "/env?key=HOME").await;
    assert_text(&reply, 404, "unset");
}

/// Lines of `dir/builds.log`, one per build run (its route's name).
#[tokio::test(flavor = "multi_thread")]
async fn memory_and_outbound_settings_of_a_route_beat_the_global_ones() {
    let _shared = QUIET.read().await;
    let upstream = hotswap_tests::upstream::Upstream::start().await;
    let allowed = format!("127.0.0.1:{}", upstream.addr.port());
    let url = format!("/outbound?url=http://{}/", upstream.addr);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    write(dir.path(), "tight.wasm", &guests::bytes(GUEST_EXAMPLE));
    write(dir.path(), "misbehave.wasm", &guests::bytes(MISBEHAVE));

    // Globally 1 MiB of memory (less than guest-example starts with) and no outbound HTTP; the
    // index route allows itself 128 MiB, the /outbound route its upstream.
    std::fs::write(
        dir.path().join("hotswap.toml"),
        format!(
            "[[route]]\nprefix = \"/tight\"\npath = \"tight.wasm\"\n\n\
             [[route]]\nprefix = \"/outbound\"\npath = \"misbehave.wasm\"\n\
             max_memory = \"128MiB\"\nallow_outbound = [\"{allowed}\"]\n\n\
             [[route]]\nprefix = \"/\"\npath = \"index.wasm\"\nmax_memory = \"128MiB\"\n"
        ),
    )
    .unwrap();
    let server = Server::launch(
        &["--config", "hotswap.toml", "--max-memory", "1MiB"],
        &[],
        Some(dir.path()),
    );
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("hello"), "{}", reply.text());
    let reply = fetch(&server, "/tight").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("tight.wasm"), "{}", reply.text());
    let reply = expect_served(&server, &url, "outbound", 1).await;
    assert_text(&reply, 200, "status 200");
    assert_eq!(upstream.hits(), 1);
    drop(server);

    // Globally allowed, denied by the route's own (empty) list.
    std::fs::write(
        dir.path().join("hotswap.toml"),
        "[[route]]\nprefix = \"/outbound\"\npath = \"misbehave.wasm\"\nallow_outbound = []\n",
    )
    .unwrap();
    let server = Server::launch(
        &["--config", "hotswap.toml", "--allow-outbound", &allowed],
        &[],
        Some(dir.path()),
    );
    let reply = expect_served(&server, &url, "outbound", 1).await;
    assert_text(&reply, 502, "error HttpRequestDenied");
    assert_eq!(upstream.hits(), 1, "a denied request reached the upstream");
}

fn build_runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("builds.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_route_builds_and_swaps_on_its_own() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = guests::example_version("v1");
    for name in ["a", "index"] {
        std::fs::create_dir_all(dir.path().join(format!("{name}-src"))).unwrap();
        std::fs::write(dir.path().join(format!("{name}-src/main.rs")), "// v1\n").unwrap();
        write(dir.path(), &format!("{name}.next.wasm"), &v1);
    }
    let route = |prefix: &str, name: &str| {
        format!(
            "[[route]]\nprefix = \"{prefix}\"\npath = \"out/{name}.wasm\"\n\n[route.build]\n\
             cmd = \"echo {name} >> builds.log; mkdir -p out; cp {name}.next.wasm out/{name}.wasm\"\n\
             dir = \".\"\nwatch = [\"{name}-src\"]\ndelay = \"50ms\"\n\n"
        )
    };
    let toml = dir.path().join("hotswap.toml");
    std::fs::write(&toml, route("/a", "a") + &route("/", "index")).unwrap();
    let server = Server::launch(
        &[
            "--config",
            toml.to_str().unwrap(),
            "--debounce",
            "50ms",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        Some(dir.path()),
    );
    // Each route built once at startup.
    wait_served(&server, "/a", "a", 1).await;
    wait_served(&server, "/", "index", 1).await;
    let mut runs = build_runs(dir.path());
    runs.sort();
    assert_eq!(runs, ["a", "index"], "log:\n{}", server.log());
    let builds = server.log_count("build succeeded");

    // A's next build output differs; saving A's source rebuilds and swaps A alone.
    write(
        dir.path(),
        "a.next.wasm",
        &with_custom_section(&v1, "n", b"a-2"),
    );
    write(
        dir.path(),
        "index.next.wasm",
        &guests::example_version("v2"),
    );
    std::fs::write(dir.path().join("a-src/main.rs"), "// v2\n").unwrap();
    wait_served(&server, "/a", "a", 2).await;
    tokio::time::sleep(SETTLE).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("version v1"), "{}", reply.text());
    let mut runs = build_runs(dir.path());
    runs.sort();
    assert_eq!(runs, ["a", "a", "index"], "log:\n{}", server.log());
    assert_eq!(
        server.log_count("build succeeded"),
        builds + 1,
        "log:\n{}",
        server.log()
    );

    // And the other way round.
    std::fs::write(dir.path().join("index-src/main.rs"), "// v2\n").unwrap();
    let reply = wait_served(&server, "/", "index", 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/a", "a", 2).await;
    let mut runs = build_runs(dir.path());
    runs.sort();
    assert_eq!(runs, ["a", "a", "index", "index"], "log:\n{}", server.log());

    // Builds are counted per route, `route` first.
    let samples = scrape(&server).await;
    for route in ["a", "index"] {
        assert_eq!(
            value(&samples, "hotswap_builds_total", route, &[("result", "ok")]),
            Some(2.0),
            "{samples:#?}"
        );
    }
    for sample in samples.iter().filter(|s| s.name == "hotswap_builds_total") {
        assert_eq!(sample.labels[0].0, "route", "{sample:?}");
    }
}

// ----- the apps directory -------------------------------------------------------------------

/// Writes `bytes` to `dir/.NAME.tmp`, then renames it to `dir/NAME`.
fn drop_in(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_directory_serves_one_route_per_file() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    let v1 = guests::example_version("v1");
    write(&apps, "a.wasm", &v1);
    write(&apps, "index.wasm", &v1);
    let server = Server::launch(
        &[
            "--apps",
            apps.to_str().unwrap(),
            "--debounce",
            "50ms",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", TOKEN)],
        None,
    );
    expect_served(&server, "/a", "a", 1).await;
    expect_served(&server, "/a/deeper", "a", 1).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("version v1"), "{}", reply.text());
    // Before b.wasm exists, /b is the index route's.
    expect_served(&server, "/b", "index", 1).await;

    // A new file adds its route.
    let dropped = Instant::now();
    drop_in(&apps, "b.wasm", &with_custom_section(&v1, "n", b"b"));
    wait_served(&server, "/b", "b", 1).await;
    assert!(
        dropped.elapsed() < Duration::from_secs(15),
        "/b took {:?} to appear",
        dropped.elapsed()
    );
    expect_served(&server, "/a", "a", 1).await;
    expect_served(&server, "/", "index", 1).await;

    // Replacing a file swaps its route only.
    drop_in(&apps, "a.wasm", &with_custom_section(&v1, "n", b"a-2"));
    wait_served(&server, "/a", "a", 2).await;
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/b", "b", 1).await;
    expect_served(&server, "/", "index", 1).await;

    // A deleted file: its route keeps serving its last generation, and the log says so.
    let lines_before = server.log().lines().count();
    std::fs::remove_file(apps.join("a.wasm")).unwrap();
    let logged = eventually(SWAP_WAIT, || async {
        let log = server.log();
        log.lines()
            .skip(lines_before)
            .find(|l| {
                (mentions_route(l, "a") || l.contains("a.wasm"))
                    && l.contains("generation 2")
                    && l.contains("serving")
            })
            .map(str::to_string)
    })
    .await;
    assert!(
        logged.is_some(),
        "no log line saying /a keeps serving generation 2; log:\n{}",
        server.log()
    );
    expect_served(&server, "/a", "a", 2).await;
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/a", "a", 2).await;

    // A hidden file adds no route.
    write(&apps, ".x.wasm", &v1);
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/x", "index", 1).await;
    expect_served(&server, "/.x", "index", 1).await;
    let listing = routes_listing(&server).await;
    let names: Vec<&str> = listing.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| *n == "x" || *n == ".x" || n.contains("tmp")),
        "{names:?}"
    );

    // A garbage file: its route answers 503 with the reason; the others serve.
    drop_in(&apps, "c.wasm", b"this is not a component");
    let unavailable = eventually(SWAP_WAIT, || async {
        get(server.addr, "/c")
            .await
            .ok()
            .filter(|r| r.status == 503)
    })
    .await
    .unwrap_or_else(|| {
        panic!("/c never answered 503; log:\n{}", server.log());
    });
    assert!(
        unavailable.text().contains("not a WebAssembly file"),
        "the 503 does not give the reason: {:?}",
        unavailable.text()
    );
    expect_served(&server, "/a", "a", 2).await;
    expect_served(&server, "/b", "b", 1).await;
    expect_served(&server, "/", "index", 1).await;
    let listing = routes_listing(&server).await;
    let c = entry(&listing, "c").unwrap_or_else(|| panic!("no route c: {listing:?}"));
    assert_eq!(c["ready"], false, "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apps_directory_can_come_from_the_file() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    write(&apps, "shop.wasm", &guests::bytes(GUEST_EXAMPLE));
    write(&apps, "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    std::fs::write(dir.path().join("hotswap.toml"), "[apps]\ndir = \"apps\"\n").unwrap();
    // No component named: ./hotswap.toml is the configuration.
    let server = Server::launch(&[], &[], Some(dir.path()));
    expect_served(&server, "/shop/cart", "shop", 1).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
