//! Listening at once: the host binds and answers before its first build and load have finished
//! (503 with `Retry-After` and the reason), while `--require-component` keeps the rule of
//! validating first and failing fast.

use hotswap_tests::guests::GUEST_EXAMPLE;
use hotswap_tests::waits::{LOG_WAIT, wait_for_generation};
use hotswap_tests::{Reply, Server, get};
use std::path::Path;

// `--require-component` with a component that cannot load (exit 1, never `Serving HTTP on`)
// is in core_serving.

/// A build command that waits until the test creates `gate`, then puts guest-example at `app`:
/// what the host does meanwhile is then not a race against the build.
fn gated_build(gate: &Path, app: &Path) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; cp '{GUEST_EXAMPLE}' '{}'",
        gate.display(),
        app.display()
    )
}

/// Asserts `reply` is a 503 that says to retry and whose body contains `reason`.
fn assert_not_yet(reply: &Reply, reason: &str, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("retry-after"),
        Some("1"),
        "{what}: no Retry-After: {:?}",
        reply.headers
    );
    assert!(
        reply.text().contains(reason),
        "{what}: the body does not say {reason:?}: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_listens_while_its_first_build_runs_and_serves_once_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (app, gate) = (dir.path().join("app.wasm"), dir.path().join("go"));
    let cmd = gated_build(&gate, &app);
    let server = Server::launch_listening(
        &[
            app.to_str().unwrap(),
            "--build-cmd",
            &cmd,
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[],
        Some(dir.path()),
    );
    let admin = server.admin.expect("admin address");

    // The build has not finished (it cannot: the gate is closed), yet the host answers.
    assert_not_yet(
        &get(server.addr, "/").await.unwrap(),
        "building",
        "a request during the first build",
    );
    assert_not_yet(
        &get(server.addr, "/echo").await.unwrap(),
        &cmd,
        "the reason names the build command",
    );
    let ready = get(admin, "/readyz").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("building"), "{}", ready.text());
    let status = get(admin, "/status").await.unwrap().text();
    assert!(status.contains("building"), "/status: {status}");

    std::fs::write(&gate, "").unwrap();
    let served = wait_for_generation(&server, 1).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(get(admin, "/readyz").await.unwrap().status, 200);
    server.expect_log("startup finished", LOG_WAIT).await;
    assert!(
        server.log().contains("\"serving\":1") || server.log().contains("serving=1"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_first_build_leaves_the_host_listening_and_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    let server = Server::launch(
        &[
            app.to_str().unwrap(),
            "--build-cmd",
            "echo broken >&2; exit 3",
        ],
        &[],
        Some(dir.path()),
    );
    // `launch` returned after `Startup finished`: the build and the load have both failed.
    assert_not_yet(
        &get(server.addr, "/").await.unwrap(),
        "no valid component",
        "after a failed first build",
    );
    server.expect_log("startup finished", LOG_WAIT).await;
    assert!(server.log().contains("build failed"), "{}", server.log());

    // A good file dropped in place is served without a restart.
    std::fs::copy(GUEST_EXAMPLE, &app).unwrap();
    let served = wait_for_generation(&server, 1).await;
    assert_eq!(served.status, 200, "{}", served.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn require_component_listens_only_once_the_component_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (app, gate) = (dir.path().join("app.wasm"), dir.path().join("go"));
    // The gate is open, but the build takes a while: the startup line must wait for it.
    std::fs::write(&gate, "").unwrap();
    let cmd = format!("sleep 1; {}", gated_build(&gate, &app));
    let server = Server::launch_listening(
        &[
            app.to_str().unwrap(),
            "--build-cmd",
            &cmd,
            "--require-component",
        ],
        &[],
        Some(dir.path()),
    );
    let first = get(server.addr, "/").await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.generation(), Some(1));
}
