//! A headless Chromium driven through chromedriver's WebDriver HTTP API (JSON over HTTP/1.1):
//! start `chromedriver` on a free port, open a session with a fresh profile, navigate, and run
//! a script in the page. Calls are blocking and bounded in time; dropping the [`Browser`] ends
//! the session (which quits Chromium) and stops chromedriver.
//!
//! The binaries come from `$CHROMIUM` and `$CHROMEDRIVER`, else Debian's `chromium` and
//! `chromium-driver` packages (`/usr/bin/chromium`, `/usr/bin/chromedriver`), else `PATH`.
//! Without them, [`Browser::start`] says why, and the test that wanted one skips.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a WebDriver call may take (a navigation waits for the page to load).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(30);

/// A browser session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// `$var`, else the first of `candidates` that exists, else a `PATH` lookup of its last part.
fn find(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(found);
    }
    let paths = std::env::var_os("PATH")?;
    candidates.iter().find_map(|c| {
        let name = std::path::Path::new(c).file_name()?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Chromium's and chromedriver's paths, or why they cannot be found.
    pub fn available() -> Result<(PathBuf, PathBuf), String> {
        let chromium = find(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        )
        .ok_or("no Chromium (install Debian's `chromium`, or set $CHROMIUM)")?;
        let chromedriver = find("CHROMEDRIVER", &["/usr/bin/chromedriver"])
            .ok_or("no chromedriver (install Debian's `chromium-driver`, or set $CHROMEDRIVER)")?;
        Ok((chromium, chromedriver))
    }

    /// A headless Chromium with a fresh profile, or why it did not start.
    pub fn start() -> Result<Browser, String> {
        let (chromium, chromedriver) = Self::available()?;
        let port = crate::free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut browser = Browser {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            _profile: profile,
        };
        let started = Instant::now();
        loop {
            let ready = browser
                .call("GET", "/status", None)
                .ok()
                .and_then(|v| v["value"]["ready"].as_bool());
            if ready == Some(true) {
                break;
            }
            if started.elapsed() > DRIVER_START {
                return Err(format!(
                    "chromedriver did not get ready in {DRIVER_START:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = browser._profile.path().display().to_string();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage",
                        format!("--user-data-dir={profile}"),
                    ],
                },
            }},
        });
        let created = browser.call("POST", "/session", Some(&capabilities))?;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {created}"))?
            .to_string();
        Ok(browser)
    }

    /// Navigates to `url` and waits for it to load.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        let path = format!("/session/{}/url", self.session);
        self.call("POST", &path, Some(&json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn eval(&self, script: &str) -> Result<Value, String> {
        let path = format!("/session/{}/execute/sync", self.session);
        let reply = self.call(
            "POST",
            &path,
            Some(&json!({ "script": script, "args": [] })),
        )?;
        Ok(reply["value"].clone())
    }

    /// The page's visible text (`document.body.innerText`).
    pub fn text(&self) -> Result<String, String> {
        let value = self.eval("return document.body ? document.body.innerText : '';")?;
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("innerText is not a string: {value}"))
    }

    /// One WebDriver call: `method path` with a JSON body, its JSON answer (an error for a
    /// status other than 200, with WebDriver's message).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("chromedriver: {e}"))?;
        stream.set_read_timeout(Some(CALL_TIMEOUT)).ok();
        stream.set_write_timeout(Some(CALL_TIMEOUT)).ok();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("chromedriver: {e}"))?;
        let raw = read_response(&mut stream).map_err(|e| format!("chromedriver: {e}"))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("chromedriver: no response head in {text:?}"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let value: Value = serde_json::from_str(&body)
            .map_err(|e| format!("chromedriver: not JSON ({e}): {body}"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {}", value["value"]));
        }
        Ok(value)
    }
}

/// One HTTP/1.1 response, whole: up to its `Content-Length` when it has one (chromedriver
/// keeps the connection open, `Connection: close` or not), else up to the end of the stream.
fn read_response(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|line| {
                line.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if let Some(length) = length
                && raw.len() >= end + 4 + length
            {
                raw.truncate(end + 4 + length);
                return Ok(raw);
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// A chunked body, dechunked.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
