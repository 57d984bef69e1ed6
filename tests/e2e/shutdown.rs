//! Signals: SIGTERM drains in-flight requests and exits 0, a second SIGTERM exits at once,
//! SIGHUP reloads the component (the only way to, with `--no-watch`).

use hotswap_tests::guests::{self, GUEST_EXAMPLE, MISBEHAVE};
use hotswap_tests::waits::wait_for_generation;
use hotswap_tests::{Client, Server, deploy_in_place, eventually, get, raw};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Waits until connecting to `addr` fails, then checks that it keeps failing.
async fn connections_refused(addr: SocketAddr, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    eventually(within, || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await
    .ok_or_else(|| format!("new connections still accepted {within:?} after the signal"))?;
    let refused_after = started.elapsed();
    for _ in 0..5 {
        if TcpStream::connect(addr).await.is_ok() {
            return Err("a connection was accepted after one had been refused".into());
        }
    }
    Ok(refused_after)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut server = Server::start(Path::new(GUEST_EXAMPLE), &["--shutdown-timeout", "10s"]);
    let addr = server.addr;
    let slow: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(addr, "/sleep?ms=2000").await }))
        .collect();
    // Let all five reach the guest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);

    let refused = connections_refused(addr, Duration::from_secs(1)).await;
    for (i, task) in slow.into_iter().enumerate() {
        let reply = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i} failed: {e}; log:\n{}", server.log()));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert!(reply.text().contains("slept 2000 ms"), "{}", reply.text());
    }
    refused.unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log()));

    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exited within the shutdown timeout");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(10));
    server
        .expect_log("5 request(s) drained", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_idle_keep_alive_connections_exits_promptly() {
    let mut server = Server::start(Path::new(GUEST_EXAMPLE), &["--shutdown-timeout", "30s"]);
    let mut h1 = Client::connect(server.addr).await.unwrap();
    let mut h2 = Client::connect_h2(server.addr).await.unwrap();
    assert_eq!(h1.get("/").await.unwrap().status, 200);
    assert_eq!(h2.get("/").await.unwrap().status, 200);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(3));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 3 s after SIGTERM with idle connections; log:\n{}",
            server.log()
        )
    });
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(3));
    drop((h1, h2));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_silent_connection_exits_promptly() {
    // A client that connected but never sent a byte (as browsers preconnect).
    let mut server = Server::start(Path::new(GUEST_EXAMPLE), &["--shutdown-timeout", "30s"]);
    let silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(3));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 3 s after SIGTERM with a silent connection; log:\n{}",
            server.log()
        )
    });
    assert_eq!(status.code(), Some(0));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_sigterm_during_the_drain_exits_at_once() {
    let mut server = Server::start(
        Path::new(MISBEHAVE),
        &["--shutdown-timeout", "60s", "--request-timeout", "120s"],
    );
    let addr = server.addr;
    let stuck = tokio::spawn(async move { get(addr, "/sleep-forever").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(libc::SIGTERM);
    server
        .expect_log("shutting down", Duration::from_secs(5))
        .await;
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "the drain should wait for the stuck request"
    );

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(3));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 3 s after a second SIGTERM; log:\n{}",
            server.log()
        )
    });
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert_ne!(status.code(), Some(0), "a forced exit is not a clean one");
    assert!(
        status.code().is_some(),
        "exited through its handler, not killed by the signal: {status:?}"
    );
    assert_cut(stuck).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_timeout_cuts_requests_that_do_not_finish() {
    let mut server = Server::start(
        Path::new(MISBEHAVE),
        &["--shutdown-timeout", "1s", "--request-timeout", "120s"],
    );
    let addr = server.addr;
    let stuck = tokio::spawn(async move { get(addr, "/sleep-forever").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(4));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 4 s after SIGTERM with a 1 s shutdown timeout; log:\n{}",
            server.log()
        )
    });
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "exited before the shutdown timeout"
    );
    // Cutting a running guest is still an orderly exit: the guest's task is dropped with the
    // runtime, nothing panics on the way out.
    assert_eq!(status.code(), Some(0), "{status:?}; log:\n{}", server.log());
    server.expect_log("1 cut", Duration::from_secs(2)).await;
    assert!(!server.log().contains("panicked"), "{}", server.log());
    assert_cut(stuck).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waits_for_a_guest_whose_client_hung_up() {
    let mut server = Server::start(Path::new(MISBEHAVE), &["--shutdown-timeout", "10s"]);
    let got =
        raw::hang_up_after(server.addr, "/late-log?ms=1500", Duration::from_millis(200)).await;
    assert!(got.is_empty(), "{got:?}");
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM; log:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{status:?}; log:\n{}", server.log());
    server
        .expect_log("shutdown complete", Duration::from_secs(2))
        .await;
    // The guest ran to its end before the process did, and counts as drained.
    let log = server.log();
    let done = log.find("late-log done after 1500 ms");
    let complete = log.find("shutdown complete");
    assert!(
        done.is_some() && done < complete,
        "the guest was cut at shutdown; log:\n{log}"
    );
    assert!(log.contains("1 request(s) drained, 0 cut"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_component_that_is_not_watched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, guests::example_version("v1")).unwrap();
    let server = Server::start(&path, &["--no-watch"]);
    let first = get(server.addr, "/").await.unwrap();
    assert!(first.text().contains("version v1"), "{}", first.text());
    assert_eq!(first.generation(), Some(1));

    // Not watched: a rewritten file is not picked up on its own.
    deploy_in_place(&guests::example_version("v2"), &path);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = get(server.addr, "/").await.unwrap();
        assert_eq!(
            reply.generation(),
            Some(1),
            "reloaded without SIGHUP; log:\n{}",
            server.log()
        );
        assert!(reply.text().contains("version v1"));
    }

    server.signal(libc::SIGHUP);
    let reply = wait_for_generation(&server, 2).await;
    assert!(reply.text().contains("version v2"), "{}", reply.text());

    // SIGHUP with the file unchanged: no new generation.
    let hups = server.log_count("SIGHUP");
    server.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || async {
            (server.log_count("SIGHUP") > hups).then_some(())
        })
        .await
        .is_some(),
        "the second SIGHUP was not logged: {}",
        server.log()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.generation(), Some(2), "{}", server.log());
    assert!(
        !server.log().contains("loaded generation 3"),
        "{}",
        server.log()
    );
}

/// The request in `stuck` ends with an error (its connection was cut), within 5 s.
async fn assert_cut(stuck: tokio::task::JoinHandle<Result<hotswap_tests::Reply, String>>) {
    let reply = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the client learns the connection is gone");
    assert!(
        reply.unwrap().is_err(),
        "the stuck request cannot have been answered"
    );
}
