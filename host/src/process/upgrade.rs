//! The binary upgrade, both sides of it: the old process starts the new one and hands it its
//! listeners ([`Handover`]); the new one reports to the old one over a socket pair whether it
//! is ready and waits for the word to go ([`Handoff`]). See the module docs of
//! [`crate::process`] for the sequence.
//!
//! The messages are lines: the new process sends `ready PID SERVING ROUTES` or `failed
//! REASON`; the old one answers `go` or `stop`. A new process that ends (or whose old process
//! ends) without a word is a failure on the other side.

use super::listeners::{FIRST_FD, ORIGIN_VAR, UPGRADE};
use super::systemd::Notifier;
use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The variable naming the new process's end of the socket pair.
const CHANNEL_VAR: &str = "HOTSWAP_UPGRADE_FD";
/// The variable carrying the old process's PID.
const FROM_VAR: &str = "HOTSWAP_UPGRADED_FROM";
/// Longest line either side reads.
const MAX_LINE: u64 = 4096;
/// Descriptors handed over are first duplicated at or above this number, so that placing them
/// at 3, 4, … in the new process never overwrites one still to be placed.
const HIGH_FD: RawFd = 64;
/// How long a new process that was told to stop (or timed out) gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The new process of a successful upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// Its PID.
    pub pid: u32,
}

/// An upgrade asked for, and where its outcome goes (an admin call waits for it; a signal
/// does not).
pub struct Request {
    /// What asked: `SIGUSR2` or `admin`.
    pub by: &'static str,
    /// Where the outcome goes, if anyone waits.
    pub reply: Option<oneshot::Sender<Result<Upgraded, String>>>,
}

/// Asks for upgrades; cheap to clone. One runs at a time: one asked for while another is
/// queued or running is refused.
#[derive(Clone)]
pub struct Upgrades(mpsc::Sender<Request>);

/// A new upgrade channel: the asking half, and the receiver the composition root runs them
/// from.
pub fn channel() -> (Upgrades, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel(1);
    (Upgrades(tx), rx)
}

impl Upgrades {
    /// Asks for an upgrade without waiting for it; `false` if one is already under way.
    pub fn ask(&self, by: &'static str) -> bool {
        self.0.try_send(Request { by, reply: None }).is_ok()
    }

    /// Asks for an upgrade and waits for its outcome: the new process's PID once it serves, or
    /// why this process goes on serving.
    pub async fn run(&self, by: &'static str) -> Result<Upgraded, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .try_send(Request {
                by,
                reply: Some(tx),
            })
            .map_err(|_| "an upgrade is already under way".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the upgrade was dropped".to_string()))
    }
}

/// What the old process hands over: its listeners and the binary to start.
pub struct Handover {
    /// The listeners, by name (`public`, then `admin` if any), as duplicates this process
    /// keeps for the purpose.
    pub listeners: Vec<(&'static str, OwnedFd)>,
    /// The binary to start: the path this process was started from.
    pub binary: PathBuf,
    /// How long the new process may take to be ready.
    pub timeout: Duration,
    /// Whether the listeners are systemd's (the new process then keeps their addresses as
    /// the socket unit's, as this one does).
    pub systemd: bool,
    /// systemd, told the new main PID.
    pub notifier: Notifier,
}

impl Handover {
    /// Runs one upgrade: starts the new process and waits until it is ready; if it serves at
    /// least `serving` routes (as many as this process serves), tells it to go and returns its
    /// PID. On any failure the new process is stopped and the reason returned: this process
    /// serves on.
    pub async fn run(&self, serving: usize) -> Result<Upgraded, String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot make the handover channel: {e}"))?;
        let mut handed = Vec::with_capacity(self.listeners.len() + 1);
        for (_, fd) in &self.listeners {
            handed.push(high_dup(fd.as_raw_fd()).map_err(|e| format!("{e:#}"))?);
        }
        handed.push(high_dup(theirs.as_raw_fd()).map_err(|e| format!("{e:#}"))?);
        drop(theirs);
        let names: Vec<&str> = self.listeners.iter().map(|(name, _)| *name).collect();
        let raw: Vec<RawFd> = handed.iter().map(AsRawFd::as_raw_fd).collect();
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(std::env::args_os().skip(1))
            .env(UPGRADE.count, self.listeners.len().to_string())
            .env(UPGRADE.names, names.join(":"))
            .env(
                CHANNEL_VAR,
                (FIRST_FD + self.listeners.len() as RawFd).to_string(),
            )
            .env(FROM_VAR, std::process::id().to_string())
            .env(ORIGIN_VAR, if self.systemd { "systemd" } else { "hotswap" })
            .stdin(std::process::Stdio::null());
        // SAFETY: between fork and exec only dup2(2), which is async-signal-safe, on
        // descriptors open in this process (`raw` is read, not allocated, in the child). dup2
        // clears close-on-exec on the copy, so exactly these descriptors reach the new binary.
        unsafe {
            command.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, FIRST_FD + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.binary.display()))?;
        drop(handed);
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, binary = %self.binary.display(), "upgrade: started the new process; waiting until it is ready (up to {:?})", self.timeout);
        let mut channel = match tokio_stream(ours) {
            Ok(channel) => channel,
            Err(err) => {
                stop(&mut child).await;
                return Err(err);
            }
        };
        let said = tokio::time::timeout(self.timeout, read_line(&mut channel)).await;
        let verdict = match said {
            Err(_) => Err(format!(
                "the new process (PID {pid}) was not ready within {:?} (`--upgrade-timeout`)",
                self.timeout
            )),
            Ok(Ok(Some(line))) => match Said::parse(&line) {
                Said::Ready {
                    serving: theirs,
                    routes,
                    ..
                } if theirs < serving => Err(format!(
                    "the new process (PID {pid}) serves {theirs} of its {routes} routes; this \
                     one serves {serving}"
                )),
                Said::Ready { .. } => Ok(()),
                Said::Failed(reason) => {
                    Err(format!("the new process (PID {pid}) failed: {reason}"))
                }
                Said::Other => Err(format!("the new process (PID {pid}) said {line:?}")),
            },
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                Err(match status {
                    Ok(Ok(status)) => format!(
                        "the new process (PID {pid}) ended before it was ready ({status}); its \
                         error is in the log above"
                    ),
                    _ => format!("the new process (PID {pid}) closed the handover channel"),
                })
            }
        };
        if let Err(reason) = verdict {
            let _ = say(&mut channel, b"stop\n").await;
            stop(&mut child).await;
            return Err(reason);
        }
        // systemd first: the new process says `READY=1` once it goes, which systemd accepts
        // only from the service's main process.
        self.notifier.main_pid(pid);
        if let Err(err) = say(&mut channel, b"go\n").await {
            self.notifier.main_pid(std::process::id());
            stop(&mut child).await;
            return Err(format!(
                "cannot tell the new process (PID {pid}) to go: {err}"
            ));
        }
        // The new process outlives this one; it is not waited for.
        Ok(Upgraded { pid })
    }
}

