//! Client input over the limits: request bodies, header fields and sections, and a client that
//! stalls in its request head. Each is refused with the documented status before the guest runs
//! (or as soon as the limit is crossed), and the host keeps serving. Also: a client that hangs up
//! does not cut its guest short, and one that stops reading neither keeps its guest past the
//! deadline nor its connection past the write timeout.

use hotswap_tests::health::assert_healthy;
use hotswap_tests::start::{example, misbehave};
use hotswap_tests::worlds::{World, both_worlds};
use hotswap_tests::{Client, Reply, Server, get, post, post_chunked, raw};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

// ----- request bodies ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn body_over_max_body_size_gets_413_without_reaching_the_guest() {
    // One slot, held by a slow request: a 413 that arrives meanwhile cannot have come from
    // the guest.
    let server = example(&[
        "--max-body-size",
        "1KiB",
        "--max-concurrency",
        "1",
        "--queue-timeout",
        "10s",
    ]);
    let addr = server.addr;

    let small: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
    let reply = post(addr, "/echo", small.clone()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body == small, "small body not echoed");

    let slow = tokio::spawn(async move { get(addr, "/sleep?ms=3000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = post(addr, "/echo", vec![b'x'; 4096]).await.unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(
        reply.text().contains("1024"),
        "the body names the limit: {}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "413 took {:?}",
        started.elapsed()
    );
    assert!(!slow.is_finished(), "the only slot was busy all along");
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_and_header_limits_answer_413_and_431_never_a_whole_echo() {
    both_worlds(async |world| {
        // The echo: guest-example's on 0.2, misbehave-p3's on 0.3.
        let server = match world {
            World::P2 => example(&["--max-body-size", "1KiB"]),
            World::P3 => world.misbehave(&["--max-body-size", "1KiB"]),
        };
        // Declared too large: refused before the guest runs.
        let reply = post(server.addr, "/echo", vec![b'a'; 4096]).await.unwrap();
        assert_eq!(reply.status, 413, "{world}: {}", reply.text());
        // Not declared (chunked): crossed while the guest echoes (a 0.3 guest starts its echo
        // before reading, and sees the body end early, not an error). The client gets a 413,
        // or, once the echo's head is out, a cut body: never a complete-looking answer.
        let chunks: Vec<bytes::Bytes> = (0..4u8)
            .map(|i| bytes::Bytes::from(vec![b'a' + i; 1024]))
            .collect();
        match post_chunked(server.addr, "/echo", chunks).await {
            Ok(reply) => assert_eq!(
                reply.status,
                413,
                "{world}: {} ({} bytes)",
                reply.text(),
                reply.body.len()
            ),
            Err(e) => assert!(
                e.contains("cut") || e.contains("request failed"),
                "{world}: {e}"
            ),
        }
        // Within the limit: echoed, declared or chunked.
        let reply = post(server.addr, "/echo", vec![b'c'; 1000]).await.unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.body.len()),
            (200, 1000),
            "{world}"
        );
        let chunks = vec![
            bytes::Bytes::from_static(b"hello "),
            bytes::Bytes::from_static(b"chunked"),
        ];
        let reply = post_chunked(server.addr, "/echo", chunks).await.unwrap();
        assert_eq!(reply.status, 200, "{world}");
        assert_eq!(reply.text(), "hello chunked", "{world}");

        // More header fields than the default limit.
        let many: Vec<(String, String)> =
            (0..200).map(|i| (format!("x-h-{i}"), "v".into())).collect();
        let headers: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = Client::connect(server.addr)
            .await
            .unwrap()
            .send_with("GET", "/ok", &headers, bytes::Bytes::new())
            .await
            .unwrap();
        assert_eq!(reply.status, 431, "{world}: {}", reply.text());
    })
    .await;
}

// ----- request headers ---------------------------------------------------------------------

