//! Traps before and after the response, and the concurrency cap and the instance pool: a short
//! plain 500, a cut body, or 503 with `Retry-After`, never a crash, whichever world the guest
//! targets.

use super::*;

// ----- traps -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn trap_before_the_response_is_a_short_plain_500() {
    both_worlds(async |world| {
        let mut server = world.misbehave(&[]);
        let reply = get(server.addr, "/trap-before").await.unwrap();
        assert_eq!(reply.status, 500, "{world}: {}", reply.text());
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "{world}: content-type {content_type:?}"
        );
        assert!(
            !reply.body.is_empty() && reply.body.len() < 4096,
            "{world}: body of {} bytes: {}",
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
            .unwrap_or_else(|| panic!("{world}: no trap warning; log:\n{log}"));
        for field in [
            "request_id=1",
            "method=GET",
            "path=/trap-before",
            "generation=1",
        ] {
            assert!(line.contains(field), "{world}: {field} missing from {line}");
        }
        assert_healthy(&mut server).await;
    })
    .await;
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
    both_worlds(async |world| {
        let mut server = world.misbehave(&[]);
        for mut client in [
            Client::connect(server.addr).await.unwrap(),
            Client::connect_h2(server.addr).await.unwrap(),
        ] {
            match client.get("/trap-after").await {
                Err(e) => assert!(
                    e.contains("cut") || e.contains("request failed"),
                    "{world}: {e}"
                ),
                Ok(reply) => panic!(
                    "{world}: a trapped body must not look complete: {} {:?}",
                    reply.status,
                    reply.text()
                ),
            }
        }
        assert_healthy(&mut server).await;
    })
    .await;
}

// ----- concurrency -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_concurrency_get_503_with_retry_after() {
    both_worlds(async |world| {
        let args = ["--max-concurrency", "2", "--queue-timeout", "200ms"];
        // A request that holds its slot for 2 s, and one that is quick: guest-example's
        // `/sleep` on 0.2, misbehave-p3's `/late-log` (which waits, then answers `ok`) on 0.3.
        let (server, hold, quick) = match world {
            World::P2 => (example(&args), "/sleep?ms=2000", "/sleep?ms=10"),
            World::P3 => (world.misbehave(&args), "/late-log?ms=2000", "/ok"),
        };
        let addr = server.addr;
        let slow: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { get(addr, hold).await }))
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let extra: Vec<_> = (0..3)
            .map(|_| {
                tokio::spawn(async move {
                    let started = Instant::now();
                    (get(addr, hold).await, started.elapsed())
                })
            })
            .collect();
        for task in extra {
            let (reply, elapsed) = task.await.unwrap();
            let reply = reply.unwrap();
            assert_eq!(reply.status, 503, "{world}: {}", reply.text());
            assert_eq!(
                reply.header("retry-after"),
                Some("1"),
                "{world}: {:?}",
                reply.headers
            );
            assert!(
                elapsed < Duration::from_millis(1500),
                "{world}: 503 took {elapsed:?}"
            );
        }
        for task in slow {
            let reply = task.await.unwrap().unwrap();
            assert_eq!(reply.status, 200, "{world}: {}", reply.text());
            match world {
                World::P2 => assert!(reply.text().contains("slept 2000 ms"), "{}", reply.text()),
                World::P3 => assert_eq!(reply.text(), "ok"),
            }
        }
        // The slots are free again.
        let again: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { get(addr, quick).await }))
            .collect();
        for task in again {
            assert_eq!(task.await.unwrap().unwrap().status, 200, "{world}");
        }
        assert_eq!(get(addr, quick).await.unwrap().status, 200, "{world}");
    })
    .await;
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
        reply.header("retry-after"),
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
