//! Outbound HTTP (denied unless allowed, bounded by the deadline) and what the guest is given:
//! its environment, its headers, and its stdout and stderr as log lines. Outbound calls, the
//! environment and the output hold whichever world the guest targets.

use super::*;

// ----- outbound HTTP -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_is_denied_unless_allowed() {
    both_worlds(async |world| {
        let upstream = Upstream::start().await;
        let url = format!("/outbound?url=http://{}/", upstream.addr);

        let server = world.misbehave(&[]);
        let reply = get(server.addr, &url).await.unwrap();
        assert_eq!(reply.status, 502, "{world}: {}", reply.text());
        assert_eq!(reply.text(), "error HttpRequestDenied", "{world}");
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
            "{world}: the log names the refused host: {denial}"
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
        assert_eq!(reply.status, 502, "{world}: {}", reply.text());
        assert_eq!(reply.text(), "error HttpRequestDenied", "{world}");
        assert_eq!(
            upstream.hits(),
            0,
            "{world}: a denied request reached the upstream"
        );
        drop(server);

        let allowed = format!("127.0.0.1:{}", upstream.addr.port());
        let server = world.misbehave(&["--allow-outbound", &allowed]);
        let reply = get(server.addr, &url).await.unwrap();
        assert_eq!(reply.status, 200, "{world}: {}", reply.text());
        assert_eq!(reply.text(), "status 200", "{world}");
        assert_eq!(upstream.hits(), 1, "{world}");

        // The rule names a port: the same host on another port stays denied.
        let other = Upstream::start().await;
        let reply = get(
            server.addr,
            &format!("/outbound?url=http://{}/", other.addr),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 502, "{world}: {}", reply.text());
        assert_eq!(reply.text(), "error HttpRequestDenied", "{world}");
        assert_eq!(other.hits(), 0, "{world}");
    })
    .await;
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
    both_worlds(async |world| {
        let server = world.misbehave(&["--env", "GREETING=hi=there", "--env", "EMPTY="]);
        let reply = get(server.addr, "/env?key=GREETING").await.unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, "hi=there"),
            "{world}"
        );
        let reply = get(server.addr, "/env?key=EMPTY").await.unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, ""),
            "{world}"
        );
        // The host's own environment (it has HOME, PATH and HOTSWAP_LOG) is not inherited.
        for key in ["HOME", "PATH", "HOTSWAP_LOG"] {
            let reply = get(server.addr, &format!("/env?key={key}")).await.unwrap();
            assert_eq!(
                (reply.status.as_u16(), reply.text().as_str()),
                (404, "unset"),
                "{world}: {key}"
            );
        }
    })
    .await;
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
async fn guest_stdout_and_stderr_become_log_lines_with_the_request_fields() {
    both_worlds(async |world| {
        let server = world.misbehave(&[]);
        let reply = get(server.addr, "/stdio").await.unwrap();
        assert_eq!(reply.status, 200, "{world}");
        for (text, stream) in [("hello stdout", "stdout"), ("hello stderr", "stderr")] {
            server.expect_log(text, Duration::from_secs(5)).await;
            let log = server.log();
            let line = log.lines().find(|l| l.contains(text)).unwrap();
            for field in ["generation=1", "request_id=1", "path=/stdio", stream] {
                assert!(line.contains(field), "{world}: {field} missing from {line}");
            }
        }
    })
    .await;
}
