//! A `redis-server` owned by a test: started on a free loopback port with no persistence,
//! killed on drop. `scripts/test.sh` installs Debian's `redis-server`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Redis.
pub struct Redis {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1, its files in `dir`.
    pub fn start(dir: &Path) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(dir, port)
    }

    /// Starts `redis-server` on `port` (e.g. to bring a stopped one back at the same address).
    pub fn start_on(dir: &Path, port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); `scripts/test.sh` installs it (apt-get install redis-server)")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut redis = Redis {
            child: Some(child),
            addr,
        };
        let start = Instant::now();
        while !redis.answers_ping() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    fn answers_ping(&mut self) -> bool {
        use std::io::{Read, Write};
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("redis-server exited at startup: {status}");
        }
        let Ok(mut conn) =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Kills the server (state is lost: it keeps none on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
