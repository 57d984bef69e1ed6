//! Routes on their own: one route's file swap, broken file, admin calls and readiness leave
//! the other routes as they were.

use super::*;

// ----- independence -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn replacing_one_routes_file_swaps_only_that_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api, index) = two_routes(dir.path(), &[]);
    expect_served(&server, "/api", "api", 1).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("version v1"), "{}", reply.text());

    let v1 = guests::example_version("v1");
    deploy_atomic(&with_custom_section(&v1, "n", b"api-2"), &api);
    wait_served(&server, "/api", "api", 2).await;
    tokio::time::sleep(SETTLE).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("version v1"), "{}", reply.text());
    expect_served(&server, "/api", "api", 2).await;

    deploy_atomic(&guests::example_version("v2"), &index);
    let reply = wait_served(&server, "/", "index", 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/api", "api", 2).await;

    // Each route's generation is its own count, and the load lines say which route.
    let log = server.log();
    let loads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("loaded generation"))
        .collect();
    assert_eq!(loads.len(), 4, "{log}");
    for (route, generation) in [("api", 1), ("api", 2), ("index", 1), ("index", 2)] {
        let marker = format!("loaded generation {generation} ");
        assert!(
            loads
                .iter()
                .any(|l| l.contains(&marker) && mentions_route(l, route)),
            "no `{marker}` line for route {route}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_on_one_route_leaves_both_routes_serving() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _index) = two_routes(dir.path(), &[]);
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;

    for (what, bytes) in [
        ("garbage", b"definitely not a component".to_vec()),
        ("a component of another world", guests::bytes(OTHER_WORLD)),
    ] {
        let failures = server.log_count("reload failed");
        deploy_atomic(&bytes, &api);
        let failed = eventually(SWAP_WAIT, || async {
            (server.log_count("reload failed") > failures).then_some(())
        })
        .await;
        assert!(
            failed.is_some(),
            "{what}: no failed reload logged; log:\n{}",
            server.log()
        );
        let log = server.log();
        let line = log.lines().rfind(|l| l.contains("reload failed")).unwrap();
        assert!(mentions_route(line, "api"), "{what}: {line}");
        assert!(
            line.contains("still serving generation 1"),
            "{what}: {line}"
        );
        expect_served(&server, "/api", "api", 1).await;
        let reply = expect_served(&server, "/", "index", 1).await;
        assert!(
            reply.text().contains("version v1"),
            "{what}: {}",
            reply.text()
        );
    }
    let ready = get(server.admin.unwrap(), "/readyz").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_acts_on_one_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api, index) = two_routes(dir.path(), &["--no-watch"]);

    // The listing.
    let listing = routes_listing(&server).await;
    assert_eq!(listing.len(), 2, "{listing:?}");
    for (name, prefix, path) in [("api", "/api", &api), ("index", "/", &index)] {
        let e = entry(&listing, name).unwrap_or_else(|| panic!("no route {name}: {listing:?}"));
        assert_eq!(e["prefix"], prefix, "{e}");
        assert_eq!(e["generation"], 1, "{e}");
        assert_eq!(e["ready"], true, "{e}");
        assert!(
            e["source"]
                .as_str()
                .is_some_and(|s| s.contains(&path.display().to_string())),
            "{e}"
        );
    }
    let (status, api_status) = admin_json(&server, "GET", "/routes/api/status", Vec::new()).await;
    assert_eq!(status, 200, "{api_status}");
    assert_eq!(api_status["name"], "api", "{api_status}");
    assert_eq!(api_status["prefix"], "/api", "{api_status}");
    assert_eq!(api_status["current"]["generation"], 1, "{api_status}");
    assert!(api_status["history"].is_array(), "{api_status}");

    // Unknown routes.
    for (method, path) in [
        ("GET", "/routes/nope/status"),
        ("POST", "/routes/nope/reload"),
        ("POST", "/routes/nope/rollback"),
        ("PUT", "/routes/nope/component"),
    ] {
        let reply = admin_call(&server, method, path, true, b"x".to_vec()).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
    }
    // The token is needed.
    for (method, path) in [
        ("POST", "/routes/api/reload"),
        ("POST", "/routes/api/rollback"),
        ("PUT", "/routes/api/component"),
    ] {
        let reply = admin_call(&server, method, path, false, b"x".to_vec()).await;
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text());
    }

    // Both files change (not watched); reloading one route loads that one only.
    let v1 = guests::example_version("v1");
    deploy_atomic(&with_custom_section(&v1, "n", b"api-2"), &api);
    deploy_atomic(&guests::example_version("v2"), &index);
    let (status, report) = admin_json(&server, "POST", "/routes/api/reload", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["result"], "loaded", "{report}");
    assert_eq!(report["generation"], 2, "{report}");
    expect_served(&server, "/api", "api", 2).await;
    let reply = expect_served(&server, "/", "index", 1).await;
    assert!(reply.text().contains("version v1"), "{}", reply.text());

    // The legacy reload reloads every route.
    let (status, report) = admin_json(&server, "POST", "/reload", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["routes"]["index"]["result"], "loaded", "{report}");
    assert_eq!(report["routes"]["api"]["result"], "unchanged", "{report}");
    let reply = expect_served(&server, "/", "index", 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
    expect_served(&server, "/api", "api", 2).await;

    // Rollback on one route only.
    let (status, report) = admin_json(&server, "POST", "/routes/api/rollback", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 2).await;
    let (status, report) = admin_json(
        &server,
        "POST",
        "/routes/api/rollback?generation=2",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    expect_served(&server, "/api", "api", 2).await;
    let (status, report) = admin_json(
        &server,
        "POST",
        "/routes/api/rollback?generation=99",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 409, "{report}");

    // Upload to one route: swapped in there and written to that route's file only.
    let v3 = guests::example_version("v3");
    let api_before = std::fs::read(&api).unwrap();
    let (status, report) = admin_json(&server, "PUT", "/routes/index/component", v3.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["result"], "loaded", "{report}");
    let reply = expect_served(&server, "/", "index", 3).await;
    assert!(reply.text().contains("version v3"), "{}", reply.text());
    expect_served(&server, "/api", "api", 2).await;
    assert_eq!(
        std::fs::read(&index).unwrap(),
        v3,
        "the upload is persisted"
    );
    assert_eq!(std::fs::read(&api).unwrap(), api_before);
    // A bad upload is refused and changes nothing.
    let reply = admin_call(
        &server,
        "PUT",
        "/routes/index/component",
        true,
        b"not wasm".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    expect_served(&server, "/", "index", 3).await;

    // With several routes the legacy single-component calls must be told which route.
    for (method, path) in [("POST", "/rollback"), ("PUT", "/component")] {
        let reply = admin_call(&server, method, path, true, v3.clone()).await;
        assert_eq!(reply.status, 409, "{method} {path}: {}", reply.text());
        for name in ["api", "index"] {
            assert!(
                reply.text().contains(name),
                "{method} {path}: the answer does not name route {name}: {}",
                reply.text()
            );
        }
    }
    expect_served(&server, "/", "index", 3).await;
    expect_served(&server, "/api", "api", 2).await;
    let (status, all) = admin_json(&server, "GET", "/status", Vec::new()).await;
    assert_eq!(status, 200, "{all}");
    let routes = all["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no `routes` in /status: {all}"));
    assert_eq!(routes.len(), 2, "{all}");
    let of = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in /status: {all}"))
    };
    assert_eq!(of("index")["current"]["generation"], 3, "{all}");
    assert_eq!(of("api")["current"]["generation"], 2, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_admin_calls_work_with_one_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let api = write(dir.path(), "api.wasm", &guests::example_version("v1"));
    let server = serve_routes(&[("/api", &api)], &["--no-watch"]);
    expect_served(&server, "/api", "api", 1).await;

    let (status, value) = admin_json(&server, "GET", "/status", Vec::new()).await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["current"]["generation"], 1, "{value}");

    let v1 = guests::example_version("v1");
    deploy_atomic(&with_custom_section(&v1, "n", b"2"), &api);
    let (status, report) = admin_json(&server, "POST", "/reload", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["result"], "loaded", "{report}");
    expect_served(&server, "/api", "api", 2).await;

    let (status, report) = admin_json(&server, "POST", "/rollback", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    expect_served(&server, "/api", "api", 1).await;

    let upload = with_custom_section(&v1, "n", b"3");
    let (status, report) = admin_json(&server, "PUT", "/component", upload.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["result"], "loaded", "{report}");
    expect_served(&server, "/api", "api", 3).await;
    assert_eq!(std::fs::read(&api).unwrap(), upload);
    let (_, value) = admin_json(&server, "GET", "/status", Vec::new()).await;
    assert_eq!(value["current"]["generation"], 3, "{value}");
}

// ----- readiness ----------------------------------------------------------------------------

/// `/readyz` answers 503 and names route `beta`.
async fn assert_not_ready(server: &Server, why: &str) {
    let reply = get(server.admin.unwrap(), "/readyz").await.unwrap();
    assert_eq!(
        reply.status,
        503,
        "{why}: {}; log:\n{}",
        reply.text(),
        server.log()
    );
    assert!(
        reply.text().contains("beta"),
        "{why}: /readyz does not name route beta: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_every_route_and_names_the_missing_one() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let alpha = write(dir.path(), "alpha.wasm", &guests::bytes(GUEST_EXAMPLE));
    let beta = dir.path().join("beta.wasm");
    let server = serve_routes(
        &[("/alpha", &alpha), ("/beta", &beta)],
        &["--debounce", "50ms"],
    );
    let admin = server.admin.unwrap();

    assert_not_ready(&server, "beta missing").await;
    expect_served(&server, "/alpha", "alpha", 1).await;
    let reply = fetch(&server, "/beta").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let listing = routes_listing(&server).await;
    let b = entry(&listing, "beta").unwrap_or_else(|| panic!("{listing:?}"));
    assert_eq!(
        (&b["ready"], &b["generation"]),
        (&Value::Bool(false), &Value::Null),
        "{b}"
    );
    assert_eq!(entry(&listing, "alpha").unwrap()["ready"], true);

    // An invalid file does not make it ready either.
    let failures = server.log_count("reload failed");
    deploy_atomic(b"garbage, not wasm", &beta);
    let failed = eventually(SWAP_WAIT, || async {
        (server.log_count("reload failed") > failures).then_some(())
    })
    .await;
    assert!(failed.is_some(), "no failed reload; log:\n{}", server.log());
    assert_not_ready(&server, "beta garbage").await;

    deploy_atomic(&guests::bytes(GUEST_EXAMPLE), &beta);
    wait_served(&server, "/beta", "beta", 1).await;
    let ready = eventually(SWAP_WAIT, || async {
        get(admin, "/readyz").await.ok().filter(|r| r.status == 200)
    })
    .await;
    assert!(ready.is_some(), "never ready; log:\n{}", server.log());
    let listing = routes_listing(&server).await;
    assert_eq!(
        entry(&listing, "beta").unwrap()["ready"],
        true,
        "{listing:?}"
    );
}
