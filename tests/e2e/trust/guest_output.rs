//! Guest output is bounded per request: a guest that writes megabytes to its stdout or stderr
//! costs the host neither the memory nor the log, only up to `--max-guest-output` of lines and
//! then one line saying how much was dropped.

use hotswap_tests::get;
use hotswap_tests::worlds::both_worlds;
use std::time::Duration;

/// Log lines the guest's streams produced.
fn guest_bytes(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("stream=stdout") || l.contains("stream=stderr"))
        .map(str::len)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_flooding_its_output_is_cut_at_the_per_request_limit() {
    both_worlds(async |world| {
        let server = world.misbehave(&["--max-guest-output", "64KiB"]);
        let reply = get(server.addr, "/print-long?n=20000000").await.unwrap();
        assert_eq!(reply.status, 200, "{world}: {}", reply.text());
        server
            .expect_log("guest output over", Duration::from_secs(10))
            .await;
        let log = server.log();
        let logged = guest_bytes(&log);
        assert!(
            logged < 200 << 10,
            "{world}: {logged} bytes of guest output logged for a 64 KiB limit"
        );
        let dropped = log
            .lines()
            .find(|l| l.contains("guest output over"))
            .unwrap();
        assert!(
            dropped.contains("bytes dropped") && dropped.contains("request_id"),
            "{world}: {dropped}"
        );
        // The next request has a budget of its own.
        let reply = get(server.addr, "/stdio").await.unwrap();
        assert_eq!(reply.status, 200, "{world}");
        server
            .expect_log("hello stderr", Duration::from_secs(5))
            .await;
    })
    .await;
}
