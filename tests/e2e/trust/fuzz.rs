//! Random and truncated bytes at the public and the admin listener for a bounded time: the host
//! never panics, keeps answering, and leaves no connection open past its timeouts.

use hotswap_tests::guests::MISBEHAVE;
use hotswap_tests::health::assert_no_host_panic;
use hotswap_tests::waits::MARGIN;
use hotswap_tests::{Server, get, noise, raw};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Requests that are valid until they are cut: each is sent truncated at a random point.
const SEEDS: &[&[u8]] = &[
    b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n0123456789",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\n\r\n",
    b"PUT /component HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n\0asm",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
    b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX: \xff\xfe\r\n\r\n",
];

/// What one fuzzing connection sends: random bytes, a truncated request, or a request with
/// random bytes spliced in.
fn input(seed: u64) -> Vec<u8> {
    let random = noise(seed, 1 + (seed as usize * 7919) % 2048);
    let base = SEEDS[seed as usize % SEEDS.len()];
    match seed % 3 {
        0 => random,
        1 => base[..(seed as usize * 31) % base.len()].to_vec(),
        _ => {
            let at = (seed as usize * 13) % base.len();
            let mut spliced = base[..at].to_vec();
            spliced.extend_from_slice(&random[..random.len().min(64)]);
            spliced.extend_from_slice(&base[at..]);
            spliced
        }
    }
}

/// Sends `input(seed)` to `addr` and reads until the server closes the connection or `limit`
/// passes; returns whether it closed.
async fn one(addr: SocketAddr, seed: u64, limit: Duration) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return true;
    };
    let _ = stream.write_all(&input(seed)).await;
    raw::read_until_closed(&mut stream, limit).await.closed
}

#[tokio::test(flavor = "multi_thread")]
async fn random_and_truncated_bytes_at_both_listeners_leave_no_panic_and_no_open_connection() {
    let mut server = Server::start_with_env(
        Path::new(MISBEHAVE),
        &[
            "--admin-addr",
            "127.0.0.1:0",
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "1s",
            "--request-timeout",
            "2s",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", "t")],
    );
    let admin = server.admin.unwrap();
    // Every connection must be closed by the server within the longest timeout that can apply
    // to it (a request that reached a guest runs for its deadline) plus the margin.
    let limit = Duration::from_secs(2) + MARGIN;
    let started = Instant::now();
    let mut seed = 1u64;
    let mut left_open = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let batch: Vec<_> = (0..32)
            .map(|i| {
                let addr = if i % 2 == 0 { server.addr } else { admin };
                let s = seed + i;
                tokio::spawn(async move { (s, addr, one(addr, s, limit).await) })
            })
            .collect();
        seed += 32;
        for task in batch {
            let (s, addr, closed) = task.await.unwrap();
            if !closed {
                left_open.push((s, addr));
            }
        }
    }
    assert!(
        left_open.is_empty(),
        "{} connections were still open {limit:?} after their input (seed, listener): {:?}",
        left_open.len(),
        &left_open[..left_open.len().min(10)]
    );
    assert!(
        server.is_running(),
        "the host exited; log:\n{}",
        server.log()
    );
    assert_eq!(get(server.addr, "/ok").await.unwrap().status, 200);
    assert_eq!(get(admin, "/healthz").await.unwrap().status, 200);
    assert_no_host_panic(&server);
}
