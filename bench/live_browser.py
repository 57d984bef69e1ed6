#!/usr/bin/env python3
"""Save → new text in the browser, with `--live-reload` and the repository's own `hotswap.toml`
(its build commands and profile), in a private copy of the repository's guests.

The copy (guest-example, guest-api, wit, hotswap.toml) goes to a temporary directory, so the
repository is never edited. hotswap serves it unpinned with `--live-reload` (its builds use both
cores, as for a user), and a headless Chromium, driven through chromedriver's WebDriver API,
opens guest-example's `/page` once. Each of EDITS edits then rewrites guest-example's greeting
to a new text, and two times are taken from the save (the wall clock just before the write):

  host:    until `GET /page` first answers with the new text (polled every 5 ms);
  browser: until the reloaded page's DOM was ready in the browser, read from the page itself
           (`performance.timeOrigin + domContentLoadedEventEnd` of its navigation), not from
           how often this script looks.

The browser is never navigated after the first load: the page's own script reloads it.

    bench/live_browser.py --edits 10
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GREETING = "hello from hotswap guest-example"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]


class Browser:
    """A headless Chromium session through chromedriver (WebDriver over HTTP, JSON)."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.call("GET", "/status")["value"]["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("chromedriver did not get ready in 30 s")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": CHROME_ARGS + [f"--user-data-dir={profile}"]}}}}
        self.session = self.call("POST", "/session", caps)["value"]["sessionId"]

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def goto(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def eval(self, script: str):
        try:
            return self.call("POST", f"/session/{self.session}/execute/sync",
                             {"script": script, "args": []})["value"]
        except OSError:
            return None  # the page was reloading

    def quit(self) -> None:
        try:
            self.call("DELETE", f"/session/{self.session}")
        except OSError:
            pass
        self.driver.kill()
        self.driver.wait()


# The page's text and when its DOM was ready (epoch milliseconds).
PAGE_STATE = """
var nav = performance.getEntriesByType('navigation')[0];
return [document.body ? document.body.innerText : '',
        nav && nav.domContentLoadedEventEnd > 0 ? performance.timeOrigin + nav.domContentLoadedEventEnd : null];
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hotswap", default="target/release/hotswap")
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = ap.parse_args()
    binary = str(Path(args.hotswap).resolve())
    work = Path(tempfile.mkdtemp(prefix="hotswap-live-"))
    for part in ["guest-example", "guest-api", "wit"]:
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("target"))
    shutil.copy(ROOT / "hotswap.toml", work / "hotswap.toml")
    source = work / "guest-example" / "src" / "lib.rs"
    original = source.read_text()
    assert GREETING in original, "guest-example's greeting moved; update this script"
    server = H.Server("hotswap", [binary, "serve", "--addr", "127.0.0.1:0", "--live-reload"],
                      work / "logs",
                      {"HOTSWAP_ADMIN_ADDR": "127.0.0.1:0", "XDG_CACHE_HOME": str(work / "cache"),
                       "RUST_BACKTRACE": "0"},
                      cwd=work, pin=False)
    browser = None
    host_times, browser_times = [], []
    try:
        url = f"http://{server.wait_ready(timeout=600)}/page"
        deadline = time.perf_counter() + 600
        while GREETING not in H.get_text(url):
            if time.perf_counter() > deadline:
                raise SystemExit("the first build never served")
            time.sleep(0.05)
        print(f"start: the first (cold) build served after {time.perf_counter() - server.t_spawn:.1f} s",
              flush=True)
        browser = Browser(args.chromium, args.chromedriver, work / "profile")
        browser.goto(url)
        text, _ = browser.eval(PAGE_STATE)
        assert GREETING in text, text
        for n in range(1, args.edits + 1):
            time.sleep(1.0)
            new = f"hello #{n} from hotswap guest-example"
            saved = time.time()
            start = time.perf_counter()
            source.write_text(original.replace(GREETING, new))
            deadline = start + 120
            while new not in H.get_text(url):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"edit {n} never served; see {server.log_path}")
                time.sleep(0.005)
            host = time.perf_counter() - start
            while True:
                state = browser.eval(PAGE_STATE)
                if state and new in (state[0] or "") and state[1]:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"edit {n} never showed in the browser; see {server.log_path}")
                time.sleep(0.05)
            shown = state[1] / 1000 - saved
            host_times.append(host)
            browser_times.append(shown)
            print(f"edit {n:2d}: served {host:5.2f} s, in the browser's DOM {shown:5.2f} s after the save",
                  flush=True)
    finally:
        if browser:
            browser.quit()
        server.stop()
    for name, xs in [("host (new text served)", host_times), ("browser (DOM ready)", browser_times)]:
        print(f"{name}: median {statistics.median(xs):.2f} s, max {max(xs):.2f} s over {len(xs)} edits "
              f"(min {min(xs):.2f})")
    print(f"log: {server.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
