//! Listening sockets the process is handed instead of binding its own: by systemd's socket
//! activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), or by the process it replaces
//! in a binary upgrade (the same protocol under `HOTSWAP_`-prefixed names, so that the two
//! never mix). Either way the descriptors start at 3 and are named `public` and `admin`; a
//! socket without a name is `public` if it comes first and `admin` if second.
//!
//! Every descriptor is checked before it is used (a listening TCP socket, or a clear error),
//! marked close-on-exec (a build command the host runs must not hold the host's listeners),
//! and the variables are removed from the environment, so that nothing the host starts later
//! takes them for its own.

use anyhow::{Context, Result, bail, ensure};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// Most listeners a process takes: the public one and the admin one.
const MAX_LISTENERS: usize = 2;

/// The variables of one handing-over protocol.
pub(super) struct Protocol {
    /// Says how many descriptors are passed.
    pub count: &'static str,
    /// Their names, `:`-separated, in order.
    pub names: &'static str,
    /// The PID they are meant for (systemd's; an upgrade passes them to its own child only).
    pub pid: Option<&'static str>,
    /// Who passed them, for error messages and logs.
    pub from: Source,
}

/// systemd's socket activation.
const SYSTEMD: Protocol = Protocol {
    count: "LISTEN_FDS",
    names: "LISTEN_FDNAMES",
    pid: Some("LISTEN_PID"),
    from: Source::Systemd,
};

/// Set (to `systemd`) by an upgrade whose listeners came from systemd, directly or through
/// earlier upgrades: the socket unit, not the configuration, decides their addresses.
pub(super) const ORIGIN_VAR: &str = "HOTSWAP_LISTEN_ORIGIN";

/// A binary upgrade's handover.
pub(super) const UPGRADE: Protocol = Protocol {
    count: "HOTSWAP_LISTEN_FDS",
    names: "HOTSWAP_LISTEN_FDNAMES",
    pid: None,
    from: Source::Upgrade,
};

/// Who handed the listeners over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// systemd, by socket activation.
    Systemd,
    /// The hotswap process this one replaces.
    Upgrade,
}

impl Source {
    /// Its name in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Systemd => "systemd socket activation",
            Source::Upgrade => "the process it replaces",
        }
    }
}

/// The listeners a process was handed.
#[derive(Debug)]
pub struct Inherited {
    /// The public listener, if one was passed.
    pub public: Option<TcpListener>,
    /// The admin listener, if one was passed.
    pub admin: Option<TcpListener>,
    /// Who passed them.
    pub from: Source,
    /// Whether they are systemd's sockets (passed by systemd, or by a process that had them
    /// from systemd): their addresses are the socket unit's, whatever the configuration says.
    pub systemd: bool,
}

/// Takes the listeners this process was handed, if any: an upgrade's first, else systemd's
/// (when `LISTEN_PID` is this process). Removes the variables either way.
///
/// # Safety
///
/// Changes the environment: call it before any other thread exists.
pub unsafe fn take_from_env() -> Result<Option<Inherited>> {
    // SAFETY: the caller guarantees that no other thread exists.
    let upgrade = unsafe { take(&UPGRADE) }?;
    // SAFETY: as above.
    let systemd = unsafe { take(&SYSTEMD) }?;
    Ok(upgrade.or(systemd))
}

/// The listeners of one protocol, if its variables are set (and meant for this process).
///
/// # Safety
///
/// Changes the environment: call it before any other thread exists.
unsafe fn take(protocol: &Protocol) -> Result<Option<Inherited>> {
    let count = std::env::var(protocol.count).ok();
    let names = std::env::var(protocol.names).ok();
    let systemd = match protocol.from {
        Source::Systemd => true,
        Source::Upgrade => std::env::var(ORIGIN_VAR).is_ok_and(|o| o == "systemd"),
    };
    if protocol.from == Source::Upgrade {
        // SAFETY: the caller guarantees that no other thread exists.
        unsafe { std::env::remove_var(ORIGIN_VAR) };
    }
    let pid = protocol.pid.map(|name| (name, std::env::var(name).ok()));
    for name in [Some(protocol.count), Some(protocol.names), protocol.pid]
        .into_iter()
        .flatten()
    {
        // SAFETY: the caller guarantees that no other thread exists.
        unsafe { std::env::remove_var(name) };
    }
    let Some(count) = count else {
        return Ok(None);
    };
    if let Some((_, pid)) = pid {
        // Meant for another process (one that started this one without clearing them):
        // ignored, as `sd_listen_fds` ignores them.
        if pid.as_deref() != Some(&std::process::id().to_string()) {
            return Ok(None);
        }
    }
    let count: usize = count.trim().parse().with_context(|| {
        format!(
            "`{}={count}` from {} is not a number of descriptors",
            protocol.count,
            protocol.from.as_str()
        )
    })?;
    if count == 0 {
        return Ok(None);
    }
    ensure!(
        count <= MAX_LISTENERS,
        "{} passed {count} sockets; hotswap takes at most {MAX_LISTENERS}: `public` and `admin` \
         (name them with FileDescriptorName= in the .socket unit)",
        protocol.from.as_str()
    );
    let names: Vec<String> = match &names {
        Some(names) => names.split(':').map(str::to_string).collect(),
        None => Vec::new(),
    };
    let mut inherited = Inherited {
        public: None,
        admin: None,
        from: protocol.from,
        systemd,
    };
    for i in 0..count {
        let fd = FIRST_FD + i as RawFd;
        let role = match names.get(i).map(String::as_str) {
            Some("public") => "public",
            Some("admin") => "admin",
            None | Some("") | Some("unknown") | Some("stored") => {
                if i == 0 {
                    "public"
                } else {
                    "admin"
                }
            }
            Some(other) => bail!(
                "{} passed a socket named `{other}` (descriptor {fd}); hotswap knows `public` \
                 and `admin`",
                protocol.from.as_str()
            ),
        };
        let listener = listener(fd).with_context(|| {
            format!(
                "the `{role}` socket from {} (descriptor {fd})",
                protocol.from.as_str()
            )
        })?;
        let slot = match role {
            "public" => &mut inherited.public,
            _ => &mut inherited.admin,
        };
        ensure!(
            slot.is_none(),
            "{} passed two `{role}` sockets",
            protocol.from.as_str()
        );
        *slot = Some(listener);
    }
    Ok(Some(inherited))
}

/// Descriptor `fd` as a listener, once it is checked to be a listening TCP socket (and marked
/// close-on-exec).
fn listener(fd: RawFd) -> Result<TcpListener> {
    let int = |level, name| -> std::io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt(2) writes at most `len` bytes into `value`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&raw mut value).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let kind = int(libc::SOL_SOCKET, libc::SO_TYPE)
        .context("not a socket (was one passed at this number?)")?;
    ensure!(kind == libc::SOCK_STREAM, "not a stream socket");
    let domain = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    ensure!(
        domain == libc::AF_INET || domain == libc::AF_INET6,
        "not a TCP socket (hotswap listens on TCP only)"
    );
    ensure!(
        int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 1,
        "the socket is not listening"
    );
    // SAFETY: F_SETFD on a descriptor checked above to be an open socket.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot mark it close-on-exec");
    }
    // SAFETY: the descriptor is an open listening socket handed to this process, owned by
    // nothing else in it: each is taken once, here.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener
        .set_nonblocking(true)
        .context("cannot make it non-blocking")?;
    Ok(listener)
}
