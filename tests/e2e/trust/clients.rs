//! Clients that go away give their capacity back: HTTP/2 streams reset by the hundred cannot
//! keep a route's concurrency slots busy for their guests' whole run, and idle connections
//! (HTTP/1 keep-alive and HTTP/2) are closed after `--idle-timeout`.

use hotswap_tests::guests::{GUEST_EXAMPLE, MISBEHAVE};
use hotswap_tests::waits::MARGIN;
use hotswap_tests::{Client, Server, get, raw};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens `streams` requests for a 20-second guest on one HTTP/2 connection to `addr` and resets
/// every one of them (drops its response future, which sends `RST_STREAM`) after `after`.
async fn open_and_reset(addr: std::net::SocketAddr, streams: usize, after: Duration) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut requests = Vec::new();
    for _ in 0..streams {
        let mut sender = sender.clone();
        requests.push(tokio::spawn(async move {
            let req = hyper::Request::get(format!("http://{addr}/sleep?ms=20000"))
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            if sender.ready().await.is_ok()
                && let Ok(resp) = sender.send_request(req).await
            {
                let _ = resp.into_body().collect().await;
            }
        }));
    }
    tokio::time::sleep(after).await;
    for request in &requests {
        request.abort();
    }
    for request in requests {
        let _ = request.await;
    }
    // The resets go out before the connection closes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(sender);
    conn.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_reset_by_the_hundred_leave_normal_clients_answered_at_once() {
    let mut server = Server::start(Path::new(GUEST_EXAMPLE), &[]);
    let addr = server.addr;
    // Four connections, 50 streams each of a 20 s request, reset 0.2 s later; three times.
    for _ in 0..3 {
        let attacks: Vec<_> = (0..4)
            .map(|_| tokio::spawn(open_and_reset(addr, 50, Duration::from_millis(200))))
            .collect();
        for attack in attacks {
            attack.await.unwrap();
        }
    }
    // The next ten normal requests are answered 200, each within a second.
    for i in 0..10 {
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(1), get(addr, "/"))
            .await
            .unwrap_or_else(|_| panic!("request {i} not answered within 1 s"))
            .unwrap();
        assert_eq!(
            reply.status,
            200,
            "request {i} after the resets ({:?}): {}",
            started.elapsed(),
            reply.text()
        );
    }
    assert!(server.is_running());
    assert!(
        !server.log().contains("panicked"),
        "the host panicked: {}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_at_its_cap_takes_back_the_slot_of_a_guest_whose_client_left() {
    // One slot: a client leaves while its guest sleeps for 20 s; the next request gets the
    // slot (the abandoned guest is stopped) instead of a 503 after the queue timeout.
    let server = Server::start(
        Path::new(MISBEHAVE),
        &["--max-concurrency", "1", "--queue-timeout", "5s"],
    );
    let got = raw::hang_up_after(
        server.addr,
        "/late-log?ms=20000",
        Duration::from_millis(200),
    )
    .await;
    assert!(got.is_empty(), "{got:?}");
    let started = Instant::now();
    let reply = get(server.addr, "/ok").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slot came back after {:?}",
        started.elapsed()
    );
    server
        .expect_log("its client went away", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_abandoned_while_a_request_waits_gives_that_request_its_slot() {
    // One slot, taken by a guest sleeping 20 s; a second request starts waiting for the slot;
    // only then does the first client leave. The waiting request gets the slot when the guest
    // is abandoned, not a 503 when its 5 s queue timeout runs out.
    let server = Server::start(
        Path::new(MISBEHAVE),
        &["--max-concurrency", "1", "--queue-timeout", "5s"],
    );
    let addr = server.addr;
    let leaving = tokio::spawn(async move {
        raw::hang_up_after(addr, "/late-log?ms=20000", Duration::from_millis(800)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = get(addr, "/ok").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the slot came back after {:?}",
        started.elapsed()
    );
    assert!(leaving.await.unwrap().is_empty());
    server
        .expect_log(
            "its client went away and a request is waiting for its slot",
            Duration::from_secs(5),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout_and_busy_ones_are_not() {
    let server = Server::start(Path::new(GUEST_EXAMPLE), &["--idle-timeout", "1s"]);
    let addr = server.addr;

    // HTTP/1.1 keep-alive: one request, then silence.
    let outcome = raw::exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(1) + MARGIN,
    )
    .await
    .unwrap();
    assert!(
        outcome.text().starts_with("HTTP/1.1 200"),
        "{}",
        outcome.text()
    );
    assert!(
        outcome.closed,
        "an idle keep-alive connection was still open after {:?}",
        outcome.elapsed
    );

    // HTTP/2: one request, then silence; the server ends the connection.
    let mut h2 = Client::connect_h2(addr).await.unwrap();
    assert_eq!(h2.get("/").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(1) + MARGIN).await;
    assert!(
        h2.get("/").await.is_err(),
        "an idle HTTP/2 connection was still open"
    );

    // A request that runs longer than the idle timeout is not cut, on either protocol.
    let reply = Client::connect(addr)
        .await
        .unwrap()
        .get("/sleep?ms=2500")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = Client::connect_h2(addr)
        .await
        .unwrap()
        .get("/sleep?ms=2500")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}
