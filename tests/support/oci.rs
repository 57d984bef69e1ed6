//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution) on a free
//! loopback port, its storage in a temp dir, optionally behind htpasswd auth; and pushes with a
//! real client (oras-py, `support/oci_push.py`). `scripts/test.sh` installs both.

use crate::free_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `(user, password)` when it requires basic auth.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry with no auth, its files under `dir`.
    pub fn start(dir: &Path) -> Registry {
        Self::launch(dir, free_port(), None)
    }

    /// Starts a registry that requires `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Self::launch(dir, free_port(), Some((user.into(), password.into())))
    }

    fn launch(dir: &Path, port: u16, credentials: Option<(String, String)>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = &credentials {
            let out = Command::new("htpasswd")
                .args(["-nbB", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is needed for the registry auth test");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hotswap-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry ({e}); `scripts/test.sh` installs it (apt-get install docker-registry)")
            });
        let mut registry = Registry {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            credentials,
        };
        let start = Instant::now();
        while !registry.answers() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry did not answer on {} within 15 s; log:\n{}",
                registry.addr,
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn answers(&mut self) -> bool {
        use std::io::{Read, Write};
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "docker-registry exited at startup ({status}); log:\n{}",
                self.log()
            );
        }
        let Ok(mut conn) =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut head = [0u8; 12];
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_exact(&mut head).is_ok()
            && (head.ends_with(b"200") || head.ends_with(b"401"))
    }

    /// `oci://127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.addr)
    }

    /// Pushes `bytes` as `REPO:TAG` (a wasm component artifact unless the media types say
    /// otherwise); returns the manifest digest.
    pub fn push(&self, repo_and_tag: &str, bytes: &[u8]) -> String {
        self.push_as(repo_and_tag, bytes, None)
    }

    /// Like [`Registry::push`] with another config media type.
    pub fn push_as(
        &self,
        repo_and_tag: &str,
        bytes: &[u8],
        config_media_type: Option<&str>,
    ) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("component.wasm");
        std::fs::write(&file, bytes).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/oci_push.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(format!("{}/{repo_and_tag}", self.addr))
            .arg(&file);
        if let Some(media_type) = config_media_type {
            cmd.args(["--config-media-type", media_type]);
        }
        if let Some((user, password)) = &self.credentials {
            cmd.args(["--user", user, "--password", password]);
        }
        let out = cmd.output().expect("python3 runs the oras push");
        assert!(
            out.status.success(),
            "oras push failed (is `oras` installed? `pip install oras`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            digest.starts_with("sha256:"),
            "no digest from the push: {digest:?}"
        );
        digest
    }

    /// Overwrites the stored blob `digest` (`sha256:…`) with other bytes, as a disk fault would.
    pub fn corrupt_blob(&self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = self
            .dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }

    /// The registry's log (access lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// How many `HEAD` requests on manifests the registry has seen (one per poll).
    pub fn manifest_heads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"HEAD /v2/") && l.contains("/manifests/"))
            .count()
    }

    /// Stops the registry; its storage stays, so [`Registry::restart`] serves the same content.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped registry again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::launch(&self.dir, self.addr.port(), self.credentials.clone());
        *self = again;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
