//! Upgrading the host binary without a gap (`SIGUSR2`, `POST /upgrade`), and starting from
//! systemd's sockets with readiness notifications: what a client and an operator see.

use hotswap_tests::guests::GUEST_EXAMPLE;
use hotswap_tests::server::{process_exists, rss_bytes};
use hotswap_tests::{Client, Server, eventually, free_port, get};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a new process may take to take over (it loads its routes from the compile cache).
const TAKEOVER_WAIT: Duration = Duration::from_secs(60);

/// What clients saw while the server was upgraded under them.
#[derive(Default, Debug)]
struct Seen {
    ok: u64,
    /// Connections refused (or reset before a response).
    refused: u64,
    /// Requests sent that got no response, or an error status.
    failed: Vec<String>,
    /// The slowest response.
    slowest: Duration,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.failed.extend(other.failed);
        self.slowest = self.slowest.max(other.slowest);
    }
}

/// Load until `stop`: two clients opening a connection per request, two keeping theirs alive
/// (a keep-alive client reconnects when the server closed its connection between requests,
/// as every HTTP client does: only a request that was sent and got no answer fails).
async fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> Seen {
    let mut tasks = Vec::new();
    for keep_alive in [false, false, true, true] {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut client: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    match Client::connect(addr).await {
                        Ok(c) => client = Some(c),
                        Err(err) => {
                            seen.refused += 1;
                            seen.failed.push(format!("connect: {err}"));
                            continue;
                        }
                    }
                }
                let started = Instant::now();
                let reply = client.as_mut().expect("connected").get("/").await;
                seen.slowest = seen.slowest.max(started.elapsed());
                match reply {
                    Ok(reply) if reply.status == 200 => {
                        seen.ok += 1;
                        let closing = reply
                            .header("connection")
                            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                        if !keep_alive || closing {
                            client = None;
                        }
                    }
                    Ok(reply) => {
                        seen.failed
                            .push(format!("status {}: {}", reply.status, reply.text()));
                        client = None;
                    }
                    // Closed between two requests: this one was never sent.
                    Err(err) if err.starts_with("connection not ready") => client = None,
                    Err(err) => {
                        seen.failed.push(err);
                        client = None;
                    }
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for task in tasks {
        all.add(task.await.expect("load task"));
    }
    all
}

/// The admin API's `/status`.
async fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    let reply = get(admin, "/status").await.ok()?;
    serde_json::from_str(&reply.text()).ok()
}