/// What the new process said.
enum Said {
    Ready {
        _pid: u32,
        serving: usize,
        routes: usize,
    },
    Failed(String),
    Other,
}

impl Said {
    fn parse(line: &str) -> Said {
        let line = line.trim_end();
        if let Some(reason) = line.strip_prefix("failed ") {
            return Said::Failed(reason.to_string());
        }
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("ready"), Some(pid), Some(serving), Some(routes)) => {
                match (pid.parse(), serving.parse(), routes.parse()) {
                    (Ok(_pid), Ok(serving), Ok(routes)) => Said::Ready {
                        _pid,
                        serving,
                        routes,
                    },
                    _ => Said::Other,
                }
            }
            _ => Said::Other,
        }
    }
}

/// `fd` duplicated at [`HIGH_FD`] or above, close-on-exec.
fn high_dup(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor this process has open.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot duplicate a listener");
    }
    // SAFETY: `dup` was just made and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

fn tokio_stream(
    stream: UnixStream,
) -> Result<tokio::io::BufStream<tokio::net::UnixStream>, String> {
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream))
        .map(tokio::io::BufStream::new)
        .map_err(|e| format!("cannot use the handover channel: {e}"))
}

/// Sends `line` to the new process.
async fn say(
    channel: &mut tokio::io::BufStream<tokio::net::UnixStream>,
    line: &[u8],
) -> std::io::Result<()> {
    channel.write_all(line).await?;
    channel.flush().await
}

/// One line (at most [`MAX_LINE`] bytes), or `None` at the end of the stream.
async fn read_line(
    channel: &mut tokio::io::BufStream<tokio::net::UnixStream>,
) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    let read = channel.take(MAX_LINE).read_line(&mut line).await?;
    Ok((read > 0).then_some(line))
}

/// Stops a new process that will not take over: SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the child this process started and has not yet waited for.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The new process's side of an upgrade: the channel to the old one.
pub struct Handoff {
    channel: UnixStream,
    /// The old process's PID.
    pub from: u32,
}

impl Handoff {
    /// The handoff this process was started with, if an upgrade started it. Removes the
    /// variables.
    ///
    /// # Safety
    ///
    /// Changes the environment: call it before any other thread exists.
    pub unsafe fn take_from_env() -> Result<Option<Handoff>> {
        let fd = std::env::var(CHANNEL_VAR).ok();
        let from = std::env::var(FROM_VAR).ok();
        for name in [CHANNEL_VAR, FROM_VAR] {
            // SAFETY: the caller guarantees that no other thread exists.
            unsafe { std::env::remove_var(name) };
        }
        let Some(fd) = fd else {
            return Ok(None);
        };
        let fd: RawFd = fd
            .parse()
            .with_context(|| format!("`{CHANNEL_VAR}={fd}` is not a descriptor"))?;
        // SAFETY: only checks that `fd` is open, before taking it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .with_context(|| format!("the upgrade's channel (descriptor {fd}) is not open"))?;
        // SAFETY: the descriptor was handed to this process for this purpose and is owned by
        // nothing else; the duplicate above is the one kept.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Some(Handoff {
            channel: UnixStream::from(owned),
            from: from.and_then(|p| p.parse().ok()).unwrap_or(0),
        }))
    }

    /// Tells the old process that this one cannot take over, and why.
    pub fn failed(mut self, reason: &str) {
        let reason: String = reason
            .replace('\n', " | ")
            .chars()
            .take(MAX_LINE as usize - 16)
            .collect();
        let _ = writeln!(self.channel, "failed {reason}");
    }

    /// Tells the old process that this one is ready (serving `serving` of its `routes`) and
    /// waits for its answer: `true` to go (start accepting), `false` to stop (the old process
    /// refused, or ended).
    pub async fn ready(self, serving: usize, routes: usize) -> bool {
        let mut channel = self.channel;
        tokio::task::spawn_blocking(move || {
            if writeln!(channel, "ready {} {serving} {routes}", std::process::id()).is_err() {
                return false;
            }
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(std::io::Read::take(channel, MAX_LINE));
            reader.read_line(&mut line).is_ok() && line.trim_end() == "go"
        })
        .await
        .unwrap_or(false)
    }
}
