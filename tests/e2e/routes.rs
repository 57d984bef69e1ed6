//! Routes: many components on one host. Longest-prefix matching on segment boundaries, the
//! configuration errors, routes that swap, fail, reload, roll back and take uploads on their
//! own, readiness, per-route metrics and log fields, SIGHUP, per-route limits and builds, the
//! apps directory, and one route's spinning guest leaving another route's latency alone.

use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE, OTHER_WORLD};
use hotswap_tests::metrics::{self, Sample};
use hotswap_tests::server::{Exited, run_to_exit};
use hotswap_tests::{Client, Reply, Server, deploy_atomic, eventually, get, post};
use hotswap_tests::{deploy_in_place, with_custom_section};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const TOKEN: &str = "routes-admin-token";
/// How long a swap, a new app or a rebuild may take to show up on a busy 2-core machine.
const SWAP_WAIT: Duration = crate::swapping::SWAP_WAIT;
/// How long a log line may take to reach the test after the event it reports.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Long enough for a file event, its debounce and a reload to have happened if one were due.
const SETTLE: Duration = Duration::from_millis(1500);

/// Tests of this module take it shared; the latency test takes it alone, so that no other
/// test of this module starts servers and compiles components while it measures.
static QUIET: RwLock<()> = RwLock::const_new(());

// ----- helpers ------------------------------------------------------------------------------

/// Asserts the reply's status and whole body.
#[track_caller]
fn assert_text(reply: &Reply, status: u16, text: &str) {
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (status, text)
    );
}