/// The PID `/status` names, once it is not `old`.
async fn new_pid(admin: SocketAddr, old: i32) -> Option<(i32, serde_json::Value)> {
    eventually(TAKEOVER_WAIT, || async {
        let status = status(admin).await?;
        let pid = status["process"]["pid"].as_i64()? as i32;
        (pid != old).then_some((pid, status))
    })
    .await
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started (or that took over from one).
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_upgrades_under_load_refuse_no_connection_and_fail_no_request() {
    let mut server = Server::start(Path::new(GUEST_EXAMPLE), &["--admin-addr", "127.0.0.1:0"]);
    let admin = server.admin.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(server.addr, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = server.pid();
    let fresh_rss = rss_bytes(first);
    let mut pid = first;
    for round in 1..=5 {
        let asked = Instant::now();
        signal(pid, libc::SIGUSR2);
        let (next, status) = new_pid(admin, pid).await.unwrap_or_else(|| {
            panic!(
                "round {round}: no new process took over; log:\n{}",
                server.log()
            )
        });
        let took = asked.elapsed();
        server.track(next);
        // Each process says which binary and PID serve, in /status and in its log.
        assert_eq!(status["process"]["upgraded_from"], pid, "{status}");
        assert_eq!(status["process"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            status["process"]["binary"]
                .as_str()
                .is_some_and(|b| b.ends_with("hotswap-e2e")),
            "{status}"
        );
        server
            .expect_log(&format!("starting (PID {next})"), Duration::from_secs(5))
            .await;
        server
            .expect_log(&format!("took over from PID {pid}"), Duration::from_secs(5))
            .await;
        // The old process drains and exits.
        let gone = eventually(Duration::from_secs(15), || async {
            (!process_exists(pid)).then_some(())
        })
        .await;
        assert!(
            gone.is_some() || (pid == first && !server.is_running()),
            "round {round}: PID {pid} still runs after handing over; log:\n{}",
            server.log()
        );
        eprintln!("upgrade {round}: PID {pid} → {next} in {took:?}");
        pid = next;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    eprintln!(
        "{} requests answered, slowest {:?}, {} refused, {} failed",
        seen.ok,
        seen.slowest,
        seen.refused,
        seen.failed.len()
    );
    assert_eq!(seen.refused, 0, "connections refused: {:?}", seen.failed);
    assert!(seen.failed.is_empty(), "failed requests: {:?}", seen.failed);
    assert!(seen.ok > 100, "too little load to tell: {seen:?}");
    // The survivor is a fresh process: its memory is that of a fresh start, not five
    // processes' worth.
    let survivor_rss = rss_bytes(pid);
    assert!(
        survivor_rss < fresh_rss * 3 / 2,
        "survivor RSS {survivor_rss} vs {fresh_rss} after a fresh start"
    );
    // It still stops as a host stops.
    signal(pid, libc::SIGTERM);
    let stopped = eventually(Duration::from_secs(15), || async {
        (!process_exists(pid)).then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the survivor did not stop on SIGTERM");
}

/// A copy of the binary under test in `dir`, which the test may replace as a deploy would.
fn copy_binary(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("hotswap");
    let tmp = dir.join(".hotswap.new");
    std::fs::copy(hotswap_tests::server::hotswap_bin(), &tmp).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    bin
}

/// `POST /upgrade` with the token: the status and the JSON answer.
async fn upgrade_call(admin: SocketAddr) -> (u16, serde_json::Value) {
    let mut client = Client::connect(admin).await.unwrap();
    let reply = client
        .send_with(
            "POST",
            "/upgrade",
            &[("authorization", "Bearer secret")],
            Vec::new(),
        )
        .await
        .unwrap();
    let body = serde_json::from_str(&reply.text()).unwrap_or_else(|_| panic!("{}", reply.text()));
    (reply.status.as_u16(), body)
}

/// The new process's PID in a refusal (`the new process (PID N) …`), which must be gone.
fn refused_child_gone(error: &str) {
    if let Some(pid) = error
        .split("(PID ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse::<i32>().ok())
    {
        assert!(!process_exists(pid), "the refused process {pid} still runs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_that_cannot_take_over_leaves_the_old_process_serving() {
    let dir = tempfile::tempdir().unwrap();
    let bin = copy_binary(dir.path());
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    // A build that is slow only once the test says so (for the timeout below).
    let config = |extra: &str| {
        format!(
            "[component]\npath = \"app.wasm\"\n{extra}\n[build]\ncmd = \"if [ -e slow ]; then sleep 30; fi\"\n\
             watch = [\"src\"]\n\n[server]\nupgrade_timeout = \"3s\"\n\n[admin]\naddr = \"127.0.0.1:0\"\n"
        )
    };
    std::fs::write(dir.path().join("hotswap.toml"), config("")).unwrap();
    let mut server = Server::launch_binary(
        &bin,
        &["--no-watch"],
        &[("HOTSWAP_ADMIN_TOKEN", "secret")],
        Some(dir.path()),
    );
    let admin = server.admin.unwrap();
    let serving = |server: &Server| {
        let addr = server.addr;
        async move { get(addr, "/").await.map(|r| r.status.as_u16()).unwrap_or(0) }
    };
    assert_eq!(serving(&server).await, 200);

    // A configuration the new process refuses.
    std::fs::write(
        dir.path().join("hotswap.toml"),
        config("").replace("[server]\n", "[server]\nbogus = 1\n"),
    )
    .unwrap();
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("bogus"), "{error}");
    refused_child_gone(error);
    assert_eq!(body["pid"], server.pid());
    server
        .expect_log("upgrade refused", Duration::from_secs(5))
        .await;
    assert_eq!(serving(&server).await, 200);

    // A component the new process cannot load, under `component.require`.
    std::fs::write(dir.path().join("hotswap.toml"), config("require = true")).unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm not really").unwrap();
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("cannot serve"), "{error}");
    refused_child_gone(error);
    assert_eq!(serving(&server).await, 200);

    // The same without `require`: the new process would serve none of the routes this one
    // serves, so it is not let in.
    std::fs::write(dir.path().join("hotswap.toml"), config("")).unwrap();
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("serves 0 of its 1 routes"), "{error}");
    refused_child_gone(error);
    assert_eq!(serving(&server).await, 200);
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();

    // A new process that is not ready within `upgrade_timeout`.
    std::fs::write(dir.path().join("slow"), b"").unwrap();
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("not ready within 3s"), "{error}");
    refused_child_gone(error);
    assert_eq!(serving(&server).await, 200);
    std::fs::remove_file(dir.path().join("slow")).unwrap();

    // A broken binary in place of the good one: a download cut short.
    let broken = dir.path().join(".broken");
    let whole = std::fs::read(&bin).unwrap();
    std::fs::write(&broken, &whole[..4096]).unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &bin).unwrap();
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    // The kernel refuses it (and the C library then hands it to `sh`, which fails too).
    assert!(
        error.contains("cannot start") || error.contains("ended before it was ready"),
        "{error}"
    );
    refused_child_gone(error);
    assert_eq!(serving(&server).await, 200);

    // Through all of it one process served; a good binary then takes over.
    assert!(server.is_running());
    copy_binary(dir.path());
    let (code, body) = upgrade_call(admin).await;
    assert_eq!(code, 200, "{body}");
    let next = body["pid"].as_i64().unwrap() as i32;
    server.track(next);
    assert_eq!(body["previous_pid"], server.pid());
    let (pid, _) = new_pid(admin, server.pid())
        .await
        .expect("the new process serves");
    assert_eq!(pid, next);
    assert_eq!(serving(&server).await, 200);
    assert!(
        server.wait_exit(Duration::from_secs(15)).is_some(),
        "the old process did not exit after handing over"
    );
}

/// A notify socket as systemd has one: the test reads what the host tells it.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits for a message containing every one of `lines`; returns it.
    fn expect(&mut self, lines: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(message.clone());
                if lines
                    .iter()
                    .all(|line| message.lines().any(|l| l == *line || l.starts_with(line)))
                {
                    return message;
                }
            }
        }
        panic!("no notification with {lines:?}; seen: {:?}", self.seen);
    }
}

/// A process started by `systemd-socket-activate`, killed (with its successors) on drop.
struct Activated {
    child: std::process::Child,
    log: Arc<std::sync::Mutex<String>>,
    others: Vec<i32>,
}

impl Drop for Activated {
    fn drop(&mut self) {
        for pid in &self.others {
            // SAFETY: kill(2) on processes this test started.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("----- log -----\n{}", self.log.lock().unwrap());
    }
}

/// A `Key=` line of a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {unit}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_systemd_units_start_on_their_sockets_report_readiness_reload_and_upgrade() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-socket-activate is not installed (Debian's systemd package)");
        return;
    }
    let units = Path::new(hotswap_tests::guests::ROOT).join("deploy/systemd");
    let read = |name: &str| std::fs::read_to_string(units.join(name)).unwrap();
    let (service, public_unit, admin_unit) = (
        read("hotswap.service"),
        read("hotswap.socket"),
        read("hotswap-admin.socket"),
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = hotswap_tests::server::hotswap_bin();
    // The units as systemd reads them (with ExecStart on the binary under test).
    if let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        && out.status.success()
    {
        for (name, text) in [
            (
                "hotswap.service",
                service.replace("/usr/local/bin/hotswap", &bin.display().to_string()),
            ),
            ("hotswap.socket", public_unit.clone()),
            ("hotswap-admin.socket", admin_unit.clone()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(
                ["hotswap.service", "hotswap.socket", "hotswap-admin.socket"]
                    .map(|n| dir.path().join(n)),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(service.contains("Type=notify"), "{service}");
    // The service's own command line, on its sockets' names, with a configuration of the test.
    let names = format!(
        "{}:{}",
        unit_value(&public_unit, "FileDescriptorName"),
        unit_value(&admin_unit, "FileDescriptorName")
    );
    let exec_start = unit_value(&service, "ExecStart");
    let mut args = exec_start
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect::<Vec<_>>();
    let config = dir.path().join("hotswap.toml");
    for arg in &mut args {
        if arg == "/etc/hotswap/hotswap.toml" {
            *arg = config.display().to_string();
        }
    }
    std::fs::copy(GUEST_EXAMPLE, dir.path().join("app.wasm")).unwrap();
    std::fs::write(&config, "[component]\npath = \"app.wasm\"\n").unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let (public, admin) = (free_port(), free_port());
    let child = std::process::Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{public}")])
        .args(["-l", &format!("127.0.0.1:{admin}")])
        .arg(format!("--fdname={names}"))
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.path.display()))
        .args(["-E", "RUST_BACKTRACE=0", "-E", "HOTSWAP_LOG=info"])
        .arg(format!(
            "--setenv=HOTSWAP_CACHE_DIR={}",
            dir.path().join("cache").display()
        ))
        .arg(&bin)
        .args(&args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    let mut child = child;
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    {
        let log = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let mut activated = Activated {
        child,
        log: log.clone(),
        others: Vec::new(),
    };
    let public: SocketAddr = format!("127.0.0.1:{public}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    // systemd-socket-activate listens; the host starts on the first connection, which waits in
    // the socket's queue while it loads and is then answered.
    let reply = eventually(Duration::from_secs(30), || async {
        get(public, "/").await.ok().filter(|r| r.status == 200)
    })
    .await
    .unwrap_or_else(|| panic!("no answer; log:\n{}", log.lock().unwrap()));
    assert!(reply.text().starts_with("hello from hotswap"));
    let first = activated.child.id() as i32;
    let ready = notify.expect(&["READY=1"], Duration::from_secs(30));
    assert!(ready.contains("STATUS=serving 1 of 1 routes"), "{ready}");
    let status = status(admin)
        .await
        .expect("admin on systemd's second socket");
    assert_eq!(status["process"]["pid"], first);
    assert!(
        log.lock()
            .unwrap()
            .contains("serving on the socket systemd passed"),
        "{}",
        log.lock().unwrap()
    );

    // SIGHUP: RELOADING=1 (with the monotonic clock), then READY=1 once every route reloaded.
    signal(first, libc::SIGHUP);
    notify.expect(&["RELOADING=1", "MONOTONIC_USEC="], Duration::from_secs(10));
    notify.expect(&["READY=1"], Duration::from_secs(30));

    // SIGUSR2: the new process takes over, and systemd hears its PID.
    signal(first, libc::SIGUSR2);
    let (next, _) = new_pid(admin, first)
        .await
        .expect("a new process took over");
    activated.others.push(next);
    let main = notify.expect(&["MAINPID="], Duration::from_secs(30));
    assert!(main.contains(&format!("MAINPID={next}")), "{main}");
    notify.expect(&["READY=1"], Duration::from_secs(30));
    assert_eq!(get(public, "/").await.unwrap().status, 200);
    // The new process keeps systemd's sockets as the socket unit's, as the first did.
    assert!(
        !log.lock()
            .unwrap()
            .contains("configured address is not used"),
        "{}",
        log.lock().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while activated.child.try_wait().ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "the first process did not exit after handing over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM to the new main process: STOPPING=1, and it exits.
    signal(next, libc::SIGTERM);
    notify.expect(&["STOPPING=1"], Duration::from_secs(10));
    let stopped = eventually(Duration::from_secs(15), || async {
        (!process_exists(next)).then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the new process did not stop on SIGTERM");
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_a_clear_error() {
    // `LISTEN_PID=$$` then exec: the shell's PID is the host's.
    let bin = hotswap_tests::server::hotswap_bin();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=public; exec \"$0\" serve app.wasm 3</dev/null",
        )
        .arg(&bin)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the `public` socket from systemd socket activation (descriptor 3)")
            && stderr.contains("not a socket"),
        "{stderr}"
    );
}
