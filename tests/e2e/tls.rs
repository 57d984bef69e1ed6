//! HTTPS: certificates made by the test (rcgen), a rustls client over HTTP/1.1 and h2, TLS 1.2
//! and 1.3; certificates that reload like components (a file renamed into place, a mounted
//! Secret's `..data` swap) while connections already open keep theirs; bad pairs refused with the
//! good one serving on; SNI; mutual TLS on the admin listener; a client stalling mid-handshake.

use bytes::Bytes;
use hotswap_tests::guests::GUEST_EXAMPLE;
use hotswap_tests::{Server, eventually};
use http_body_util::{BodyExt, Full};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsConnector;

/// How long a renewed certificate may take to be used.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// A certificate authority the test trusts.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (common name `subject`), valid from `from` to `until` years
    /// after now (negative: in the past), and its key, in PEM.
    fn leaf(&self, subject: &str, names: &[&str], from: i32, until: i32) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, subject);
        let year = 2026;
        params.not_before = rcgen::date_time_ymd(year + from, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + until, 12, 31);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }
}

use rustls::pki_types::pem::PemObject;

/// Writes `content` to `path` the way a careful deploy does: a temporary file renamed over it.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A host serving guest-example over HTTPS with `cert` and `key`.
fn serve(cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        GUEST_EXAMPLE,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--debounce",
        "50ms",
    ];
    args.extend_from_slice(extra);
    Server::launch(&args, &[], None)
}

