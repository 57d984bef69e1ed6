//! The admin listener has the public listener's protections (header read timeout, header
//! limits, a cap on open connections, a deadline on every call), and an upload is saved to
//! disk before it serves: one that cannot be saved is refused and changes nothing.

use hotswap_tests::guests;
use hotswap_tests::waits::MARGIN;
use hotswap_tests::{Client, Server, get, raw, with_custom_section};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "s3cret-token";

fn serve_with_admin(app: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--admin-addr", "127.0.0.1:0", "--no-cache"];
    args.extend_from_slice(extra);
    Server::start_with_env(app, &args, &[("HOTSWAP_ADMIN_TOKEN", TOKEN)])
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_request_heads_on_the_admin_port_are_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = serve_with_admin(&app, &["--header-read-timeout", "1s"]);
    let admin = server.admin.unwrap();

    // 300 connections that send half a request head and wait.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let started = Instant::now();
    let mut still_open = 0;
    for stream in &mut held {
        let left = (Duration::from_secs(1) + MARGIN).saturating_sub(started.elapsed());
        let outcome = raw::read_until_closed(stream, left).await;
        if !outcome.closed {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "connections still open {:?} after sending half a head to the admin port",
        started.elapsed()
    );
    // The admin listener still answers.
    let reply = get(admin, "/healthz").await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_refuses_oversized_heads_and_caps_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = serve_with_admin(&app, &["--max-headers", "20"]);
    let admin = server.admin.unwrap();

    // Too many header fields: 431 or a closed connection, never an answer.
    let names: Vec<String> = (0..40).map(|i| format!("x-field-{i}")).collect();
    let fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let answered = Client::connect(admin)
        .await
        .unwrap()
        .send_with("GET", "/status", &fields, bytes::Bytes::new())
        .await;
    if let Ok(reply) = answered {
        assert_eq!(reply.status, 431, "{}", reply.text());
    }

    // Idle connections beyond the admin listener's cap are closed at once; the ones within it
    // stay until their timeout.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(admin).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut idle {
        if raw::read_until_closed(stream, Duration::from_millis(20))
            .await
            .closed
        {
            closed += 1;
        }
    }
    assert!(
        closed > 0,
        "200 idle connections were all kept open by the admin listener"
    );
    drop(idle);
    // Once they are gone, calls are answered again.
    let reply = hotswap_tests::eventually(Duration::from_secs(5), || async {
        get(admin, "/healthz")
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    assert!(reply.is_some(), "the admin listener stopped answering");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_trickles_is_cut_at_the_admin_call_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, guests::bytes(guests::GUEST_EXAMPLE)).unwrap();
    let server = serve_with_admin(&app, &["--admin-timeout", "1s"]);
    let admin = server.admin.unwrap();
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let head = format!(
        "PUT /component HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: never idle long enough for a read timeout, never done.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if stream.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stream
    });
    let mut stream = trickle.await.unwrap();
    let outcome = raw::read_until_closed(&mut stream, Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    let text = outcome.text();
    assert!(
        text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 503"),
        "after {elapsed:?}: {text:?}"
    );
    assert!(
        server.log().contains("admin call"),
        "the cut call is logged: {}",
        server.log()
    );
}

/// A tmpfs of `bytes` mounted at `dir` for the life of the value, or why it cannot be.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: usize) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = guests::example_version("v1");
    // v2 behaves as a new version and is larger than the room left on the disk.
    let v2 = with_custom_section(
        &guests::example_version("v2"),
        "padding",
        &vec![7u8; 1 << 20],
    );
    let disk = dir.path().join("disk");
    let _tmpfs = match Tmpfs::mount(&disk, v1.len() + (256 << 10)) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!("skipped: cannot mount a tmpfs to fill: {reason}");
            return;
        }
    };
    let app = disk.join("app.wasm");
    std::fs::write(&app, &v1).unwrap();
    let server = serve_with_admin(&app, &[]);
    let admin = server.admin.unwrap();
    let auth = format!("Bearer {TOKEN}");
    let reply = Client::connect(admin)
        .await
        .unwrap()
        .send_with("PUT", "/component", &[("authorization", &auth)], v2)
        .await
        .unwrap();
    assert_eq!(reply.status, 507, "{}", reply.text());
    assert!(
        reply.text().contains(app.to_str().unwrap()),
        "the refusal names the file: {}",
        reply.text()
    );
    // Neither what serves nor the file changed.
    let served = get(server.addr, "/").await.unwrap();
    assert_eq!(served.generation(), Some(1));
    assert!(served.text().contains("version v1"), "{}", served.text());
    assert_eq!(std::fs::read(&app).unwrap(), v1, "the file on disk changed");
    // Nothing is left behind on the full disk.
    let names: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.wasm"]);
}
