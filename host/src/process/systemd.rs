//! Readiness for systemd (`Type=notify`): `READY=1` once the host serves, `RELOADING=1` and
//! `READY=1` around a SIGHUP reload, `STOPPING=1` when a shutdown begins, and `MAINPID=` when an
//! upgrade hands the service over to the new process. The messages go to the datagram socket
//! named by `NOTIFY_SOCKET` (a path, or an abstract name starting with `@`); without it every
//! call does nothing. The variable stays in the environment: the process an upgrade starts
//! reports to the same socket.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

/// Where the notifications go, if anywhere. Cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
    /// `NOTIFY_SOCKET` as given, for log lines.
    name: String,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET`, or one that does nothing when it is unset or unusable
    /// (logged).
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let name = name.to_string_lossy().into_owned();
        match Self::open(&name) {
            Ok(target) => Notifier {
                inner: Some(Arc::new(target)),
            },
            Err(err) => {
                tracing::warn!(socket = %name, "cannot use NOTIFY_SOCKET; systemd will not hear of readiness: {err}");
                Notifier::default()
            }
        }
    }

    fn open(name: &str) -> std::io::Result<Target> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Target {
            socket,
            addr,
            name: name.to_string(),
        })
    }

    /// Whether systemd is listening (`NOTIFY_SOCKET` is set and usable).
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines); a failure is logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.inner else {
            return;
        };
        if let Err(err) = target.socket.send_to_addr(state.as_bytes(), &target.addr) {
            tracing::warn!(socket = %target.name, error = %err, "cannot notify systemd");
        }
    }

    /// The service is up: `READY=1`, with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload begins: `RELOADING=1` with the monotonic clock systemd expects beside it.
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ));
    }

    /// A shutdown begins.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=draining");
    }

    /// The service's main process is now `pid` (the new process of an upgrade).
    pub fn main_pid(&self, pid: u32) {
        self.notify(&format!("MAINPID={pid}\nSTATUS=upgraded: PID {pid} serves"));
    }
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes the time into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}