/// A client's TLS settings: trusting `ca`, offering `alpn`, limited to `versions`.
fn client_config(
    ca: &Ca,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One TLS connection, with what the handshake settled.
struct Tls {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl Tls {
    async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<Tls> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_string()).unwrap();
        let stream = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Tls { stream })
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// The common name of the certificate the server presented.
    fn subject(&self) -> String {
        let der = &self.stream.get_ref().1.peer_certificates().unwrap()[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// Sends `GET path` over HTTP/1.1 or h2 (as ALPN settled) and keeps the connection open for
    /// more; returns the sender to reuse.
    async fn client(self) -> Sender {
        let h2 = self.alpn().as_deref() == Some(b"h2".as_slice());
        let io = hyper_util::rt::TokioIo::new(self.stream);
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let req = hyper::Request::get(format!("https://localhost{path}"))
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = match self {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    }
}

/// The subject the server presents to a new handshake for `name`.
async fn presented(addr: SocketAddr, ca: &Ca, name: &str) -> String {
    let config = client_config(ca, &[b"http/1.1"], rustls::ALL_VERSIONS, None);
    Tls::connect(addr, config, name).await.unwrap().subject()
}

/// Writes a pair for `subject` into `dir` as `NAME.pem` and `NAME.key`.
fn pair(dir: &Path, name: &str, ca: &Ca, subject: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf(subject, names, -1, 1);
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_h2_over_tls_12_and_13() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "first", &["localhost"]);
    let server = serve(&cert, &key, &[]);
    for (alpn, versions, want_alpn, want_version) in [
        (
            b"h2".as_slice(),
            &[&rustls::version::TLS13][..],
            "h2",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            b"http/1.1".as_slice(),
            &[&rustls::version::TLS13][..],
            "http/1.1",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            b"h2".as_slice(),
            &[&rustls::version::TLS12][..],
            "h2",
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            b"http/1.1".as_slice(),
            &[&rustls::version::TLS12][..],
            "http/1.1",
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let tls = Tls::connect(
            server.addr,
            client_config(&ca, &[alpn], versions, None),
            "localhost",
        )
        .await
        .unwrap();
        assert_eq!(tls.alpn().as_deref(), Some(want_alpn.as_bytes()));
        assert_eq!(tls.version(), Some(want_version));
        let (status, text) = tls.client().await.get("/").await.unwrap();
        assert_eq!(status, 200, "{want_alpn} {want_version:?}: {text}");
        assert!(text.contains("hello from hotswap"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_serves_new_handshakes_and_open_connections_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "first", &["localhost"]);
    let server = serve(&cert, &key, &["--admin-addr", "127.0.0.1:0"]);
    assert_eq!(presented(server.addr, &ca, "localhost").await, "first");
    let config = client_config(&ca, &[b"h2"], rustls::ALL_VERSIONS, None);
    let mut open = Tls::connect(server.addr, config, "localhost")
        .await
        .unwrap()
        .client()
        .await;
    assert_eq!(open.get("/").await.unwrap().0, 200);

    // Renewal: the new key, then the new certificate, each renamed into place.
    let (new_cert, new_key) = ca.leaf("second", &["localhost"], -1, 2);
    replace(&key, &new_key);
    replace(&cert, &new_cert);
    let renewed = eventually(RELOAD_WAIT, || async {
        (presented(server.addr, &ca, "localhost").await == "second").then_some(())
    })
    .await;
    assert!(
        renewed.is_some(),
        "the renewed certificate never served; log:\n{}",
        server.log()
    );
    // The connection opened before keeps working on its session.
    assert_eq!(open.get("/").await.unwrap().0, 200);
    // What serves is in /status and the metrics.
    let admin = server.admin.unwrap();
    let status = hotswap_tests::get(admin, "/status").await.unwrap().text();
    assert!(
        status.contains("CN=second") && status.contains("localhost"),
        "{status}"
    );
    let metrics = hotswap_tests::get(admin, "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_tls_certificate_expiry_seconds{")
            && metrics.contains("CN=second"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn post_reload_and_sighup_reload_the_certificate_when_files_are_not_watched() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "first", &["localhost"]);
    let server = Server::launch(
        &[
            GUEST_EXAMPLE,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--no-watch",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[("HOTSWAP_ADMIN_TOKEN", "t0ken")],
        None,
    );
    assert_eq!(presented(server.addr, &ca, "localhost").await, "first");

    // A renewal with nothing watching: the old pair serves until asked.
    let (new_cert, new_key) = ca.leaf("second", &["localhost"], -1, 2);
    replace(&key, &new_key);
    replace(&cert, &new_cert);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(server.addr, &ca, "localhost").await, "first");
    let reply = hotswap_tests::Client::connect(server.admin.unwrap())
        .await
        .unwrap()
        .send_with("POST", "/reload", &[("authorization", "Bearer t0ken")], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let by_post = eventually(RELOAD_WAIT, || async {
        (presented(server.addr, &ca, "localhost").await == "second").then_some(())
    })
    .await;
    assert!(by_post.is_some(), "POST /reload: log:\n{}", server.log());

    let (third_cert, third_key) = ca.leaf("third", &["localhost"], -1, 3);
    replace(&key, &third_key);
    replace(&cert, &third_cert);
    server.signal(libc::SIGHUP);
    let by_signal = eventually(RELOAD_WAIT, || async {
        (presented(server.addr, &ca, "localhost").await == "third").then_some(())
    })
    .await;
    assert!(by_signal.is_some(), "SIGHUP: log:\n{}", server.log());
    // The line is written just after the new pair serves.
    server.expect_log("trigger=\"SIGHUP\"", RELOAD_WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_delivered_by_a_data_link_swap_serves() {
    // A Kubernetes Secret mounted as a volume: tls.crt -> ..data/tls.crt, ..data -> ..TIMESTAMP.
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path();
    let ca = Ca::new("test CA");
    let publish = |version: u32, subject: &str| {
        let data = format!("..2026_12_07_00_00_0{version}");
        std::fs::create_dir(volume.join(&data)).unwrap();
        let (cert, key) = ca.leaf(subject, &["localhost"], -1, 1);
        std::fs::write(volume.join(&data).join("tls.crt"), cert).unwrap();
        std::fs::write(volume.join(&data).join("tls.key"), key).unwrap();
        symlink(&data, volume.join("..data_tmp")).unwrap();
        std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
        for file in ["tls.crt", "tls.key"] {
            if !volume.join(file).exists() {
                symlink(format!("..data/{file}"), volume.join(file)).unwrap();
            }
        }
    };
    publish(1, "first");
    let server = serve(&volume.join("tls.crt"), &volume.join("tls.key"), &[]);
    assert_eq!(presented(server.addr, &ca, "localhost").await, "first");
    publish(2, "second");
    let renewed = eventually(RELOAD_WAIT, || async {
        (presented(server.addr, &ca, "localhost").await == "second").then_some(())
    })
    .await;
    assert!(
        renewed.is_some(),
        "the swapped certificate never served; log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_key_a_mismatched_pair_and_an_expired_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "good", &["localhost"]);
    let server = serve(&cert, &key, &["--admin-addr", "127.0.0.1:0"]);
    let admin = server.admin.unwrap();
    let (good_cert, good_key) = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    );
    let (other_cert, _) = ca.leaf("other", &["localhost"], -1, 1);
    let (expired_cert, expired_key) = ca.leaf("expired", &["localhost"], -3, -1);
    for (what, new_cert, new_key, says) in [
        (
            "a bad key",
            good_cert.as_str(),
            "not a key",
            "no private key",
        ),
        (
            "a mismatched pair",
            other_cert.as_str(),
            good_key.as_str(),
            "does not match",
        ),
        (
            "an expired certificate",
            expired_cert.as_str(),
            expired_key.as_str(),
            "expired",
        ),
    ] {
        let before = server.log_count("TLS certificates not reloaded");
        replace(&key, new_key);
        replace(&cert, new_cert);
        let refused = eventually(RELOAD_WAIT, || async {
            server
                .log()
                .lines()
                .find(|l| l.contains("TLS certificates not reloaded") && l.contains(says))
                .filter(|_| server.log_count("TLS certificates not reloaded") > before)
                .map(str::to_string)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{what} was not refused with {says:?}; log:\n{}",
                server.log()
            )
        });
        assert!(
            refused.contains(dir.path().to_str().unwrap()),
            "{what}: the refusal names the file: {refused}"
        );
        assert_eq!(
            presented(server.addr, &ca, "localhost").await,
            "good",
            "{what}"
        );
        replace(&key, &good_key);
        replace(&cert, &good_cert);
    }
    let metrics = hotswap_tests::get(admin, "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("hotswap_tls_reloads_total{result=\"failed\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_chooses_the_certificate_of_the_name_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (a_cert, a_key) = pair(dir.path(), "a", &ca, "a", &["a.hotswap.test", "localhost"]);
    let (b_cert, b_key) = pair(
        dir.path(),
        "b",
        &ca,
        "b",
        &["b.hotswap.test", "*.wild.hotswap.test"],
    );
    let config = format!(
        "[component]\npath = {GUEST_EXAMPLE:?}\n\n[server.tls]\ncert = {:?}\nkey = {:?}\n\n\
         [[server.tls.certificate]]\ncert = {:?}\nkey = {:?}\n",
        a_cert, a_key, b_cert, b_key
    );
    let file = dir.path().join("hotswap.toml");
    std::fs::write(&file, config).unwrap();
    let server = Server::launch(&["--config", file.to_str().unwrap()], &[], None);
    assert_eq!(presented(server.addr, &ca, "a.hotswap.test").await, "a");
    assert_eq!(presented(server.addr, &ca, "b.hotswap.test").await, "b");
    assert_eq!(
        presented(server.addr, &ca, "x.wild.hotswap.test").await,
        "b"
    );
    // A name no certificate has gets the first one (and the client refuses it).
    let config = client_config(&ca, &[b"http/1.1"], rustls::ALL_VERSIONS, None);
    assert!(
        Tls::connect(server.addr, config, "c.hotswap.test")
            .await
            .is_err(),
        "a certificate for c.hotswap.test was presented"
    );
}

/// Whether the admin listener at `admin` turns away a client with `config`: its handshake, or
/// the first read after it, fails.
async fn refused(admin: SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    match Tls::connect(admin, config, "localhost").await {
        Err(_) => true,
        Ok(tls) => tls.client().await.get("/status").await.is_err(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_with_a_client_ca_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "server", &["localhost"]);
    let clients_pem = dir.path().join("clients.pem");
    std::fs::write(&clients_pem, &clients.pem).unwrap();
    let server = serve(
        &cert,
        &key,
        &[
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-client-ca",
            clients_pem.to_str().unwrap(),
        ],
    );
    let admin = server.admin.expect("the admin address is printed");
    // No client certificate: the handshake (or the first read after it) fails.
    let anonymous = client_config(&ca, &[b"http/1.1"], rustls::ALL_VERSIONS, None);
    assert!(
        refused(admin, anonymous).await,
        "a client without a certificate reached the admin API"
    );
    // A certificate of another CA is refused too.
    let (stranger_cert, stranger_key) = ca.leaf("stranger", &["stranger"], -1, 1);
    let stranger = client_config(
        &ca,
        &[b"http/1.1"],
        rustls::ALL_VERSIONS,
        Some((&stranger_cert, &stranger_key)),
    );
    assert!(
        refused(admin, stranger).await,
        "a client certificate of another CA reached the admin API"
    );
    // A client certificate of the configured CA gets in.
    let (client_cert, client_key) = clients.leaf("operator", &["operator"], -1, 1);
    let operator = client_config(
        &ca,
        &[b"http/1.1"],
        rustls::ALL_VERSIONS,
        Some((&client_cert, &client_key)),
    );
    let (status, text) = Tls::connect(admin, operator, "localhost")
        .await
        .unwrap()
        .client()
        .await
        .get("/status")
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_stalling_mid_handshake_is_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "server", &["localhost"]);
    let server = serve(&cert, &key, &["--header-read-timeout", "1s"]);
    // The first bytes of a ClientHello record, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let outcome = hotswap_tests::raw::read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(
        outcome.closed && outcome.elapsed < Duration::from_secs(4),
        "a stalled handshake was still open after {:?}",
        outcome.elapsed
    );
    // Meanwhile and after, handshakes are served.
    assert_eq!(presented(server.addr, &ca, "localhost").await, "server");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_an_ip_address_as_server_name_costs_no_log_line() {
    // OpenSSL's clients (wrk, `s_client -servername`) send an IP address as SNI, which the
    // specification forbids; rustls ignores it and used to log a WARN for every handshake: a
    // line a remote client could have the host write as fast as it can connect.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `openssl` command to send an IP address as SNI");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "ip", &["localhost"]);
    let server = serve(&cert, &key, &[]);
    let connect = server.addr.to_string();
    for _ in 0..20 {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("CN = ip") || text.contains("CN=ip"), "{text}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(!log.contains("WARN"), "{log}");
}

/// `hotswap serve` of guest-example over HTTPS with `cert` and `key`, run until it exits (for
/// pairs it must refuse at startup).
fn serve_until_exit(cert: &Path, key: &Path) -> hotswap_tests::server::Exited {
    hotswap_tests::server::run_to_exit(
        &[
            "serve",
            GUEST_EXAMPLE,
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_check_out_at_startup_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, _) = pair(dir.path(), "server", &ca, "server", &["localhost"]);
    let (_, other_key) = ca.leaf("other", &["localhost"], -1, 1);
    let key = dir.path().join("other.key");
    std::fs::write(&key, other_key).unwrap();
    let out = serve_until_exit(&cert, &key);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);
    assert!(!out.stdout.contains("Serving"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_file_too_large_to_be_one_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "server", &["localhost"]);
    // A real certificate followed by 2 MiB of padding: over the 1 MiB any PEM file needs.
    let mut padded = std::fs::read(&cert).unwrap();
    padded.extend(std::iter::repeat_n(b'\n', 2 << 20));
    std::fs::write(&cert, padded).unwrap();
    let out = serve_until_exit(&cert, &key);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("more than a PEM file of certificates or a key needs"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("Serving"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_handshakes_does_not_starve_the_requests_of_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = pair(dir.path(), "server", &ca, "server", &["localhost"]);
    let server = serve(&cert, &key, &[]);
    let addr = server.addr;
    let config = client_config(&ca, &[b"http/1.1"], rustls::ALL_VERSIONS, None);
    let mut open = Tls::connect(addr, config.clone(), "localhost")
        .await
        .unwrap()
        .client()
        .await;
    // 64 clients doing full handshakes back to back for 3 s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..64)
        .map(|_| {
            let (config, stop) = (config.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if Tls::connect(addr, config.clone(), "localhost")
                        .await
                        .is_ok()
                    {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(3) {
        let t = std::time::Instant::now();
        let (status, _) = open.get("/").await.unwrap();
        assert_eq!(status, 200);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut handshakes = 0;
    for task in flood {
        handshakes += task.await.unwrap();
    }
    assert!(handshakes > 0, "no handshake completed during the flood");
    assert!(
        slowest < Duration::from_secs(1),
        "a request of an open connection took {slowest:?} during a flood of {handshakes} handshakes"
    );
}
