//! State that belongs to the host, not to a generation: `wasi:config` values (read, changed
//! without a restart or a new component, never logged) and `wasi:keyvalue` state (kept across
//! swaps, restarts and hosts; limits and a backend outage are errors for the guest, never for
//! the host).

mod config;
mod keyvalue;

use hotswap_tests::guests::{self, STATEFUL};
use hotswap_tests::redis::Redis;
use hotswap_tests::{Client, Server, deploy_atomic, eventually, get, with_custom_section};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "s3cr3t-token-value";
const TOKEN: &str = "state-test-token";

/// `dir/app.wasm`: the stateful guest.
fn stateful_in(dir: &Path) -> PathBuf {
    let path = dir.join("app.wasm");
    std::fs::write(&path, guests::bytes(STATEFUL)).unwrap();
    path
}

/// `GET path` → (status, body).
async fn call(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (reply.status.as_u16(), reply.text())
}

/// Polls `GET path` until its body is `want`.
async fn wait_for_body(server: &Server, path: &str, want: &str) {
    let seen = eventually(WAIT, || async {
        let (_, body) = call(server.addr, path).await;
        (body == want).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "GET {path} never answered {want:?}; last {:?}; log:\n{}",
        call(server.addr, path).await,
        server.log()
    );
}

fn write_config(path: &Path, values: &str) {
    std::fs::write(
        path,
        format!("[component]\npath = \"app.wasm\"\n\n[component.config]\n{values}"),
    )
    .unwrap();
}

/// A server on `dir/app.wasm` configured by `dir/hotswap.toml`, with the admin API on.
fn configured(dir: &Path, values: &str, args: &[&str]) -> (Server, PathBuf) {
    stateful_in(dir);
    let toml = dir.join("hotswap.toml");
    write_config(&toml, values);
    let mut all = vec![
        "--config",
        toml.to_str().unwrap(),
        "--admin-addr",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    let server = Server::launch(&all, &[("HOTSWAP_ADMIN_TOKEN", TOKEN)], Some(dir));
    (server, toml)
}

async fn admin_post(server: &Server, path: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    let reply = Client::connect(server.admin.expect("admin API on"))
        .await
        .unwrap()
        .send_with("POST", path, &[("authorization", &auth)], Vec::new())
        .await
        .unwrap();
    (reply.status.as_u16(), reply.text())
}

async fn metrics(server: &Server) -> String {
    get(server.admin.expect("admin API on"), "/metrics")
        .await
        .unwrap()
        .text()
}
