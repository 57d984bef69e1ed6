//! A registry that misbehaves on purpose, for what a real one never does: a layer or a manifest
//! sent without end, or trickled a few bytes at a time. It speaks just enough of the
//! distribution API for the host (`HEAD`/`GET` of manifests by tag or digest, `GET` of blobs)
//! over raw HTTP/1.1 on loopback, one connection per request, and can ask for a Bearer token
//! the way ghcr.io and Docker Hub do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a manifest or a blob is sent.
#[derive(Clone)]
pub enum Body {
    /// These bytes, with their `Content-Length`.
    Bytes(Vec<u8>),
    /// Chunks of zeros as fast as the peer takes them, never ending.
    Endless,
    /// Sixteen bytes every 100 ms, never ending: never idle long enough for a read timeout.
    Trickle,
}

const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A JWT-sized token the Bearer mode hands out and then requires.
pub const TOKEN: &str = "fake-registry-token";

#[derive(Default)]
struct State {
    /// `REPO:TAG` → manifest digest.
    tags: HashMap<String, String>,
    /// Digest → manifest.
    manifests: HashMap<String, Body>,
    /// Digest → blob.
    blobs: HashMap<String, Body>,
    /// `METHOD PATH` of every request, in order.
    requests: Vec<String>,
    /// Whether requests need `Authorization: Bearer TOKEN`.
    bearer: bool,
}

/// A running fake registry; stops when dropped.
pub struct FakeRegistry {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Endless or trickling bodies being sent right now.
    open_streams: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    /// Binds `127.0.0.1:0` and starts answering. Must be called inside a tokio runtime.
    pub async fn start() -> FakeRegistry {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` (e.g. the address of a registry dropped before, to bring it back, empty).
    pub async fn start_on(addr: SocketAddr) -> FakeRegistry {
        let listener = TcpListener::bind(addr).await.expect("bind fake registry");
        let addr = listener.local_addr().expect("fake registry address");
        let state = Arc::new(Mutex::new(State::default()));
        let open_streams = Arc::new(AtomicUsize::new(0));
        let (s, o) = (state.clone(), open_streams.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, addr, s.clone(), o.clone()));
            }
        });
        FakeRegistry {
            addr,
            state,
            open_streams,
            task,
        }
    }

    /// From now on, every request needs a Bearer token from `GET /token`.
    pub fn require_bearer_token(&self) {
        self.state().bearer = true;
    }

    /// `oci://127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.addr)
    }

    /// Points `REPO:TAG` at a wasm component artifact of `component`; returns the manifest
    /// digest.
    pub fn push(&self, repo_and_tag: &str, component: &[u8]) -> String {
        let layer = digest(component);
        self.state()
            .blobs
            .insert(layer.clone(), Body::Bytes(component.to_vec()));
        self.tag_manifest(repo_and_tag, &layer, component.len() as u64)
    }

    /// Points `REPO:TAG` at an artifact whose layer descriptor says `size` bytes (with a digest
    /// no bytes will match) and whose blob is sent as `body`; returns the layer's digest.
    pub fn push_layer(&self, repo_and_tag: &str, body: Body, size: u64) -> String {
        let layer =
            digest(format!("{repo_and_tag} {size} {}", self.state().blobs.len()).as_bytes());
        self.state().blobs.insert(layer.clone(), body);
        self.tag_manifest(repo_and_tag, &layer, size);
        layer
    }

    /// Points `REPO:TAG` at a digest whose manifest is sent as `body` (a `HEAD` gives the
    /// digest); returns the digest.
    pub fn push_manifest_body(&self, repo_and_tag: &str, body: Body) -> String {
        let mut state = self.state();
        let manifest =
            digest(format!("manifest of {repo_and_tag} {}", state.manifests.len()).as_bytes());
        state.manifests.insert(manifest.clone(), body);
        state
            .tags
            .insert(repo_and_tag.to_string(), manifest.clone());
        manifest
    }

