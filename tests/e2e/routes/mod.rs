//! Routes: many components on one host. Longest-prefix matching on segment boundaries, the
//! configuration errors, routes that swap, fail, reload, roll back and take uploads on their
//! own, readiness, per-route metrics and log fields, SIGHUP, per-route limits and builds, the
//! apps directory, and one route's spinning guest leaving another route's latency alone.

mod independence;
mod isolation;
mod matching;
mod observability;
mod settings;

use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE, OTHER_WORLD};
use hotswap_tests::metrics::{Sample, scrape, value};
use hotswap_tests::server::{Exited, run_to_exit};
use hotswap_tests::waits::{LOG_WAIT, SWAP_WAIT};
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

/// `dir/api.wasm` (guest-example v1) at `/api` and `dir/index.wasm` (v1) at `/`.
fn two_routes(dir: &Path, extra: &[&str]) -> (Server, PathBuf, PathBuf) {
    let api = write(dir, "api.wasm", &guests::example_version("v1"));
    let index = write(dir, "index.wasm", &guests::example_version("v1"));
    let mut args = vec!["--debounce", "50ms"];
    args.extend_from_slice(extra);
    let server = serve_routes(&[("/api", &api), ("/", &index)], &args);
    (server, api, index)
}
