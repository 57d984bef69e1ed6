//! What `wasmtime serve`'s own tests check of guest output and failed requests: output written
//! in pieces is one log line, and every request that fails inside the guest is logged once at
//! WARN with the request's fields and the reason.

use hotswap_tests::guests::MISBEHAVE;
use hotswap_tests::waits::LOG_WAIT;
use hotswap_tests::{Server, get};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The server's JSON log records.
fn records(server: &Server) -> Vec<Value> {
    server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// A record's field (the host's JSON lines are flat: fields sit beside `level` and `message`).
fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    record.get(name)
}

fn message(record: &Value) -> &str {
    field(record, "message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn output_written_in_pieces_through_new_handles_is_one_line_per_request() {
    let server = Server::start(Path::new(MISBEHAVE), &["--log-format", "json"]);
    // Ten at once: each request's pieces join into its own line, never with another's.
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move { get(addr, "/print-pieces").await })
        })
        .collect();
    for request in requests {
        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    server.expect_log("start a print 1234", LOG_WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines: Vec<Value> = records(&server)
        .into_iter()
        .filter(|r| field(r, "stream").and_then(Value::as_str) == Some("stderr"))
        .collect();
    assert_eq!(lines.len(), 10, "one stderr line per request: {lines:#?}");
    let mut ids: Vec<u64> = lines
        .iter()
        .map(|line| {
            assert_eq!(message(line), "start a print 1234", "{line}");
            field(line, "request_id")
                .and_then(Value::as_u64)
                .expect("request_id")
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "each line belongs to a different request");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_lines_and_binary_output_stay_bounded() {
    let server = Server::start(Path::new(MISBEHAVE), &["--log-format", "json"]);
    let reply = get(server.addr, "/print-long?n=40000").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    server
        .expect_log("\"path\":\"/print-long\"", LOG_WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pieces: Vec<String> = records(&server)
        .into_iter()
        .filter(|r| field(r, "stream").and_then(Value::as_str) == Some("stdout"))
        .map(|r| message(&r).to_string())
        .collect();
    // 40,003 bytes in pieces of at most 16 KiB: three log lines, nothing lost, the invalid bytes
    // shown as replacement characters.
    assert_eq!(pieces.len(), 3, "{pieces:?}");
    assert!(pieces.iter().all(|p| p.chars().count() <= 16 << 10));
    let all: String = pieces.concat();
    assert_eq!(all.chars().filter(|&c| c == 'x').count(), 40_000);
    assert!(all.ends_with('\u{fffd}'), "{:?}", &all[all.len() - 12..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_that_fails_inside_the_guest_is_logged_once_at_warn() {
    let server = Server::start(
        Path::new(MISBEHAVE),
        &[
            "--log-format",
            "json",
            "--request-timeout",
            "2s",
            "--max-memory",
            "16MiB",
        ],
    );
    // route → (status, words the WARN line's message must contain)
    let cases = [
        ("/no-response", 500, "without setting a response"),
        ("/trap-before", 500, "trapped"),
        ("/trap-after", 0, "trapped"),
        ("/loop", 504, "deadline"),
        ("/sleep-forever", 504, "deadline"),
        ("/alloc", 500, "memory limit"),
    ];
    for (route, status, _) in cases {
        match get(server.addr, route).await {
            Ok(reply) => assert_eq!(reply.status, status, "{route}: {}", reply.text()),
            // Status 0 here: the response was cut after its head (a trap after responding).
            Err(e) => assert_eq!(status, 0, "{route}: {e}"),
        }
    }
    // A trap after the head ends its body early, and is logged when it happens.
    server.expect_log("guest trapped", LOG_WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings: Vec<Value> = records(&server)
        .into_iter()
        .filter(|r| r.get("level").and_then(Value::as_str) == Some("WARN"))
        .collect();
    for (route, _, reason) in cases {
        let about: Vec<&Value> = warnings
            .iter()
            .filter(|r| field(r, "path").and_then(Value::as_str) == Some(route))
            .collect();
        assert_eq!(about.len(), 1, "{route}: one WARN line, got {about:#?}");
        let line = about[0];
        assert!(message(line).contains(reason), "{route}: {line}");
        assert_eq!(
            field(line, "method").and_then(Value::as_str),
            Some("GET"),
            "{line}"
        );
        assert!(
            field(line, "request_id").and_then(Value::as_u64).is_some(),
            "{line}"
        );
        assert_eq!(
            field(line, "generation").and_then(Value::as_u64),
            Some(1),
            "{line}"
        );
    }
    // A request that succeeds is not a warning.
    assert_eq!(get(server.addr, "/ok").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !records(&server)
            .iter()
            .any(|r| r.get("level").and_then(Value::as_str) == Some("WARN")
                && field(r, "path").and_then(Value::as_str) == Some("/ok")),
        "{}",
        server.log()
    );
}