/// Sends a request with `headers` over HTTP/1.1 or HTTP/2: it must be refused (431 or a
/// closed connection), never served. Returns what went wrong otherwise.
async fn refused_headers(
    server: &Server,
    h2: bool,
    headers: &[(&str, &str)],
) -> Result<(), String> {
    let mut client = if h2 {
        Client::connect_h2(server.addr).await.unwrap()
    } else {
        Client::connect(server.addr).await.unwrap()
    };
    match client
        .send_with("GET", "/ok", headers, bytes::Bytes::new())
        .await
    {
        Ok(reply) if reply.status != 431 => Err(format!(
            "{} header bytes in {} fields were answered {} over {} (want 431 or a closed connection): {:?}",
            headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
            headers.len(),
            reply.status,
            if h2 { "HTTP/2" } else { "HTTP/1.1" },
            reply.text()
        )),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// Both protocols refuse `headers`.
async fn refused_on_both_protocols(server: &Server, headers: &[(&str, &str)]) {
    let failures: Vec<String> = [
        refused_headers(server, false, headers).await,
        refused_headers(server, true, headers).await,
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_header_fields_are_refused() {
    let mut server = misbehave(&["--max-headers", "20"]);
    let names: Vec<String> = (0..40).map(|i| format!("x-field-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    refused_on_both_protocols(&server, &many).await;
    // A request within the limit is served.
    let reply = Client::connect(server.addr)
        .await
        .unwrap()
        .send_with("GET", "/ok", &many[..5], bytes::Bytes::new())
        .await;
    assert_eq!(reply.unwrap().status, 200);
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_section_over_the_default_max_header_bytes_is_refused() {
    let mut server = misbehave(&[]);
    let big = "v".repeat(80 << 10);
    refused_on_both_protocols(&server, &[("x-big", &big)]).await;
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_section_over_a_small_max_header_bytes_is_refused() {
    // 2 KiB is a valid setting (the minimum is 1 KiB); a 4 KiB header section exceeds it.
    let mut server = misbehave(&["--max-header-bytes", "2KiB"]);
    let big = "v".repeat(4 << 10);
    refused_on_both_protocols(&server, &[("x-big", &big)]).await;
    let small = "v".repeat(512);
    let reply = get_with(&server, &[("x-small", &small)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_healthy(&mut server).await;
}

async fn get_with(server: &Server, headers: &[(&str, &str)]) -> Reply {
    Client::connect(server.addr)
        .await
        .unwrap()
        .send_with("GET", "/ok", headers, bytes::Bytes::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_stalling_in_its_request_head_is_disconnected() {
    let mut server = misbehave(&["--header-read-timeout", "500ms"]);
    let outcome = raw::exchange(
        server.addr,
        b"GET /ok HTTP/1.1\r\nHost: loc",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        outcome.closed,
        "still connected after {:?}; got {:?}",
        outcome.elapsed,
        outcome.text()
    );
    assert_ne!(outcome.status(), Some(200), "{}", outcome.text());
    assert_healthy(&mut server).await;
}

// ----- clients that hang up ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_does_not_cut_its_guest_short() {
    // A guest may have side effects half done (an outbound call, a write upstream): it runs to
    // its own end, within its deadline, whether or not anybody still waits for the answer.
    let mut server = misbehave(&[]);

    // Gone before the response head.
    let got = raw::hang_up_after(server.addr, "/late-log?ms=600", Duration::from_millis(100)).await;
    assert!(
        got.is_empty(),
        "nothing is sent before the guest answers: {got:?}"
    );
    // Missing if the guest was cut short when its client hung up before the head.
    server
        .expect_log("late-log done after 600 ms", Duration::from_secs(10))
        .await;

    // Gone after the head and the first line, while the guest sleeps before the rest.
    let got = raw::hang_up_after(
        server.addr,
        "/late-log?ms=700&head=first",
        Duration::from_millis(300),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.contains("started"), "{got:?}");
    // Missing if the guest was cut short when its client hung up during the body.
    server
        .expect_log("late-log done after 700 ms", Duration::from_secs(10))
        .await;
    assert_healthy(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_answers_with_an_error_code_is_answered_at_once_and_still_runs_to_its_end() {
    let mut server = misbehave(&[]);
    let started = Instant::now();
    let reply = get(server.addr, "/refuse-then-log?ms=1500").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(reply.text().contains("InternalError"), "{}", reply.text());
    assert!(
        elapsed < Duration::from_millis(1500),
        "the 500 waited for the guest to end ({elapsed:?})"
    );
    // Missing if the guest was cut short after its error code.
    server
        .expect_log(
            "refuse-then-log done after 1500 ms",
            Duration::from_secs(10),
        )
        .await;
    assert_healthy(&mut server).await;
}

/// What a client that never reads posts to `/echo`: far more than the socket buffers between
/// it and the guest hold, so the guest ends up blocked writing the echo.
const UNREAD_BODY: usize = 32 << 20;

/// Posts [`UNREAD_BODY`] bytes to `/echo` at `addr` and never reads the response. The task ends
/// only when the connection fails (the server closed it); the counter says how much was sent.
fn post_without_reading(addr: SocketAddr) -> (JoinHandle<io::Result<()>>, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {UNREAD_BODY}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b'z'; 64 << 10];
        for _ in 0..UNREAD_BODY / chunk.len() {
            stream.write_all(&chunk).await?;
            counter.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        // Keep the connection open, still without reading.
        std::future::pending::<()>().await;
        Ok(())
    });
    (writer, sent)
}

/// guest-example with one concurrency slot, a 1 s request deadline and room for
/// [`UNREAD_BODY`].
fn one_slot_with_a_short_deadline() -> Server {
    example(&[
        "--max-concurrency",
        "1",
        "--queue-timeout",
        "200ms",
        "--request-timeout",
        "1s",
        "--max-body-size",
        "64MiB",
    ])
}

/// The stuck guest is stopped at its deadline, and its only slot serves again while its client
/// still hangs on.
async fn assert_the_deadline_frees_the_slot(server: &Server) {
    server
        .expect_log("request deadline exceeded", Duration::from_secs(10))
        .await;
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}; log:\n{}",
        reply.text(),
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_keep_its_guest_past_the_deadline() {
    // Once the socket buffers are full the guest blocks writing the echo. It must still be
    // stopped at the request deadline and give its concurrency slot back, or a few such clients
    // would hold every slot.
    let server = one_slot_with_a_short_deadline();
    let (writer, sent) = post_without_reading(server.addr);

    assert_the_deadline_frees_the_slot(&server).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < UNREAD_BODY,
        "the whole body went through ({sent} bytes): the guest was never blocked"
    );
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    // The guest's deadline frees its slot; the connection itself, with its buffers, goes once
    // the client has accepted no response bytes for `--write-timeout`.
    let server = example(&["--write-timeout", "1s", "--max-body-size", "64MiB"]);
    let (writer, sent) = post_without_reading(server.addr);
    server
        .expect_log(
            "accepted no response bytes within the write timeout",
            Duration::from_secs(10),
        )
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap_or_else(|_| panic!("still connected 10 s later; log:\n{}", server.log()))
        .unwrap();
    assert!(
        ended.is_err(),
        "the client's sending should fail once the server hangs up"
    );
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < UNREAD_BODY,
        "the whole body went through ({sent} bytes): the response never stalled"
    );
    let reply = get(server.addr, "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_stops_reading_does_not_keep_its_guest_past_the_deadline() {
    // On HTTP/2 the stall comes from flow control, not from the socket: the client never reads
    // the response body, so its stream window stays shut once the first 64 KiB are sent.
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let server = one_slot_with_a_short_deadline();
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post(format!("http://{}/echo", server.addr))
        .body(Full::new(bytes::Bytes::from(vec![b'z'; UNREAD_BODY])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    assert_the_deadline_frees_the_slot(&server).await;
    drop(response);
}