    fn tag_manifest(&self, repo_and_tag: &str, layer: &str, size: u64) -> String {
        let config = digest(b"{}");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{WASM_CONFIG}","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{layer}","size":{size}}}]}}"#
        );
        let manifest_digest = digest(manifest.as_bytes());
        let mut state = self.state();
        state
            .manifests
            .insert(manifest_digest.clone(), Body::Bytes(manifest.into_bytes()));
        state
            .tags
            .insert(repo_and_tag.to_string(), manifest_digest.clone());
        manifest_digest
    }

    /// How many requests so far had a request line (`METHOD PATH`) containing `needle`.
    pub fn requests(&self, needle: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }

    /// Every request line so far, for a failing test's message.
    pub fn request_log(&self) -> String {
        self.state().requests.join("\n")
    }

    /// Endless or trickling bodies being sent now (their peer has not hung up).
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::SeqCst)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `sha256:HEX` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    hotswap::digest::sha256(bytes)
        .iter()
        .fold(String::from("sha256:"), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Reads one request and answers it; the connection closes after the answer.
async fn answer(
    mut stream: TcpStream,
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    open_streams: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    let authorized = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}")));
    let path = target.split('?').next().unwrap_or("").to_string();
    let (reply, body) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.requests.push(format!("{method} {target}"));
        route(&state, &method, &path, authorized, addr)
    };
    let mut reply = reply;
    if method == "HEAD" {
        reply.push_str("content-length: 0\r\n\r\n");
        let _ = stream.write_all(reply.as_bytes()).await;
        return;
    }
    match body {
        Body::Bytes(bytes) => {
            reply.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
            let mut out = reply.into_bytes();
            out.extend_from_slice(&bytes);
            let _ = stream.write_all(&out).await;
        }
        Body::Endless | Body::Trickle => {
            reply.push_str("transfer-encoding: chunked\r\n\r\n");
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            open_streams.fetch_add(1, Ordering::SeqCst);
            let (chunk, pause) = match body {
                Body::Endless => (64 * 1024, None),
                _ => (16, Some(Duration::from_millis(100))),
            };
            let mut frame = format!("{chunk:x}\r\n").into_bytes();
            frame.extend(std::iter::repeat_n(b'0', chunk));
            frame.extend_from_slice(b"\r\n");
            while stream.write_all(&frame).await.is_ok() {
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            open_streams.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The status line and headers (unterminated) and the body for one request.
fn route(
    state: &State,
    method: &str,
    path: &str,
    authorized: bool,
    addr: SocketAddr,
) -> (String, Body) {
    let json = |status: &str, body: String| {
        (
            format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: application/json\r\n"),
            Body::Bytes(body.into_bytes()),
        )
    };
    let unknown = |code: &str| {
        json(
            "404 Not Found",
            format!(
                r#"{{"errors":[{{"code":"{code}","message":"unknown to the fake registry"}}]}}"#
            ),
        )
    };
    if path == "/token" {
        return json(
            "200 OK",
            format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
        );
    }
    if state.bearer && !authorized {
        let (mut head, body) = json(
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
        );
        head.push_str(&format!(
            "www-authenticate: Bearer realm=\"http://{addr}/token\",service=\"fake-registry\"\r\n"
        ));
        return (head, body);
    }
    if path == "/v2/" {
        return json("200 OK", "{}".into());
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return unknown("NAME_UNKNOWN");
    };
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let digest = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            state.tags.get(&format!("{repo}:{reference}")).cloned()
        };
        let Some((digest, body)) =
            digest.and_then(|d| state.manifests.get(&d).map(|b| (d.clone(), b.clone())))
        else {
            return unknown("MANIFEST_UNKNOWN");
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: {OCI_MANIFEST}\r\n\
             docker-content-digest: {digest}\r\n"
        );
        return (head, body);
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/")
        && method == "GET"
        && let Some(body) = state.blobs.get(digest)
    {
        let head =
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/octet-stream\r\n";
        return (head.to_string(), body.clone());
    }
    unknown("BLOB_UNKNOWN")
}