/// The `x-hotswap-route` header.
fn route_of(reply: &Reply) -> Option<&str> {
    reply.headers.get("x-hotswap-route")?.to_str().ok()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `--route PREFIX=PATH` for each pair, then `extra`.
fn route_args(routes: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for (prefix, path) in routes {
        args.push("--route".to_string());
        args.push(format!("{prefix}={}", path.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `hotswap serve --route …` (plus `extra`), with the admin API on and the token set.
fn serve_routes(routes: &[(&str, &Path)], extra: &[&str]) -> Server {
    let mut args = route_args(routes, extra);
    args.extend(["--admin-addr".to_string(), "127.0.0.1:0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::launch(&args, &[("HOTSWAP_ADMIN_TOKEN", TOKEN)], None)
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `GET path`, which must get an answer.
async fn fetch(server: &Server, path: &str) -> Reply {
    get(server.addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", server.log()))
}

/// Asserts that `GET path` was served by route `route`, generation `generation`; returns it.
async fn expect_served(server: &Server, path: &str, route: &str, generation: u64) -> Reply {
    let reply = fetch(server, path).await;
    assert_eq!(
        (route_of(&reply), reply.generation()),
        (Some(route), Some(generation)),
        "GET {path}: status {} {:?}; log:\n{}",
        reply.status,
        reply.text(),
        server.log()
    );
    reply
}

/// Waits until `GET path` is served by route `route`, generation `generation`.
async fn wait_served(server: &Server, path: &str, route: &str, generation: u64) -> Reply {
    let seen = eventually(SWAP_WAIT, || async {
        get(server.addr, path)
            .await
            .ok()
            .filter(|r| route_of(r) == Some(route) && r.generation() == Some(generation))
    })
    .await;
    match seen {
        Some(reply) => reply,
        None => {
            let last = get(server.addr, path).await;
            panic!(
                "GET {path} never served by route {route} generation {generation}; last: {:?}; log:\n{}",
                last.map(|r| (
                    r.status,
                    route_of(&r).map(str::to_string),
                    r.generation(),
                    r.text()
                )),
                server.log()
            )
        }
    }
}

/// An admin call, with the token when `token` is set.
async fn admin_call(
    server: &Server,
    method: &str,
    path: &str,
    token: bool,
    body: Vec<u8>,
) -> Reply {
    let admin = server.admin.expect("admin address printed at startup");
    let auth = format!("Bearer {TOKEN}");
    let headers: Vec<(&str, &str)> = if token {
        vec![("authorization", auth.as_str())]
    } else {
        Vec::new()
    };
    Client::connect(admin)
        .await
        .unwrap()
        .send_with(method, path, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// An admin call answered with JSON: (status, parsed body).
async fn admin_json(server: &Server, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let reply = admin_call(server, method, path, true, body).await;
    let value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: status {}, not JSON ({e}): {}",
            reply.status,
            reply.text()
        )
    });
    (reply.status.as_u16(), value)
}

/// `GET /routes` on the admin listener: route name → its entry.
async fn routes_listing(server: &Server) -> Vec<Value> {
    let (status, value) = admin_json(server, "GET", "/routes", Vec::new()).await;
    assert_eq!(status, 200, "{value}");
    value["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no `routes` array: {value}"))
        .clone()
}

fn entry<'a>(listing: &'a [Value], name: &str) -> Option<&'a Value> {
    listing.iter().find(|r| r["name"] == name)
}

/// Whether a log line carries the field `route` with value `name` (pretty or JSON).
fn mentions_route(line: &str, name: &str) -> bool {
    let pretty = format!("route={name}");
    let quoted = format!("route=\"{name}\"");
    let json = format!("\"route\":\"{name}\"");
    line.contains(&quoted)
        || line.contains(&json)
        || line.match_indices(&pretty).any(|(at, m)| {
            line[at + m.len()..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace)
        })
}

/// The server's JSON log lines, parsed (other lines are skipped).
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

pub(crate) async fn scrape(server: &Server) -> Vec<Sample> {
    let reply = get(server.admin.expect("admin API on"), "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(reply.status, 200, "{}", reply.text());
    metrics::parse(&reply.text())
}

/// The value of the sample `name` for route `route` whose other labels include `labels`.
pub(crate) fn value(
    samples: &[Sample],
    name: &str,
    route: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.label("route") == Some(route)
                && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

/// p99 of `durations` (nearest rank).
fn p99(durations: &mut [Duration]) -> Duration {
    durations.sort();
    let rank = (durations.len() * 99).div_ceil(100);
    durations[rank.max(1) - 1]
}

/// 600 sequential `GET path` on one connection after a warm-up, each answered 200 by the
/// index route: their latencies.
async fn latencies(addr: SocketAddr, path: &str) -> Vec<Duration> {
    let mut client = Client::connect(addr).await.unwrap();
    for _ in 0..30 {
        assert_eq!(client.get(path).await.unwrap().status, 200);
    }
    let mut times = Vec::with_capacity(600);
    for i in 0..600 {
        let started = Instant::now();
        let reply = client.get(path).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(route_of(&reply), Some("index"));
    }
    times
}

/// The p99 a latency test allows beside spinning guests: three times the p99 alone, which
/// gets a 2 ms floor (below that, timer and scheduling noise on a shared 2-core machine would
/// make "three times as slow" meaningless). Each test says why 3× is its margin.
fn latency_budget(alone_p99: Duration) -> Duration {
    3 * alone_p99.max(Duration::from_millis(2))
}

/// The median of `durations`.
fn median(durations: &mut [Duration]) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// The CPU a latency test pins its server to: 0, when the machine has another for the test's
/// own client.
fn server_cpu() -> Option<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus >= 2).then_some(0)
}

/// Asserts that a `hotswap serve` run failed as a configuration error: exit 1, nothing served.
fn assert_config_error(out: &Exited, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1; stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("Serving HTTP on"),
        "{what}: it bound and served before failing; stdout:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("error"),
        "{what}: no error message on stderr:\n{}",
        out.stderr
    );
}

fn serve_to_exit(args: &[&str]) -> Exited {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--addr", "127.0.0.1:0"]);
    run_to_exit(&all, Duration::from_secs(60))
}

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
        let content_type = header(&reply, "content-type").unwrap_or_default();
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

// ----- independence -------------------------------------------------------------------------

/// `dir/api.wasm` (guest-example v1) at `/api` and `dir/index.wasm` (v1) at `/`.
fn two_routes(dir: &Path, extra: &[&str]) -> (Server, PathBuf, PathBuf) {
    let api = write(dir, "api.wasm", &guests::example_version("v1"));
    let index = write(dir, "index.wasm", &guests::example_version("v1"));
    let mut args = vec!["--debounce", "50ms"];
    args.extend_from_slice(extra);
    let server = serve_routes(&[("/api", &api), ("/", &index)], &args);
    (server, api, index)
}

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

// ----- metrics and logs ---------------------------------------------------------------------

/// The metric families that carry a `route` label, and the names their samples go by.
const ROUTED_FAMILIES: [&str; 7] = [
    "hotswap_requests_total",
    "hotswap_request_duration_seconds",
    "hotswap_requests_in_flight",
    "hotswap_guest_traps_total",
    "hotswap_reloads_total",
    "hotswap_reload_duration_seconds",
    "hotswap_generation",
];

fn family_of(sample: &str) -> Option<&'static str> {
    ROUTED_FAMILIES.iter().copied().find(|f| {
        sample == *f
            || ["_bucket", "_count", "_sum", "_created"]
                .iter()
                .any(|suffix| sample.strip_suffix(suffix) == Some(f))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_carry_the_route_label_first() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let index = write(dir.path(), "index.wasm", &guests::example_version("v1"));
    let trap = write(dir.path(), "trap.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(
        &[("/", &index), ("/trap-before", &trap)],
        &["--debounce", "50ms"],
    );
    for _ in 0..3 {
        assert_eq!(expect_served(&server, "/", "index", 1).await.status, 200);
    }
    let reply = fetch(&server, "/trap-before").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    deploy_atomic(&guests::example_version("v2"), &index);
    wait_served(&server, "/", "index", 2).await;

    let samples = scrape(&server).await;
    for family in ROUTED_FAMILIES {
        assert!(
            samples.iter().any(|s| family_of(&s.name) == Some(family)),
            "no {family} samples: {samples:#?}"
        );
    }
    for sample in samples.iter().filter(|s| family_of(&s.name).is_some()) {
        // A histogram bucket's `le` is the exposition format's, not the family's: the client
        // library writes it before the family's labels, so `route` comes first after it.
        let own = match sample.labels.first() {
            Some((k, _)) if k == "le" && sample.name.ends_with("_bucket") => &sample.labels[1..],
            _ => &sample.labels[..],
        };
        assert_eq!(
            own.first().map(|(k, _)| k.as_str()),
            Some("route"),
            "`route` is not the first label of {sample:?}"
        );
    }
    let requests = |route, class, generation| {
        value(
            &samples,
            "hotswap_requests_total",
            route,
            &[("status_class", class), ("generation", generation)],
        )
    };
    assert!(
        requests("index", "2xx", "1").unwrap_or(0.0) >= 3.0,
        "{samples:#?}"
    );
    assert_eq!(
        requests("trap-before", "5xx", "1"),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "trap-before",
            &[("kind", "trap")]
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "hotswap_guest_traps_total",
            "index",
            &[("kind", "trap")]
        )
        .unwrap_or(0.0),
        0.0
    );
    let loaded = |route| {
        value(
            &samples,
            "hotswap_reloads_total",
            route,
            &[("result", "loaded")],
        )
    };
    assert_eq!(loaded("index"), Some(2.0), "{samples:#?}");
    assert_eq!(loaded("trap-before"), Some(1.0), "{samples:#?}");
    assert_eq!(
        value(&samples, "hotswap_generation", "index", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "hotswap_generation", "trap-before", &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_route_on_failures_and_loads() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let index = write(dir.path(), "index.wasm", &guests::bytes(GUEST_EXAMPLE));
    let trap = write(dir.path(), "trap.wasm", &guests::bytes(MISBEHAVE));
    let server = serve_routes(
        &[("/", &index), ("/trap-before", &trap)],
        &["--log-format", "json"],
    );
    let reply = fetch(&server, "/trap-before").await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    server.expect_log("guest trapped", LOG_WAIT).await;

    let lines = json_lines(&server);
    let message = |l: &Value| l["message"].as_str().unwrap_or_default().to_string();
    let trap_line = lines
        .iter()
        .find(|l| message(l).contains("guest trapped"))
        .unwrap_or_else(|| panic!("no JSON trap line; log:\n{}", server.log()));
    assert_eq!(trap_line["route"], "trap-before", "{trap_line}");
    assert_eq!(trap_line["path"], "/trap-before", "{trap_line}");
    for route in ["index", "trap-before"] {
        let load = lines
            .iter()
            .find(|l| message(l).starts_with("loaded generation 1") && l["route"] == route);
        assert!(
            load.is_some(),
            "no `loaded generation 1` line with \"route\":\"{route}\"; log:\n{}",
            server.log()
        );
    }
}

// ----- signals ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_every_route() {
    let _shared = QUIET.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api, index) = two_routes(dir.path(), &["--no-watch"]);
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;

    let v1 = guests::example_version("v1");
    deploy_in_place(&with_custom_section(&v1, "n", b"api-2"), &api);
    deploy_in_place(&guests::example_version("v2"), &index);
    // Not watched: nothing changes on its own.
    tokio::time::sleep(SETTLE).await;
    expect_served(&server, "/api", "api", 1).await;
    expect_served(&server, "/", "index", 1).await;

    server.signal(libc::SIGHUP);
    wait_served(&server, "/api", "api", 2).await;
    let reply = wait_served(&server, "/", "index", 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());
}

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
                        header(&reply, "retry-after").map(str::to_string),
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
