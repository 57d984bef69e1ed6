//! Canaries: a new generation serves beside the current one on a share of the traffic and is
//! promoted or rolled back on its numbers, in the same process, on the same requests.
//!
//! The builds are the misbehaving guest with its `/canary` mode overwritten in its data
//! (`guests::canary_build`): the same code, other bytes, and a behaviour per build (fail, trap,
//! slow, another body), so that every deploy is a new generation.

mod shadow;
mod sources;
mod split;

use hotswap_tests::guests::{MISBEHAVE, canary_build};
use hotswap_tests::worlds::{World, both_worlds};
use hotswap_tests::{Client, Server, deploy_atomic, eventually, get};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a deploy may take to become the candidate (it compiles first).
const LOAD_WAIT: Duration = Duration::from_secs(60);

/// A host on `world`'s misbehaving guest (mode `ok`) at `app.wasm` in a directory of its own,
/// with the admin API (token `secret`) and `args`.
pub(crate) struct Host {
    _dir: tempfile::TempDir,
    pub(crate) app: PathBuf,
    pub(crate) server: Server,
    world: World,
}

impl Host {
    pub(crate) fn start(world: World, args: &[&str]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.wasm");
        std::fs::write(&app, canary_build(world.misbehave_guest(), "ok..")).unwrap();
        let mut all = vec!["--admin-addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let server = Server::start_with_env(&app, &all, &[("HOTSWAP_ADMIN_TOKEN", "secret")]);
        Host {
            _dir: dir,
            app,
            server,
            world,
        }
    }

    /// Deploys the build of `mode` and waits until it runs as the candidate; its generation.
    pub(crate) async fn deploy_candidate(&self, mode: &str) -> u64 {
        let before = self.canary().await["candidate"]["generation"].as_u64();
        deploy_atomic(&canary_build(self.world.misbehave_guest(), mode), &self.app);
        eventually(LOAD_WAIT, || async {
            let generation = self.canary().await["candidate"]["generation"].as_u64()?;
            (Some(generation) != before).then_some(generation)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "`{mode}` never became the candidate; log:\n{}",
                self.server.log()
            )
        })
    }

    /// `GET /routes/index/canary`.
    pub(crate) async fn canary(&self) -> serde_json::Value {
        admin_json(self.server.admin.unwrap(), "GET", "/routes/index/canary")
            .await
            .1
    }

    /// Waits until the canary has a verdict; the last verdict.
    pub(crate) async fn verdict(&self) -> serde_json::Value {
        eventually(Duration::from_secs(30), || async {
            let canary = self.canary().await;
            canary["candidate"]
                .is_null()
                .then(|| canary["last_verdict"].clone())
        })
        .await
        .unwrap_or_else(|| panic!("no verdict; log:\n{}", self.server.log()))
    }
}

/// An admin call with the token: status and JSON.
pub(crate) async fn admin_json(
    admin: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let mut client = Client::connect(admin).await.unwrap();
    let reply = client
        .send_with(
            method,
            path,
            &[("authorization", "Bearer secret")],
            Vec::new(),
        )
        .await
        .unwrap();
    let value = serde_json::from_str(&reply.text()).unwrap_or(serde_json::Value::Null);
    (reply.status.as_u16(), value)
}

/// What one request saw: its status, generation and role.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) status: u16,
    pub(crate) generation: Option<u64>,
    pub(crate) role: Option<String>,
}

/// `n` requests to `path` over `conns` keep-alive connections, each with `headers`.
pub(crate) async fn hit(
    addr: SocketAddr,
    path: &str,
    n: usize,
    conns: usize,
    headers: &[(&str, &str)],
) -> Vec<Seen> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (path, headers) = (path.to_string(), headers.clone());
        let count = n / conns + usize::from(c < n % conns);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut seen = Vec::with_capacity(count);
            for _ in 0..count {
                let reply = client
                    .send_with("GET", &path, &headers, Vec::new())
                    .await
                    .unwrap();
                seen.push(Seen {
                    status: reply.status.as_u16(),
                    generation: reply.generation(),
                    role: reply.header("x-hotswap-role").map(str::to_string),
                });
            }
            seen
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn share(seen: &[Seen], role: &str) -> f64 {
    seen.iter()
        .filter(|s| s.role.as_deref() == Some(role))
        .count() as f64
        / seen.len() as f64
}
