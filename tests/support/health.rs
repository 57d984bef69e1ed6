//! Whether a host came through what a test did to it: still running, still serving, and never
//! panicked.

use crate::{Server, get};

/// Checks that the host is still up and serving misbehave's `/ok` (either world's), and never
/// panicked.
pub async fn assert_healthy(server: &mut Server) {
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
pub fn assert_no_host_panic(server: &Server) {
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
