//! A guest's outbound call is checked by the address its host name resolves to, not only by
//! the name: an allowed name that resolves to loopback (whoever owns the name decides that) does
//! not reach the admin listener, `localhost` still works for a dev loop, and a rule without a
//! port allows only the scheme's default port.
//!
//! The names resolve through a hosts file the test writes, bind-mounted over `/etc/hosts` in a
//! mount namespace of the server's own (`unshare`, root); where that cannot be done the test
//! says so and skips.

use super::admin_get;
use hotswap_tests::guests::MISBEHAVE;
use hotswap_tests::upstream::Upstream;
use hotswap_tests::{Server, free_port, get};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// A hosts file mapping each `(name, address)`.
fn hosts_file(dir: &Path, entries: &[(&str, IpAddr)]) -> std::path::PathBuf {
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (name, ip) in entries {
        text.push_str(&format!("{ip} {name}\n"));
    }
    let path = dir.join("hosts");
    std::fs::write(&path, text).unwrap();
    path
}

/// A local address that is not loopback (this machine's own address on its network), if it has
/// one: what an in-cluster service's name resolves to.
fn non_loopback_address() -> Option<IpAddr> {
    // A UDP "connection" sends nothing; it only picks the source address of the route.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The guest's answer to an outbound GET of `url`: `status N` or `error Variant`.
async fn outbound(server: &Server, url: &str) -> (u16, String) {
    let reply = get(server.addr, &format!("/outbound?url={url}"))
        .await
        .unwrap();
    (reply.status.as_u16(), reply.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_name_that_resolves_to_loopback_does_not_reach_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let hosts = hosts_file(
        dir.path(),
        &[("admin.hotswap.test", "127.0.0.1".parse().unwrap())],
    );
    let allowed = format!("admin.hotswap.test:{admin_port}");
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let Some(server) = Server::launch_with_hosts(
        &hosts,
        &[
            MISBEHAVE,
            "--admin-addr",
            &admin_addr,
            "--allow-outbound",
            &allowed,
        ],
        &[],
    ) else {
        eprintln!("skipped: cannot bind-mount a hosts file in a mount namespace (needs root)");
        return;
    };
    let admin = server.admin.expect("admin listener");
    assert_eq!(admin_get(admin, "/status").await.status, 200);

    let url = format!("http://admin.hotswap.test:{admin_port}/status");
    let (status, text) = outbound(&server, &url).await;
    assert_eq!(
        (status, text.as_str()),
        (502, "error DestinationIpProhibited"),
        "the guest reached the admin listener through an allowed name"
    );
    server
        .expect_log("outbound request denied", Duration::from_secs(5))
        .await;
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("outbound request denied"))
        .unwrap_or_default()
        .to_string();
    for needed in ["admin.hotswap.test", "127.0.0.1", &allowed] {
        assert!(line.contains(needed), "the denial names {needed:?}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn localhost_named_literally_still_works_and_ports_are_the_schemes_unless_given() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let hosts = hosts_file(
        dir.path(),
        &[("upstream.hotswap.test", "127.0.0.1".parse().unwrap())],
    );
    let local_rule = format!("localhost:{port}");
    let Some(server) = Server::launch_with_hosts(
        &hosts,
        &[
            MISBEHAVE,
            "--allow-outbound",
            &local_rule,
            "--allow-outbound",
            "upstream.hotswap.test",
        ],
        &[],
    ) else {
        eprintln!("skipped: cannot bind-mount a hosts file in a mount namespace (needs root)");
        return;
    };
    // A dev loop calling `localhost:PORT`, allowed by that rule.
    let (status, text) = outbound(&server, &format!("http://localhost:{port}/")).await;
    assert_eq!((status, text.as_str()), (200, "status 200"));
    assert_eq!(upstream.hits(), 1);
    // A rule without a port allows port 80 only: the upstream's port is refused by name, before
    // any lookup.
    let (status, text) = outbound(&server, &format!("http://upstream.hotswap.test:{port}/")).await;
    assert_eq!((status, text.as_str()), (502, "error HttpRequestDenied"));
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_name_reaches_a_private_address_and_any_port_with_a_star() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no address besides loopback");
        return;
    };
    // An upstream on the machine's own network address, as an in-cluster service would be.
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let hosts = hosts_file(dir.path(), &[("svc.hotswap.test", ip)]);
    let Some(server) = Server::launch_with_hosts(
        &hosts,
        &[MISBEHAVE, "--allow-outbound", "svc.hotswap.test:*"],
        &[],
    ) else {
        eprintln!("skipped: cannot bind-mount a hosts file in a mount namespace (needs root)");
        return;
    };
    let url = format!("http://svc.hotswap.test:{}/", addr.port());
    let (status, text) = outbound(&server, &url).await;
    assert_eq!((status, text.as_str()), (200, "status 200"), "{ip}");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the upstream was called")
        .unwrap();
}
