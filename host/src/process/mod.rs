//! The process around the host: listening sockets it may inherit instead of binding (from
//! systemd's socket activation, or from the process it replaces in a binary upgrade), the
//! readiness it reports to systemd, and the binary upgrade itself.
//!
//! **Upgrade.** On `SIGUSR2` (or `POST /upgrade` on the admin API) the running host starts the
//! binary at its own path anew, with the same arguments, handing it its listening sockets as
//! inherited descriptors (`upgrade.rs`). The new process reads its configuration, loads
//! its routes (from the compile cache: milliseconds), and only then says it is ready, over a
//! socket pair the old process holds the other end of ([`upgrade::Handoff`]). The old process
//! checks that the new one serves at least the routes it serves itself, tells it to go, stops
//! accepting and drains. Until that moment the new process accepts nothing; if it fails at any
//! step (its binary does not start, its configuration is wrong, a route cannot load, it is not
//! ready in time) the old one goes on serving and logs why. Both processes accept from the same
//! listening socket, so a connection is never refused in between: it waits in the socket's
//! queue for whichever accepts it first.
//!
//! This module imports nothing of the crate: the composition root (`app`) wires it in.

pub mod listeners;
pub mod systemd;
pub mod upgrade;

use std::path::PathBuf;
use std::time::SystemTime;

/// What the process is: shown in the startup log and in `/status`, so that across an upgrade
/// each process says which binary and PID serve.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The process ID.
    pub pid: u32,
    /// The crate version of the running binary.
    pub version: &'static str,
    /// The binary's path, as it was when the process started (an upgrade starts the binary
    /// found at this path then).
    pub binary: PathBuf,
    /// The binary file's modification time when the process started: tells two builds of the
    /// same version apart.
    pub binary_modified: Option<SystemTime>,
    /// When the process started.
    pub started: SystemTime,
    /// The PID of the process this one replaced by an upgrade, if it did.
    pub upgraded_from: Option<u32>,
}

impl Identity {
    /// This process's identity, read now.
    pub fn current(upgraded_from: Option<u32>) -> Identity {
        let binary = own_path();
        let binary_modified = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
        Identity {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            binary,
            binary_modified,
            started: SystemTime::now(),
            upgraded_from,
        }
    }
}

/// The path this binary was started by: `argv[0]` made absolute when it names a file (so that
/// an upgrade follows a symlink that now points at a new release), else found on `PATH`, else
/// the file the kernel ran.
fn own_path() -> PathBuf {
    let kernel = || std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hotswap"));
    let Some(arg0) = std::env::args_os().next().map(PathBuf::from) else {
        return kernel();
    };
    if arg0.components().count() > 1 {
        return std::path::absolute(&arg0).unwrap_or_else(|_| kernel());
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&arg0))
                .find(|candidate| candidate.is_file())
        })
        .and_then(|found| std::path::absolute(found).ok())
        .unwrap_or_else(kernel)
}
