//! Helpers for the end-to-end tests: a handle on a running `hotswap` process, a tiny HTTP
//! client, and guest components built from source.

#![allow(missing_docs)]

pub mod admin;
pub mod browser;
pub mod client;
pub mod fake_registry;
pub mod guests;
pub mod health;
pub mod metrics;
pub mod oci;
pub mod otlp;
pub mod raw;
pub mod redis;
pub mod server;
pub mod sse;
pub mod start;
pub mod upstream;
pub mod waits;
pub mod worlds;

pub use client::{Client, Reply, get, post, post_chunked};
pub use server::{Server, Starting};

use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago on loopback (for settings that must name a port before
/// the server starts, such as a registry's or an admin address a guest is pointed at).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes `bytes` to `dest` the way a careful deploy does: to a temp file in the same
/// directory, then an atomic rename over the destination.
pub fn deploy_atomic(bytes: &[u8], dest: &Path) {
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).expect("write temp component");
    std::fs::rename(&tmp, dest).expect("rename component into place");
}

/// Overwrites `dest` in place (same inode), as `cp` does.
pub fn deploy_in_place(bytes: &[u8], dest: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(dest)
        .expect("open component for rewrite");
    f.write_all(bytes).expect("rewrite component");
    f.sync_all().ok();
}

/// A component that differs from `bytes` only by a trailing custom section named `name`: it
/// behaves the same but hashes differently, so the host sees new content.
pub fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    push_leb128(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = bytes.to_vec();
    push_section(&mut out, 0, &content);
    out
}

/// How many functions the core modules of `component` define (their code sections' entries):
/// the functions a compile translates from wasm, beside the trampolines it generates.
pub fn defined_functions(component: &[u8]) -> u64 {
    use wasmparser::{Parser, Payload};
    Parser::new(0)
        .parse_all(component)
        .map(|payload| match payload.expect("a valid component") {
            Payload::CodeSectionStart { count, .. } => u64::from(count),
            _ => 0,
        })
        .sum()
}

/// Appends a (component or module) section: its id, its size, its contents.
pub fn push_section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    push_leb128(out, contents.len());
    out.extend_from_slice(contents);
}

/// Appends `n` as an unsigned LEB128 number, the way wasm binaries encode sizes and indices.
pub fn push_leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `len` pseudo-random bytes (xorshift, seeded by `seed`): a body whose echo would show any
/// piece dropped, repeated or reordered.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}
