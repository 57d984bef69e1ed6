//! Guardrails: a guest that spins, sleeps, hoards memory, traps, floods headers or asks for
//! too much, and clients that come too many at once — each is answered with the documented
//! status, and the host keeps serving everyone else. Oversized or slow client input is in
//! `client_limits`.

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

// ----- request deadline --------------------------------------------------------------------

/// Runs misbehave's `route` under a 2 s deadline while `/ok` is served on another connection.
async fn deadline_stops(route: &'static str) {
    let deadline = Duration::from_secs(2);
    let mut server = misbehave(&["--request-timeout", "2s"]);
    let addr = server.addr;
    let started = Instant::now();
    let stuck = tokio::spawn(async move {
        let reply = get(addr, route).await;
        (reply, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile, other connections are served.
    for _ in 0..3 {
        let ok = get(addr, "/ok").await.unwrap();
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    assert!(!stuck.is_finished(), "{route} answered before its deadline");

    let (reply, elapsed) = stuck.await.unwrap();
    let reply = reply.unwrap_or_else(|e| panic!("{route}: {e}; log:\n{}", server.log()));
    assert_eq!(reply.status, 504, "{route}: {}", reply.text());
    assert!(
        elapsed >= deadline - Duration::from_millis(100) && elapsed < deadline + MARGIN,
        "{route} answered after {elapsed:?}, deadline {deadline:?}"
    );
    assert!(reply.text().contains("deadline"), "{}", reply.text());
    server
        .expect_log("deadline exceeded", Duration::from_secs(5))
        .await;
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_stops_a_spinning_guest_with_504() {
    deadline_stops("/loop").await;
}

/// A guest spinning on the CPU yields at every epoch tick in a way that lets the runtime poll
/// its sockets, so other clients are answered within a few ticks even on a host with a single
/// worker thread (one CPU), not only when the spinner's deadline ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_leaves_room_for_other_clients_on_a_single_worker_thread() {
    let mut server = Server::start_with_env(
        Path::new(MISBEHAVE),
        &["--request-timeout", "15s"],
        &[("TOKIO_WORKER_THREADS", "1")],
    );
    let addr = server.addr;
    let stuck = tokio::spawn(async move { get(addr, "/loop").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    for _ in 0..5 {
        let ok = get(addr, "/ok").await.unwrap();
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    let took = started.elapsed();
    assert!(!stuck.is_finished(), "the spinner ended early");
    // Each of the five needs a few 10 ms ticks; starved, each waited for tokio's I/O check every
    // 61st task poll, i.e. 61 of the spinner's slices (over half a second).
    assert!(
        took < Duration::from_millis(1500),
        "5 requests beside a spinning guest took {took:?}"
    );
    stuck.abort();
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_stops_a_blocked_guest_with_504() {
    deadline_stops("/sleep-forever").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_body_is_cut_at_the_request_deadline() {
    // A client that promises 1000 bytes and sends 5 must not hold the only slot forever.
    let server = example(&[
        "--request-timeout",
        "1s",
        "--max-concurrency",
        "1",
        "--queue-timeout",
        "10s",
    ]);
    let outcome = raw::exchange(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nhello",
        Duration::from_secs(1) + MARGIN + Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(
        outcome.closed,
        "the stalled upload was still open after {:?}: {:?}",
        outcome.elapsed,
        outcome.text()
    );
    assert!(
        outcome.elapsed < Duration::from_secs(1) + MARGIN,
        "closed after {:?}",
        outcome.elapsed
    );
    // guest-example echoes as it reads: a 504, or a 200 whose chunked body was cut (no last
    // chunk), never a response that looks complete.
    match outcome.status() {
        Some(504) | None => {}
        Some(200) => assert!(
            !outcome.text().ends_with("\r\n0\r\n\r\n"),
            "a cut upload looks echoed whole: {}",
            outcome.text()
        ),
        Some(other) => panic!("status {other}: {}", outcome.text()),
    }
    // The slot is free again.
    let started = Instant::now();
    assert_eq!(get(server.addr, "/").await.unwrap().status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for the slot",
        started.elapsed()
    );
}

// ----- memory ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_gets_500_and_the_log_names_the_memory_limit() {
    let mut server = misbehave(&["--max-memory", "16MiB"]);
    let started = Instant::now();
    let reply = get(server.addr, "/alloc").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(reply.text().contains("memory limit"), "{}", reply.text());
    server
        .expect_log("memory limit", Duration::from_secs(5))
        .await;
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_memory_hogs_keep_host_rss_bounded() {
    // Each /alloc fills 64 MiB of guest memory; if freed instances kept their pages, 20 of
    // them would hold over 1 GiB.
    let mut server = misbehave(&["--max-memory", "64MiB"]);
    let baseline = server.rss_bytes();
    let mut peak = baseline;
    let started = Instant::now();
    for i in 0..20 {
        let reply = get(server.addr, "/alloc").await.unwrap();
        assert_eq!(reply.status, 500, "round {i}: {}", reply.text());
        peak = peak.max(server.rss_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "20 rounds took too long"
        );
    }
    let mib = |b: u64| b >> 20;
    eprintln!(
        "host RSS: {} MiB at start, {} MiB at peak",
        mib(baseline),
        mib(peak)
    );
    assert!(
        peak < 400 << 20,
        "host RSS grew from {} MiB to {} MiB over 20 memory hogs",
        mib(baseline),
        mib(peak)
    );
    assert_healthy(&mut server).await;
}

// ----- traps -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn trap_before_the_response_is_a_short_plain_500() {
    let mut server = misbehave(&[]);
    let reply = get(server.addr, "/trap-before").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    let content_type = header(&reply, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "content-type {content_type:?}"
    );
    assert!(
        !reply.body.is_empty() && reply.body.len() < 4096,
        "body of {} bytes: {}",
        reply.body.len(),
        reply.text()
    );
    // The operator's side: one warning that names the request. The log reaches the test
    // through a pipe, later than the response: wait for the line.
    server
        .expect_log("guest trapped", Duration::from_secs(5))
        .await;
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("guest trapped"))
        .unwrap_or_else(|| panic!("no trap warning; log:\n{log}"));
    for field in [
        "request_id=1",
        "method=GET",
        "path=/trap-before",
        "generation=1",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_details_in_dev_mode_leave_out_the_host_stack() {
    // Rust developers often run with RUST_BACKTRACE=1; the host's own stack is no business of
    // an HTTP client, even in dev mode, where the guest's trap is shown.
    let mut server = Server::start_with_env(
        Path::new(MISBEHAVE),
        &["--mode", "dev"],
        &[("RUST_BACKTRACE", "1")],
    );
    for route in ["/trap-before", "/random?n=100000000"] {
        let reply = get(server.addr, route).await.unwrap();
        assert_eq!(reply.status, 500, "{route}: {}", reply.text());
        let text = reply.text();
        for host_detail in ["Stack backtrace", "tokio::", "hotswap::", ".cargo/registry"] {
            assert!(
                !text.contains(host_detail),
                "{route}: the 500 body shows {host_detail:?}:\n{text:.2000}"
            );
        }
        assert!(
            reply.body.len() < 4096,
            "{route}: a {}-byte 500 body",
            reply.body.len()
        );
    }
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_details_stay_out_of_500_bodies_in_prod_mode() {
    let mut server = misbehave(&["--mode", "prod"]);
    for route in ["/trap-before", "/random?n=100000000"] {
        let reply = get(server.addr, route).await.unwrap();
        assert_eq!(reply.status, 500, "{route}: {}", reply.text());
        let text = reply.text();
        assert!(
            !text.contains("backtrace") && !text.contains("wasm"),
            "{route}: {text}"
        );
        assert!(reply.body.len() < 256, "{route}: {text}");
    }
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_after_a_partial_body_cuts_the_connection() {
    let mut server = misbehave(&[]);
    for mut client in [
        Client::connect(server.addr).await.unwrap(),
        Client::connect_h2(server.addr).await.unwrap(),
    ] {
        match client.get("/trap-after").await {
            Err(e) => assert!(e.contains("cut") || e.contains("request failed"), "{e}"),
            Ok(reply) => panic!(
                "a trapped body must not look complete: {} {:?}",
                reply.status,
                reply.text()
            ),
        }
    }
    assert_healthy(&mut server).await;
}

// ----- concurrency -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_concurrency_get_503_with_retry_after() {
    let server = example(&["--max-concurrency", "2", "--queue-timeout", "200ms"]);
    let addr = server.addr;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep?ms=2000").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let extra: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                (get(addr, "/sleep?ms=2000").await, started.elapsed())
            })
        })
        .collect();
    for task in extra {
        let (reply, elapsed) = task.await.unwrap();
        let reply = reply.unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            header(&reply, "retry-after").is_some(),
            "no retry-after: {:?}",
            reply.headers
        );
        assert!(
            elapsed < Duration::from_millis(1500),
            "503 took {elapsed:?}"
        );
    }
    for task in slow {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains("slept 2000 ms"), "{}", reply.text());
    }
    // The slots are free again.
    let again: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep?ms=10").await }))
        .collect();
    for task in again {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(get(addr, "/").await.unwrap().status, 200);
}

/// `component` with `extra` more core instances appended, each of a module that has nothing but
/// a one-page linear memory: every instance of the result holds `extra` more memories, as a
/// component built from several memory-owning modules (e.g. with a WASI preview 1 adapter) does.
fn with_extra_memories(component: &[u8], extra: usize) -> Vec<u8> {
    use wasmparser::{Parser, Payload};
    // Core modules the component defines at its top level: the appended ones follow them in the
    // core module index space.
    let mut depth = 0usize;
    let mut modules = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.expect("the component parses") {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            _ => {}
        }
    }
    // `(module (memory 1))`: the preamble, then a memory section holding one memory of min 1.
    let module: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01";
    let mut out = component.to_vec();
    let mut instances = Vec::new();
    push_leb128(&mut instances, extra);
    for i in 0..extra {
        push_section(&mut out, 1, module); // component core-module section
        instances.push(0x00); // instantiate
        push_leb128(&mut instances, modules + i);
        push_leb128(&mut instances, 0); // no imports
    }
    push_section(&mut out, 2, &instances); // component core-instance section
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_instance_pool_is_a_503_with_retry_after_not_a_crash() {
    // The pool holds 2 memories per instance slot (max-concurrency + 4 slots = 8 → 16
    // memories). This component needs 8 memories an instance, so two requests in flight fill
    // the memory pool while the concurrency cap (4) still admits a third.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, with_extra_memories(&guests::bytes(MISBEHAVE), 7)).unwrap();
    let mut server = Server::start(
        &path,
        &["--max-concurrency", "4", "--request-timeout", "3s"],
    );
    let addr = server.addr;
    let ok = get(addr, "/ok").await.unwrap();
    assert_eq!(ok.status, 200, "{}; log:\n{}", ok.text(), server.log());

    let holders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep-forever").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let reply = get(addr, "/ok").await.unwrap();
    assert_eq!(
        reply.status,
        503,
        "{}; log:\n{}",
        reply.text(),
        server.log()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "503 took {:?}",
        started.elapsed()
    );
    assert_eq!(
        header(&reply, "retry-after"),
        Some("1"),
        "{:?}",
        reply.headers
    );
    assert!(reply.text().contains("retry"), "{}", reply.text());
    server
        .expect_log("instance pool exhausted", Duration::from_secs(5))
        .await;
    // The log says which pool ran out, so an operator knows what to change.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("instance pool exhausted"))
        .unwrap();
    assert!(line.contains("memor"), "{line}");
    // Logged once, at WARN, with the request's fields.
    assert_eq!(server.log_count("instance pool exhausted"), 1, "{log}");
    for field in ["WARN", "request_id=", "method=GET", "path=/ok"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }

    for holder in holders {
        let reply = holder.await.unwrap().unwrap();
        assert_eq!(reply.status, 504, "{}", reply.text());
    }
    // The slots came back: the same requests are served again.
    assert_healthy(&mut server).await;
    assert_healthy(&mut server).await;
}

// ----- outbound HTTP -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_is_denied_unless_allowed() {
    let upstream = Upstream::start().await;
    let url = format!("/outbound?url=http://{}/", upstream.addr);

    let server = misbehave(&[]);
    let reply = get(server.addr, &url).await.unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.text(), "error HttpRequestDenied");
    server
        .expect_log("outbound request denied", Duration::from_secs(5))
        .await;
    let denial = server
        .log()
        .lines()
        .find(|l| l.contains("outbound request denied"))
        .unwrap_or_default()
        .to_string();
    assert!(
        denial.contains("127.0.0.1"),
        "the log names the refused host: {denial}"
    );

    // The incoming Host header cannot steer the verdict.
    let upstream_host = upstream.addr.to_string();
    let reply = Client::connect(server.addr)
        .await
        .unwrap()
        .send_with(
            "GET",
            &url,
            &[("host", &upstream_host)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.text(), "error HttpRequestDenied");
    assert_eq!(upstream.hits(), 0, "a denied request reached the upstream");
    drop(server);

    let allowed = format!("127.0.0.1:{}", upstream.addr.port());
    let server = misbehave(&["--allow-outbound", &allowed]);
    let reply = get(server.addr, &url).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "status 200");
    assert_eq!(upstream.hits(), 1);

    // The rule names a port: the same host on another port stays denied.
    let other = Upstream::start().await;
    let reply = get(
        server.addr,
        &format!("/outbound?url=http://{}/", other.addr),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.text(), "error HttpRequestDenied");
    assert_eq!(other.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_call_to_a_silent_upstream_is_bounded_by_the_request_deadline() {
    let upstream = Upstream::start_silent().await;
    let allowed = upstream.addr.to_string();
    let mut server = misbehave(&["--allow-outbound", &allowed, "--request-timeout", "1s"]);
    let started = Instant::now();
    let reply = get(
        server.addr,
        &format!("/outbound?url=http://{}/", upstream.addr),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1) + MARGIN,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(upstream.hits(), 1, "the allowed call was made");
    assert_healthy(&mut server).await;
}

// ----- what the guest is given -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn guest_sees_only_the_env_it_is_given() {
    let server = misbehave(&["--env", "GREETING=hi=there", "--env", "EMPTY="]);
    let reply = get(server.addr, "/env?key=GREETING").await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "hi=there")
    );
    let reply = get(server.addr, "/env?key=EMPTY").await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, ""));
    // The host's own environment (it has HOME, PATH and HOTSWAP_LOG) is not inherited.
    for key in ["HOME", "PATH", "HOTSWAP_LOG"] {
        let reply = get(server.addr, &format!("/env?key={key}")).await.unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (404, "unset"),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_random_request_is_refused_and_the_host_lives() {
    let mut server = misbehave(&[]);
    let reply = get(server.addr, "/random?n=1000").await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "1000")
    );
    let reply = get(server.addr, "/random?n=100000000").await.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_setting_thousands_of_headers_does_not_hurt_the_host() {
    let mut server = misbehave(&[]);
    // Raw, because an HTTP client library refuses a response with 5000 header fields.
    let outcome = raw::exchange(
        server.addr,
        b"GET /headers?n=5000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(outcome.closed, "no complete answer within 30 s");
    assert!(
        matches!(outcome.status(), Some(200 | 500)),
        "{:.500}",
        outcome.text()
    );
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_stdout_and_stderr_become_log_lines_tagged_with_the_generation() {
    let server = misbehave(&[]);
    let reply = get(server.addr, "/stdio").await.unwrap();
    assert_eq!(reply.status, 200);
    for (text, stream) in [("hello stdout", "stdout"), ("hello stderr", "stderr")] {
        server.expect_log(text, Duration::from_secs(5)).await;
        let log = server.log();
        let line = log.lines().find(|l| l.contains(text)).unwrap();
        assert!(line.contains("generation=1"), "{line}");
        assert!(line.contains(stream), "{line}");
    }
}
