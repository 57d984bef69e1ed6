//! Guardrails: a guest that spins, sleeps, hoards memory, traps, floods headers or asks for
//! too much, and clients that come too many at once — each is answered with the documented
//! status, and the host keeps serving everyone else. Oversized or slow client input is in
//! `client_limits`.

mod outbound_and_env;
mod time_and_memory;
mod traps_and_capacity;

use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE};
use hotswap_tests::upstream::Upstream;
use hotswap_tests::{Client, Reply, Server, get, push_leb128, push_section, raw};
use std::path::Path;
use std::time::{Duration, Instant};

/// Slack on top of a configured deadline before a test calls the answer late (a busy 2-core
/// machine, the 10 ms epoch tick, process scheduling).
pub(crate) const MARGIN: Duration = Duration::from_secs(3);

pub(crate) fn misbehave(args: &[&str]) -> Server {
    Server::start(Path::new(MISBEHAVE), args)
}

pub(crate) fn example(args: &[&str]) -> Server {
    Server::start(Path::new(GUEST_EXAMPLE), args)
}

/// Checks that the host is still up and serving misbehave's `/ok`, and never panicked.
pub(crate) async fn assert_healthy(server: &mut Server) {
    assert!(
        server.is_running(),
        "the host exited; log:\n{}",
        server.log()
    );
    let reply = get(server.addr, "/ok")
        .await
        .unwrap_or_else(|e| panic!("/ok failed: {e}; log:\n{}", server.log()));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "ok");
    assert_no_host_panic(server);
}

/// The host's own log lines never mention a panic. Guest stdout/stderr lines (tagged with
/// their `stream`, in pretty or JSON logs) are skipped: a trapping Rust guest prints its own
/// "panicked at" there.
pub(crate) fn assert_no_host_panic(server: &Server) {
    let log = server.log();
    let panics: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("panicked") && !line.contains("stream=") && !line.contains("\"stream\":")
        })
        .collect();
    assert!(
        panics.is_empty(),
        "the host panicked: {panics:#?}\nlog:\n{log}"
    );
}

pub(crate) fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}
