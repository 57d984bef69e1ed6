//! Matching a request to its route (longest prefix on segment boundaries, the full path and
//! query reaching the guest, 404 with no route) and the route configuration errors that stop
//! the host before it binds.

use super::*;

// ----- matching -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn longest_prefix_matches_on_segment_boundaries() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let api = write(dir.path(), "api.wasm", &guests::example_version("v1"));
    let v1 = write(dir.path(), "v1.wasm", &guests::example_version("v1"));
    let index = write(dir.path(), "index.wasm", &guests::example_version("v2"));
    // Order on the command line does not matter: the longest prefix wins.
    let server = serve_routes(&[("/", &index), ("/api/v1", &v1), ("/api", &api)], &[]);

    for path in ["/api/v1", "/api/v1/", "/api/v1/users?id=3"] {
        let reply = expect_served(&server, path, "api-v1", 1).await;
        assert_eq!(reply.text(), "not found\n", "GET {path}");
    }
    for path in [
        "/api",
        "/api/",
        "/api/x",
        "/api/x/y?q=1",
        "/api/v10",
        "/api/v2/x",
    ] {
        let reply = expect_served(&server, path, "api", 1).await;
        // guest-example answers 404 `not found` for any path but its own: it saw `/api…`, not
        // a path with the prefix cut off (that would be `/`, its hello).
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text());
        assert_eq!(reply.text(), "not found\n", "GET {path}");
    }
    for path in ["/apix", "/apix/y", "/ap", "/other"] {
        let reply = expect_served(&server, path, "index", 1).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text());
    }
    let reply = expect_served(&server, "/", "index", 1).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("version v2"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_the_full_path_and_query() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let echo = write(dir.path(), "echo.wasm", &guests::bytes(GUEST_EXAMPLE));
    let sleep = write(dir.path(), "sleep.wasm", &guests::bytes(GUEST_EXAMPLE));
    let ok = write(dir.path(), "ok.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(&[("/echo", &echo), ("/sleep", &sleep), ("/ok", &ok)], &[]);

    // Each guest answers these only at its exact path: were the prefix cut off, each would see
    // `/` and answer 404.
    let reply = post(server.addr, "/echo", b"hello routes".to_vec())
        .await
        .unwrap();
    assert_text(&reply, 200, "hello routes");
    assert_eq!(route_of(&reply), Some("echo"));
    let reply = expect_served(&server, "/sleep?ms=7", "sleep", 1).await;
    assert_text(&reply, 200, "slept 7 ms\n");
    let reply = expect_served(&server, "/ok", "ok", 1).await;
    assert_text(&reply, 200, "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_matching_route_is_a_short_plain_404_and_no_guest_runs() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    // misbehave traps on `/trap-before` and prints on `/stdio`: had either request reached it,
    // the log would show it.
    let api = write(dir.path(), "api.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(&[("/api", &api)], &[]);
    let before = scrape(&server).await;
    let served_before: f64 = before
        .iter()
        .filter(|s| s.name == "hotswap_requests_total" && s.label("route") == Some("api"))
        .map(|s| s.value)
        .sum();

    for path in ["/other", "/trap-before", "/stdio", "/", "/apix"] {
        let reply = fetch(&server, path).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text());
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "GET {path}: content-type {content_type:?}"
        );
        assert!(
            !reply.body.is_empty() && reply.body.len() < 256,
            "GET {path}: a {}-byte body: {:?}",
            reply.body.len(),
            reply.text()
        );
        assert!(
            reply.text().contains(path),
            "GET {path}: the body does not name the path: {:?}",
            reply.text()
        );
        assert_ne!(route_of(&reply), Some("api"), "GET {path}");
    }
    let reply = fetch(&server, "/other?x=1").await;
    assert_eq!(reply.status, 404);
    assert!(reply.text().contains("/other"), "{:?}", reply.text());

    // The route itself works (misbehave's own 404 for `/api`, served by the guest).
    let reply = expect_served(&server, "/api", "api", 1).await;
    assert_eq!(reply.text(), "not found");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = server.log();
    for sign in ["guest trapped", "hello stdout", "panicked"] {
        assert!(
            !log.contains(sign),
            "a guest ran for an unmatched path ({sign:?} in the log):\n{log}"
        );
    }
    // Only the one request to /api reached the route.
    let after = scrape(&server).await;
    let served_after: f64 = after
        .iter()
        .filter(|s| s.name == "hotswap_requests_total" && s.label("route") == Some("api"))
        .map(|s| s.value)
        .sum();
    assert_eq!(served_after - served_before, 1.0, "{after:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_component_is_the_index_route() {
    let _shared = QUIET.read().await;
    let server = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let reply = expect_served(&server, "/", "index", 1).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    expect_served(&server, "/anything/else", "index", 1).await;
}

// ----- configuration errors -----------------------------------------------------------------

#[test]
fn route_configuration_errors_exit_1_before_binding() {
    let _shared = QUIET.blocking_read();
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "first.wasm", &guests::bytes(GUEST_EXAMPLE));
    let b = write(dir.path(), "second.wasm", &guests::bytes(GUEST_EXAMPLE));
    let a_spec = format!("/api={}", a.display());
    let b_spec = format!("/api={}", b.display());

    // The same prefix twice: the message names the prefix.
    let out = serve_to_exit(&["--route", &a_spec, "--route", &b_spec]);
    assert_config_error(&out, "duplicate prefix");
    assert!(out.stderr.contains("/api"), "{}", out.stderr);
    for file in ["first.wasm", "second.wasm"] {
        assert!(
            out.stderr.contains(file),
            "the message does not name the route of {file}: {}",
            out.stderr
        );
    }

    // A prefix without its leading `/`.
    let out = serve_to_exit(&["--route", &format!("api={}", a.display())]);
    assert_config_error(&out, "prefix without a leading /");
    assert!(out.stderr.contains("api"), "{}", out.stderr);

    // `--route` without `=`.
    let out = serve_to_exit(&["--route", "/api"]);
    assert_config_error(&out, "--route without =");
    assert!(out.stderr.contains("/api"), "{}", out.stderr);

    // `--route` together with a positional component.
    let out = serve_to_exit(&[a.to_str().unwrap(), "--route", &b_spec]);
    assert_config_error(&out, "--route with a positional component");
    assert!(out.stderr.contains("--route"), "{}", out.stderr);

    // The same prefix twice in a file, with names: the message names both routes.
    let toml = dir.path().join("dup.toml");
    std::fs::write(
        &toml,
        "[[route]]\nname = \"alpha-route\"\nprefix = \"/same\"\npath = \"first.wasm\"\n\n\
         [[route]]\nname = \"beta-route\"\nprefix = \"/same\"\npath = \"second.wasm\"\n",
    )
    .unwrap();
    let out = serve_to_exit(&["--config", toml.to_str().unwrap()]);
    assert_config_error(&out, "duplicate prefix in hotswap.toml");
    for name in ["alpha-route", "beta-route"] {
        assert!(
            out.stderr.contains(name),
            "the message does not name {name}: {}",
            out.stderr
        );
    }

    // `[[route]]` together with `[component] path`.
    let toml = dir.path().join("both.toml");
    std::fs::write(
        &toml,
        "[component]\npath = \"first.wasm\"\n\n[[route]]\nprefix = \"/api\"\npath = \"second.wasm\"\n",
    )
    .unwrap();
    let out = serve_to_exit(&["--config", toml.to_str().unwrap()]);
    assert_config_error(&out, "[[route]] with [component] path");
    assert!(
        out.stderr.contains("route") && out.stderr.contains("component"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn route_flags_replace_the_files_routes() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "file-route.wasm", &guests::bytes(GUEST_EXAMPLE));
    let flag = write(dir.path(), "flag-route.wasm", &guests::bytes(GUEST_EXAMPLE));
    let toml = dir.path().join("hotswap.toml");
    std::fs::write(
        &toml,
        "[[route]]\nprefix = \"/from-file\"\npath = \"file-route.wasm\"\n",
    )
    .unwrap();
    let args = route_args(&[("/", &flag)], &["--config", toml.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::launch(&args, &[], Some(dir.path()));
    // /from-file is not a route: the index route (the only one) serves it.
    expect_served(&server, "/from-file", "index", 1).await;
    expect_served(&server, "/", "index", 1).await;
}
