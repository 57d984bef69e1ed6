//! A running `hotswap serve` process owned by a test.
//!
//! The server is started with `--addr 127.0.0.1:0`; the real port is read from its startup
//! line. Its stderr (the log) is collected so tests can assert on it, and on drop the process
//! is killed and its log printed, so a failing test shows what the server said.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print its startup line (it compiles the component first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The `hotswap` binary under test: `hotswap-e2e` (the host's own `main`, built by this
/// package) next to the test binary's `deps/` directory, or `$HOTSWAP_BIN` if set.
pub fn hotswap_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("HOTSWAP_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("hotswap-e2e");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test`",
        bin.display()
    );
    bin
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin listener's address, if `--admin-addr` was given.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// Processes that took over from this one by a binary upgrade: killed with it.
    successors: Vec<i32>,
}

/// Output of a `hotswap` run that was expected to exit.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    /// Starts `hotswap serve COMPONENT --addr 127.0.0.1:0 ARGS…` and waits for its startup line.
    pub fn start(component: &Path, args: &[&str]) -> Server {
        Self::start_with_env(component, args, &[])
    }

    /// Like [`Server::start`] with extra environment variables.
    pub fn start_with_env(component: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut all = vec![component.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        Self::launch(&all, env, None)
    }

    /// Starts `hotswap serve ARGS… --addr 127.0.0.1:0` in `cwd` (default: the test's own) with
    /// extra environment variables; the component may come from a configuration file.
    pub fn launch(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Server {
        Self::launch_on(None, args, env, cwd)
    }

    /// [`Server::launch`] with every thread of the server on CPU `cpu` (when given), so a test
    /// that measures latency measures the server's scheduling, not the kernel's sharing of a
    /// core between the server and the test's own client.
    pub fn launch_on(
        cpu: Option<usize>,
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Server {
        Self::spawn(cpu, args, env, cwd, true)
    }

    /// [`Server::launch`] that returns as soon as the server listens, without waiting for its
    /// startup builds and loads to finish (its `Startup finished` line).
    pub fn launch_listening(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Server {
        Self::spawn(None, args, env, cwd, false)
    }

    /// [`Server::launch`] of the binary at `bin` (a copy of the one under test that the test may
    /// replace, as an upgrade would).
    pub fn launch_binary(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&Path>,
    ) -> Server {
        Self::spawn_with(&[], Some(bin), None, args, env, cwd, Wait::Startup).ready()
    }

    /// [`Server::launch`] in a mount namespace of its own in which `/etc/hosts` is `hosts`
    /// (bind-mounted over it with `unshare`, which needs root): the names it lists resolve as
    /// the test says, for the server only. `None` when the namespace cannot be made here (the
    /// caller skips, saying why).
    pub fn launch_with_hosts(hosts: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<Server> {
        let probe = Command::new("unshare")
            .args(["--mount", "--", "sh", "-c"])
            .arg(format!("mount --bind {} /etc/hosts", hosts.display()))
            .status();
        if !matches!(probe, Ok(status) if status.success()) {
            return None;
        }
        let bind = format!(
            "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
            hosts.display()
        );
        let wrapper = ["unshare", "--mount", "--", "sh", "-c", bind.as_str()];
        Some(Self::spawn_with(&wrapper, None, None, args, env, None, Wait::Startup).ready())
    }

    /// Starts `hotswap serve ARGS… --addr 127.0.0.1:0` and returns at once, before it even
    /// listens: for tests that act on a host while it starts (signals during its first
    /// compile). [`Starting::ready`] waits for its startup lines.
    pub fn begin(args: &[&str], env: &[(&str, &str)]) -> Starting {
        Self::spawn_with(&[], None, None, args, env, None, Wait::Startup)
    }

    fn spawn(
        cpu: Option<usize>,
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&Path>,
        wait_for_startup: bool,
    ) -> Server {
        let wait = if wait_for_startup {
            Wait::Startup
        } else {
            Wait::Listening
        };
        Self::spawn_with(&[], None, cpu, args, env, cwd, wait).ready()
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_with(
        wrapper: &[&str],
        bin: Option<&Path>,
        cpu: Option<usize>,
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&Path>,
        wait: Wait,
    ) -> Starting {
        let bin = bin.map(Path::to_path_buf).unwrap_or_else(hotswap_bin);
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        if let Some(cpu) = cpu {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec (CPU_SET on a local
            // set, sched_setaffinity).
            unsafe {
                cmd.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .env("HOTSWAP_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("spawn hotswap");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let (finished_tx, finished_rx) = std::sync::mpsc::channel();
        let admin_addr = Arc::new(Mutex::new(None));
        let admin_writer = admin_addr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line
                    .strip_prefix("Admin API on http://")
                    .or_else(|| line.strip_prefix("Admin API on https://"))
                {
                    *admin_writer.lock().unwrap() =
                        rest.trim_end_matches('/').parse::<SocketAddr>().ok();
                }
                if let Some(rest) = line
                    .strip_prefix("Serving HTTP on http://")
                    .or_else(|| line.strip_prefix("Serving HTTPS on https://"))
                {
                    let addr = rest.trim_end_matches('/').parse::<SocketAddr>().ok();
                    let _ = tx.send(addr);
                }
                if line.starts_with("Startup finished:") {
                    let _ = finished_tx.send(());
                }
            }
        });
        Starting {
            child: Some(child),
            log,
            listening: rx,
            finished: finished_rx,
            admin: admin_addr,
            wait,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; returns whether it did within `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        crate::eventually(timeout, || async {
            self.log().contains(needle).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits until the log contains `needle`; if it does not within `timeout`, fails the test
    /// and shows the whole log.
    pub async fn expect_log(&self, needle: &str, timeout: Duration) {
        if !self.wait_for_log(needle, timeout).await {
            panic!(
                "no {needle:?} in the log within {timeout:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// How many times `needle` appears in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// The server's resident set size in bytes (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// Kills `pid` (a process that took over from this one by an upgrade) when this server is
    /// dropped, as this one is.
    pub fn track(&mut self, pid: i32) {
        if !self.successors.contains(&pid) {
            self.successors.push(pid);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        is_running(self.child.as_mut())
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(self.child.as_mut(), timeout)
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// What a server is waited for before a test uses it.
#[derive(Clone, Copy)]
enum Wait {
    /// `Serving HTTP on …`.
    Listening,
    /// `Startup finished: …` too.
    Startup,
}

/// A `hotswap serve` process that has been spawned and may not listen yet.
pub struct Starting {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    listening: std::sync::mpsc::Receiver<Option<SocketAddr>>,
    finished: std::sync::mpsc::Receiver<()>,
    admin: Arc<Mutex<Option<SocketAddr>>>,
    wait: Wait,
}

impl Starting {
    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        send_signal(self.child.as_ref().expect("spawned").id() as i32, signal);
    }

    /// Waits up to `timeout` for the process to exit, and returns how.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(self.child.as_mut(), timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        is_running(self.child.as_mut())
    }

    /// Waits for the startup lines (as the launch asked) and hands over the running server;
    /// panics with the log if they do not come.
    pub fn ready(mut self) -> Server {
        let addr = match self.listening.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(addr)) if matches!(self.wait, Wait::Listening) => addr,
            Ok(Some(addr)) if self.finished.recv_timeout(STARTUP_TIMEOUT).is_ok() => addr,
            other => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "hotswap did not print its startup lines ({other:?}); log:\n{}",
                    self.log()
                );
            }
        };
        let admin = *self.admin.lock().unwrap();
        Server {
            child: self.child.take(),
            addr,
            admin,
            log: self.log.clone(),
            successors: Vec::new(),
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
            eprintln!(
                "----- hotswap log -----\n{}-----------------------",
                self.log()
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.successors.drain(..) {
            // SAFETY: kill(2) on a process this test started (through an upgrade).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Give the log thread a moment to drain the pipe, then show the log (the test harness
        // prints it only for failing tests).
        std::thread::sleep(Duration::from_millis(50));
        eprintln!(
            "----- hotswap log -----\n{}-----------------------",
            self.log()
        );
    }
}

/// The resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Whether process `pid` exists (a zombie not yet reaped counts as gone).
pub fn process_exists(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `Z` is a zombie.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs `hotswap ARGS…` to completion (for commands that must fail or exit).
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Exited {
    let mut child = Command::new(hotswap_bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hotswap");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("try_wait") {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("hotswap {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Exited {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` to the process `pid` (a server this test spawned).
fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a pid we own; no memory is involved.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({signal}) failed");
}

/// Waits up to `timeout` for `child` to exit, and returns how (`None`: still running, or no
/// process).
fn wait_exit(child: Option<&mut Child>, timeout: Duration) -> Option<ExitStatus> {
    let child = child?;
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `child` is a process still running.
fn is_running(child: Option<&mut Child>) -> bool {
    child.is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}
