#!/usr/bin/env python3
"""The hotswap benchmark driver. Run it through `bench/run.sh`, which builds the binaries and
passes their paths; this file only measures and reports.

Every server is pinned to CPU 0 and every load generator / polling client to CPU 1. All
traffic goes to 127.0.0.1, and every load is bounded in time. Only the standard library is
used.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVER_CPU = 0
CLIENT_CPU = 1
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SERVING = re.compile(r"Serving HTTPS? on https?://([^/\s]+)/")
# hotswap listens before its components load; this line says the startup loads are over.
STARTED = re.compile(r"^Startup finished: ")
LOADED = r"loaded generation {n}\b"
RUN_NONCE = f"{os.getpid()}-{time.time_ns()}"
# "cache hit", "cache=hit", "cache_hit=true", "\"cache\":\"hit\"", but not "cache_hit=false".
CACHE_HIT = re.compile(r"cache[\s_=:\"-]*hit(?![\s=:\"]*false)", re.IGNORECASE)
GEN_HEADER = "x-hotswap-generation"
ROUTE_HEADER = "x-hotswap-route"
# guest-example's answer to a path it has no handler for (it sees the full path on a route).
GUEST_NOT_FOUND = b"not found\n"
BENCH_DIR = Path(__file__).resolve().parent
RSS_WINDOW = 5
# The fleet scenario's poll interval (`--poll-interval` of each replica).
FLEET_POLL = "1s"
# The heavy-guest scenario's components, as tests/compat/build.sh names them.
HEAVY_GUESTS = ("js", "python")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class HarnessError(Exception):
    """The harness could not take a measurement (as opposed to a slow measurement)."""


# --------------------------------------------------------------------------------------------
# Servers


class Server:
    """A server process (pinned to CPU 0 unless `pin` is false), with its stdout/stderr lines
    timestamped as they come."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGTERM, cwd: Path | None = None, pin: bool = True,
                 startup_line: bool | None = None):
        self.name = name
        self.stop_signal = stop_signal
        # `hotswap serve` prints `Startup finished` once its components have loaded (builds
        # older than listening at once do not: pass False for them).
        self.startup_line = (Path(argv[0]).name.startswith("hotswap") and "serve" in argv
                             if startup_line is None else startup_line)
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        # No HOTSWAP_* settings from the caller's environment reach the servers.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOTSWAP_")}
        full_env.update({"RUST_BACKTRACE": "0", "NO_COLOR": "1"})
        full_env.update(env or {})
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "a", encoding="utf-8")
        # Where this server's part of the log (shared by every run of the same name) begins.
        self.log_offset = self._log.tell()
        prefix = ["taskset", "-c", str(SERVER_CPU)] if pin else []
        self._log.write(f"$ {' '.join([*prefix, *argv])}\n")
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
            cwd=cwd or log_dir,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for t in self._readers:
            t.start()
        self.addr: str | None = None

    def _read(self, pipe, tag: str) -> None:
        for raw in iter(pipe.readline, b""):
            now = time.perf_counter()
            text = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            with self.cond:
                self.lines.append((now, text))
                self._log.write(f"{tag}| {text}\n")
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern: str | re.Pattern, timeout: float, start: int = 0):
        """Waits for a line matching `pattern` at index >= start; returns (index, match, time)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.perf_counter() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    t, text = self.lines[i]
                    m = rx.search(text)
                    if m:
                        return i, m, t
                    i += 1
                readers_done = not any(r.is_alive() for r in self._readers)
                if readers_done or time.perf_counter() >= deadline:
                    raise HarnessError(
                        f"{self.name}: no line matching /{rx.pattern}/ within {timeout:.0f}s "
                        f"(exit code {self.proc.poll()}); see {self.log_path}")
                self.cond.wait(0.05)

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Waits until the server listens and (hotswap) its startup loads are over."""
        _, m, _ = self.wait_line(SERVING, timeout)
        self.addr = m.group(1)
        if self.startup_line:
            self.wait_line(STARTED, timeout)
        return self.addr

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise HarnessError(f"{self.name}: no VmRSS in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=2)
        with self.cond:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@dataclass
class Peer:
    """How to start one kind of server."""
    name: str
    argv_for: object  # (component_path, extra_env) -> argv
    stop_signal: int = signal.SIGTERM

    def start(self, component: Path, log_dir: Path, env: dict[str, str] | None = None,
              log_name: str | None = None) -> Server:
        # Run in the component's directory: no `hotswap.toml` from the repository is picked up,
        # and (unless `env` says otherwise) the compile cache is private to that directory.
        cwd = component.parent
        env = {"XDG_CACHE_HOME": str(cwd.with_name(cwd.name + "-cache")), **(env or {})}
        return Server(log_name or self.name, self.argv_for(component), log_dir, env, self.stop_signal, cwd)


def get_text(url: str) -> str:
    """The body of `GET url` as text; empty on any error (the polling loops retry)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# HTTP client (keep-alive, for sanity checks and swap polling)


class Client:
    def __init__(self, addr: str, timeout: float = 10.0):
        host, port = addr.rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str = "GET", path: str = "/", body: bytes | None = None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = {"content-type": "application/octet-stream"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def generation(self) -> tuple[int, int]:
        status, resp, _ = self.request()
        gen = resp.getheader(GEN_HEADER)
        return status, int(gen) if gen is not None else -1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def cpu_busy(seconds: float) -> float:
    """Fraction of all CPUs' time spent not idle over the next `seconds`."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    t1, i1 = sample()
    time.sleep(seconds)
    t2, i2 = sample()
    return 1.0 - (i2 - i1) / max(t2 - t1, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_self_to_client_cpu() -> None:
    try:
        os.sched_setaffinity(0, {CLIENT_CPU})
    except OSError as err:
        log(f"cannot pin the driver to CPU {CLIENT_CPU}: {err}")


# --------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    extra: dict = field(default_factory=dict)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise HarnessError(f"cannot parse wrk time `{text}`")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[unit]


def stop_wrk(wrk):
    """Stops a wrk still running (it prints its statistics on SIGINT); its stdout and stderr."""
    if wrk.poll() is None:
        wrk.send_signal(signal.SIGINT)
    return wrk.communicate(timeout=30)


def check_wrk(wrk, out, err):
    """Raises when wrk failed rather than being stopped."""
    if wrk.returncode not in (0, -signal.SIGINT):
        raise HarnessError(f"wrk failed ({wrk.returncode}): {err}{out}")


def parse_wrk(out: str) -> WrkResult:
    def grab(rx: str, cast=float, default=None):
        m = re.search(rx, out, re.MULTILINE)
        if not m:
            if default is not None:
                return default
            raise HarnessError(f"wrk output has no /{rx}/:\n{out}")
        return cast(m.group(1))

    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    extra = {}
    m = re.search(r"^STATUS ok=(\d+) bad=(\d+) mingen=(-?\d+) maxgen=(-?\d+)", out, re.MULTILINE)
    if m:
        extra = {"ok": int(m.group(1)), "bad": int(m.group(2)),
                 "mingen": int(m.group(3)), "maxgen": int(m.group(4))}
    return WrkResult(
        rps=grab(r"^Requests/sec:\s+([\d.]+)"),
        p50_ms=grab(r"^\s+50%\s+(\S+)", _ms),
        p99_ms=grab(r"^\s+99%\s+(\S+)", _ms),
        requests=grab(r"^\s+(\d+) requests in", int),
        non_2xx=grab(r"Non-2xx or 3xx responses: (\d+)", int, 0),
        socket_errors=sum(int(x) for x in socket.groups()) if socket else 0,
        extra=extra,
    )


def wrk_argv(url: str, duration: int, conns: int, script: Path | None,
             headers: tuple[str, ...] = ()) -> list[str]:
    argv = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
            "--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    return argv + [url]


def run_wrk(url: str, duration: int, conns: int, script: Path | None = None,
            headers: tuple[str, ...] = ()) -> WrkResult:
    argv = wrk_argv(url, duration, conns, script, headers)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise HarnessError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------------------------
# Components that differ only in a custom section


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_custom_section(component: bytes, tag: str) -> bytes:
    """The component with one more custom section at the end: same code, different bytes."""
    name = b"hotswap-bench"
    payload = _leb(len(name)) + name + tag.encode()
    return component + b"\x00" + _leb(len(payload)) + payload


class Deployer:
    """Puts component bytes at `live` by an atomic rename from a staging directory that the
    host does not watch (same filesystem)."""

    def __init__(self, work: Path, base: bytes):
        self.base = base
        self.live_dir = work / "live"
        self.staging = work / "staging"
        self.live_dir.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.live = self.live_dir / "guest.wasm"
        self.count = 0

    def variant(self, tag: str) -> bytes:
        # Unique per run: an on-disk compile cache never holds these bytes from an earlier run.
        return with_custom_section(self.base, f"{RUN_NONCE}-{tag}")

    def deploy(self, data: bytes) -> float:
        self.count += 1
        tmp = self.staging / f"guest.{self.count}.wasm"
        tmp.write_bytes(data)
        os.rename(tmp, self.live)
        return time.perf_counter()


@dataclass
class Swap:
    generation: int
    latency_ms: float      # rename done → first response with the new generation
    to_log_ms: float       # rename done → "loaded generation" line read from stderr
    compile_ms: float | None
    total_ms: float | None
    cache_hit: bool


def swap_once(server: Server, client: Client, deployer: Deployer, data: bytes, expect: int,
              poll_s: float, timeout: float = 30.0) -> Swap:
    log_start = len(server.lines)
    t0 = deployer.deploy(data)
    while True:
        status, gen = client.generation()
        now = time.perf_counter()
        if status == 200 and gen >= expect:
            break
        if now - t0 > timeout:
            raise HarnessError(f"{server.name}: generation {expect} not served {timeout:.0f}s after "
                               f"the rename (still {gen}, status {status}); see {server.log_path}")
        time.sleep(poll_s)
    if gen != expect:
        raise HarnessError(f"{server.name}: expected generation {expect}, got {gen}")
    idx, _, t_log = server.wait_line(LOADED.format(n=expect), 10.0, log_start)
    line = server.lines[idx][1]
    cm = re.search(r"compile_ms\"?[=:](\d+)", line)
    tm = re.search(r"total_ms\"?[=:](\d+)", line)
    return Swap(
        generation=expect,
        latency_ms=(now - t0) * 1e3,
        to_log_ms=(t_log - t0) * 1e3,
        compile_ms=float(cm.group(1)) if cm else None,
        total_ms=float(tm.group(1)) if tm else None,
        cache_hit=bool(CACHE_HIT.search(line)),
    )


def route_name(prefix: str) -> str:
    """The host's name for a route prefix: `/` -> `index`, `/api/v1` -> `api-v1`."""
    return prefix.strip("/").replace("/", "-") or "index"


def guest_answer_ok(status: int, body: bytes) -> bool:
    """guest-example's own answer on a route: 200 hello on `/`, its 404 `not found` on a path it
    has no handler for (the guest sees the full path, e.g. `/r19/`); 200 hello on any path if a
    host strips the prefix."""
    return (status == 200 and body.startswith(b"hello")) or (status == 404 and body == GUEST_NOT_FOUND)


def route_response(client: Client, path: str) -> tuple[int, str | None, int, bytes]:
    """GET path: (status, x-hotswap-route, x-hotswap-generation or -1, body)."""
    status, resp, body = client.request("GET", path)
    gen = resp.getheader(GEN_HEADER)
    return status, resp.getheader(ROUTE_HEADER), int(gen) if gen is not None else -1, body


def wait_routes(server: Server, client: Client, routes: list[tuple[str, str]],
                timeout: float = 120.0) -> dict[str, int]:
    """Waits until every (path, name) is served by its route's guest; returns each route's
    generation."""
    deadline = time.perf_counter() + timeout
    gens = {}
    for path, name in routes:
        while True:
            try:
                status, route, gen, body = route_response(client, path)
            except OSError:
                status, route, gen, body = 0, None, -1, b""
            if route == name and gen >= 1 and guest_answer_ok(status, body):
                gens[name] = gen
                break
            if time.perf_counter() > deadline:
                raise HarnessError(f"{server.name}: GET {path} not served by route `{name}` within "
                                   f"{timeout:.0f}s (last: status {status}, {ROUTE_HEADER} {route}, "
                                   f"generation {gen}, body {body[:80]!r}); see {server.log_path}")
            time.sleep(0.01)
    return gens


def swap_route(server: Server, client: Client, deployer: "Deployer", data: bytes, path: str,
               name: str, expect: int, poll_s: float, timeout: float = 30.0) -> float:
    """Renames new bytes over one route's file and polls GET path until that route serves
    generation `expect` (x-hotswap-route and x-hotswap-generation); returns the latency in ms."""
    t0 = deployer.deploy(data)
    while True:
        status, route, gen, body = route_response(client, path)
        now = time.perf_counter()
        if route == name and gen >= expect and guest_answer_ok(status, body):
            break
        if now - t0 > timeout:
            raise HarnessError(f"{server.name}: route `{name}` not on generation {expect} {timeout:.0f}s "
                               f"after the rename (GET {path}: status {status}, {ROUTE_HEADER} {route}, "
                               f"generation {gen}); see {server.log_path}")
        time.sleep(poll_s)
    if gen != expect:
        raise HarnessError(f"{server.name}: route `{name}`: expected generation {expect}, got {gen}")
    return (now - t0) * 1e3


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Settings:
    smoke: bool
    duration: int
    warmup: int
    hello_conns: int
    echo_conns: int
    echo_bytes: int
    swaps: int
    swaps_cached: int
    swaps_under_load: int
    rss_early: int
    rss_late: int
    startup_runs: int
    rounds: int
    poll_ms: float
    debounce: str
    perf_seconds: int
    # Routes: the table size of the dispatch scenario (prefixed routes + `/`), its measured
    # run length, and the swaps over 4 routes with the swap after which RSS is first sampled.
    route_table: int = 20
    route_duration: int = 5
    route_swaps: int = 100
    route_rss_early: int = 10


class Bench:
    def __init__(self, args, settings: Settings):
        self.args = args
        self.s = settings
        self.work = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
        self.logs = self.work / "logs"
        self.guest = Path(args.guest).read_bytes()
        self.results: dict = {}
        # The load average still counts the build that just ran; what other work uses the CPUs
        # right now is what matters.
        busy = cpu_busy(1.0)
        self.loadavg = (f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
                        f"CPUs {busy:.0%} busy in the second before the first scenario")
        if busy > 0.1:
            log(f"warning: the CPUs were {busy:.0%} busy before the run: other work skews the figures")
        self.notes: list[str] = []
        self.peers: list[Peer] = [self.hotswap_peer()]
        if args.wasmtime:
            self.peers.append(self.wasmtime_peer())
        self.peers.append(Peer("native", lambda c: [args.native, "127.0.0.1:0"]))

    def hotswap_peer(self, name: str = "hotswap", args: tuple[str, ...] = ()) -> Peer:
        extra = [*args, *os.environ.get("HOTSWAP_BENCH_HOST_ARGS", "").split()]
        return Peer(name, lambda c: [self.args.hotswap, "serve", str(c), "--addr", "127.0.0.1:0",
                                     "--debounce", self.s.debounce, "--shutdown-timeout", "2s", *extra])

    def wasmtime_peer(self, args: tuple[str, ...] = ()) -> Peer:
        return Peer("wasmtime", lambda c: [self.args.wasmtime, "serve", "-Scli", *args,
                                           "--addr", "127.0.0.1:0", str(c)], signal.SIGINT)

    def measure(self, server: Server, url: str, what: str, conns: int | None = None,
                script: Path | None = None, duration: int | None = None) -> WrkResult:
        """A warm-up run of `url`, then the measured run, with the server's CPU time (utime +
        stime) per request of the measured run in `extra["cpu_us"]`."""
        conns = conns or self.s.hello_conns
        duration = duration or self.s.duration
        log(f"{what} warm-up {self.s.warmup}s, then {duration}s, c={conns}")
        run_wrk(url, self.s.warmup, conns, script)
        cpu_before = cpu_seconds(server.proc.pid)
        result = run_wrk(url, duration, conns, script)
        result.extra["cpu_us"] = ((cpu_seconds(server.proc.pid) - cpu_before)
                                  / max(result.requests, 1) * 1e6)
        log(f"{what} {result.rps:.0f} rps, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
            f"{result.extra['cpu_us']:.1f} us CPU/request, non-2xx {result.non_2xx}, "
            f"socket errors {result.socket_errors}")
        return result

    def component_copy(self, name: str, data: bytes | None = None) -> Path:
        """`data` (default: the guest) as `guest.wasm` in a directory of its own under the run's."""
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        p = d / "guest.wasm"
        p.write_bytes(self.guest if data is None else data)
        return p

    # -- 1 & 2: throughput and latency -----------------------------------------------------

    def load(self) -> None:
        """Rounds of hello and echo: in each round every peer, in turn, is started afresh, warmed
        up and measured. Interleaving puts each peer's runs at the same moments of a shared
        machine's slow and fast phases, so the per-round ratios hold still better than any one
        run; the report gives their median and range."""
        echo_lua = self.work / "echo.lua"
        echo_lua.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("x", {self.s.echo_bytes})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n')
        payload = bytes(range(256)) * (self.s.echo_bytes // 256)
        for rnd in range(1, self.s.rounds + 1):
            for peer in self.peers:
                component = self.component_copy(f"load-{peer.name}-{rnd}")
                with peer.start(component, self.logs, log_name=f"{peer.name}-load-{rnd}") as server:
                    addr = server.wait_ready()
                    client = Client(addr)
                    status, _, body = client.request("GET", "/")
                    if status != 200 or b"hello" not in body:
                        raise HarnessError(f"{peer.name}: GET / answered {status} {body[:80]!r}")
                    status, _, body = client.request("POST", "/echo", payload)
                    if status != 200 or body != payload:
                        raise HarnessError(f"{peer.name}: POST /echo answered {status}, "
                                           f"{len(body)} bytes instead of the {len(payload)} sent")
                    client.close()
                    for scenario, path, conns, script in (
                            ("hello", "/", self.s.hello_conns, None),
                            ("echo", "/echo", self.s.echo_conns, echo_lua)):
                        result = self.measure(server, f"http://{addr}{path}",
                                              f"{scenario}: round {rnd}/{self.s.rounds} {peer.name}",
                                              conns=conns, script=script)
                        self.results.setdefault(scenario, {}).setdefault(peer.name, []).append(result)

    # -- 3: swap latency ------------------------------------------------------------------

    def swap_latency(self) -> None:
        deployer = Deployer(self.work / "swap", self.guest)
        deployer.deploy(deployer.variant("start"))
        with self.hotswap_peer().start(deployer.live, self.logs, log_name="hotswap-swap") as server:
            client = Client(server.wait_ready())
            _, gen = client.generation()
            swaps: list[Swap] = []
            n = self.s.swaps
            log(f"swap: {n} swaps to new bytes, then {self.s.swaps_cached} back to bytes seen before")
            for i in range(n):
                gen += 1
                swaps.append(swap_once(server, client, deployer, deployer.variant(f"u{i}"), gen,
                                       self.s.poll_ms / 1e3))
            # Back and forth between two contents the host has compiled before: cache hits, once
            # the host has a compile cache.
            for i in range(self.s.swaps_cached):
                gen += 1
                swaps.append(swap_once(server, client, deployer, deployer.variant(f"u{i % 2}"), gen,
                                       self.s.poll_ms / 1e3))
            client.close()
        self.results["swap"] = swaps
        for s in swaps:
            log(f"swap: gen {s.generation}: {s.latency_ms:.1f} ms (log after {s.to_log_ms:.1f} ms, "
                f"compile {s.compile_ms} ms, total {s.total_ms} ms{', cache hit' if s.cache_hit else ''})")

    # -- 4: swaps under load --------------------------------------------------------------

    def swaps_under_load(self) -> None:
        status_lua = self.work / "status.lua"
        status_lua.write_text(STATUS_LUA)
        deployer = Deployer(self.work / "load-swap", self.guest)
        deployer.deploy(deployer.variant("start"))
        with self.hotswap_peer().start(deployer.live, self.logs, log_name="hotswap-swap-load") as server:
            addr = server.wait_ready()
            client = Client(addr)
            _, gen = client.generation()
            first = gen
            bound = 600 if not self.s.smoke else 120
            argv = wrk_argv(f"http://{addr}/", bound, self.s.hello_conns, status_lua)
            log(f"swap under load: wrk c={self.s.hello_conns} while {self.s.swaps_under_load} swaps run")
            wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            swaps: list[Swap] = []
            try:
                time.sleep(1.0)
                for i in range(self.s.swaps_under_load):
                    gen += 1
                    swaps.append(swap_once(server, client, deployer, deployer.variant(f"l{i}"), gen,
                                           max(self.s.poll_ms, 2.0) / 1e3))
                time.sleep(1.0)
            finally:
                out, err = stop_wrk(wrk)
            client.close()
        check_wrk(wrk, out, err)
        result = parse_wrk(out)
        if not result.extra:
            raise HarnessError(f"the status script printed nothing:\n{out}")
        self.results["swap_load"] = {"wrk": result, "swaps": swaps, "first_gen": first, "last_gen": gen}
        log(f"swap under load: {len(swaps)} swaps, {result.requests} requests, "
            f"non-200 {result.extra['bad']}, non-2xx {result.non_2xx}, socket errors {result.socket_errors}, "
            f"generations seen {result.extra['mingen']}..{result.extra['maxgen']}")

    # -- 5: memory over many swaps ---------------------------------------------------------

    def rss(self) -> None:
        # RSS moves by several MiB from one swap to the next (allocator, instance pool), so each
        # mark is the median of the samples taken after the last RSS_WINDOW swaps up to it.
        deployer = Deployer(self.work / "rss", self.guest)
        deployer.deploy(deployer.variant("start"))
        marks = (self.s.rss_early, self.s.rss_late)
        window = min(RSS_WINDOW, self.s.rss_early)
        with self.hotswap_peer().start(deployer.live, self.logs, log_name="hotswap-rss") as server:
            client = Client(server.wait_ready())
            _, gen = client.generation()
            samples: dict[int, int] = {0: server.rss_kib()}
            log(f"rss: {self.s.rss_late} swaps, RSS after {marks[0]} and {marks[1]} "
                f"(median of the last {window} swaps up to each)")
            for i in range(1, self.s.rss_late + 1):
                gen += 1
                swap_once(server, client, deployer, deployer.variant(f"r{i}"), gen, self.s.poll_ms / 1e3)
                if any(m - window < i <= m for m in marks):
                    # A few requests on the new generation first, so it is instantiated and warm.
                    for _ in range(20):
                        client.request()
                    time.sleep(0.2)
                    samples[i] = server.rss_kib()
                if i in marks:
                    log(f"rss: after {i} swaps {samples[i] / 1024:.1f} MiB")
            client.close()
        rss = {"start": samples[0], "window": window, "samples": samples}
        for m in marks:
            rss[m] = statistics.median(samples[i] for i in range(m - window + 1, m + 1))
        self.results["rss"] = rss

    # -- 6: startup ---------------------------------------------------------------------------

    def startup(self) -> None:
        out: dict[str, list[tuple[float, bool]]] = {}
        for peer in self.peers:
            kinds = ["cold", "warm"] if peer.name != "native" else ["start"]
            for run in range(self.s.startup_runs):
                # Cold: a fresh directory for the component and a fresh XDG_CACHE_HOME, so no
                # compile cache can help. Warm: the same again.
                home = self.work / f"startup-{peer.name}-{run}"
                comp_dir = home / "component"
                comp_dir.mkdir(parents=True)
                component = comp_dir / "guest.wasm"
                component.write_bytes(self.guest)
                env = {"XDG_CACHE_HOME": str(home / "cache")}
                for kind in kinds:
                    ms, hit = self._start_once(peer, component, env, f"{peer.name}-startup")
                    out.setdefault(f"{peer.name} {kind}", []).append((ms, hit))
                    log(f"startup: {peer.name} {kind}: {ms:.1f} ms{' (cache hit)' if hit else ''}")
        self.results["startup"] = out

    def _start_once(self, peer: Peer, component: Path, env: dict, log_name: str) -> tuple[float, bool]:
        server = peer.start(component, self.logs, env, log_name)
        try:
            addr = server.wait_ready()
            client = Client(addr, timeout=5)
            deadline = time.perf_counter() + 60
            while True:
                try:
                    status, _, _ = client.request()
                except OSError:
                    status = 0
                if status == 200:
                    break
                if time.perf_counter() > deadline:
                    raise HarnessError(f"{peer.name}: no 200 within 60 s of start (last {status})")
                time.sleep(0.001)
            ms = (time.perf_counter() - server.t_spawn) * 1e3
            client.close()
            with server.cond:
                hit = any(CACHE_HIT.search(text) for _, text in server.lines)
            return ms, hit
        finally:
            server.stop()

    # -- perf profile of the hello path --------------------------------------------------------

    def profile(self) -> None:
        perf = shutil.which("perf") or "/usr/bin/perf"
        component = self.component_copy("perf")
        data = self.work / "perf.data"
        secs = self.s.perf_seconds
        with self.hotswap_peer().start(component, self.logs, log_name="hotswap-perf") as server:
            addr = server.wait_ready()
            log(f"perf: profiling hotswap's hello path for {secs}s under wrk c={self.s.hello_conns}")
            wrk = subprocess.Popen(wrk_argv(f"http://{addr}/", secs + 3, self.s.hello_conns, None),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)
            rec = subprocess.run(["taskset", "-c", str(CLIENT_CPU), perf, "record", "-e", "cpu-clock",
                                  "-g", "-p", str(server.proc.pid), "-o", str(data), "--", "sleep", str(secs)],
                                 capture_output=True, text=True, timeout=secs + 60)
            wrk.communicate(timeout=secs + 60)
        if rec.returncode != 0:
            raise HarnessError(f"perf record failed: {rec.stderr}")
        rep = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "symbol",
                              "--stdio", "-g", "none", "--percent-limit", "0.5"],
                             capture_output=True, text=True, timeout=300)
        rows = [re.sub(r"(\s+-)+\s*$", "", line).rstrip()
                for line in rep.stdout.splitlines() if re.match(r"^\s+\d+\.\d+%", line)]
        dsos = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "dso",
                               "--stdio", "-g", "none", "--percent-limit", "2"],
                              capture_output=True, text=True, timeout=300)
        dso_rows = [re.sub(r"(\s+-)+\s*$", "", line).rstrip()
                    for line in dsos.stdout.splitlines() if re.match(r"^\s+\d+\.\d+%", line)]
        self.results["perf"] = rows[:25] + ["", "by binary / library:"] + dso_rows[:8]
        (self.work / "perf-report.txt").write_text(rep.stdout + "\n" + dsos.stdout)
        log(f"perf: full report in {self.work / 'perf-report.txt'}")

    # -- 7: key-value state per request -----------------------------------------------------

    def state(self) -> None:
        """Rounds of four hotswap runs at c=hello_conns: guest-example's hello, the stateful guest's
        /hello (the same guest, no store call), its /kv/getset (a get and a set per request) on
        the embedded SQLite store, and the same on Redis (redis-server on loopback, pinned to the
        load generator's CPU). The report gives getset / hello per round."""
        if not self.args.stateful:
            self.notes.append("key-value scenario left out (no stateful guest given)")
            return
        redis = None
        if self.args.redis:
            redis = RedisServer(self.args.redis, self.work / "redis", self.logs)
        else:
            self.notes.append("key-value scenario: Redis left out (redis-server not found)")
        stateful = Path(self.args.stateful).read_bytes()
        try:
            for rnd in range(1, self.s.rounds + 1):
                cases = [("hello", self.guest, [], "/"),
                         ("stateful /hello", stateful, ["--keyvalue", "memory"], "/hello")]
                kv_file = self.work / f"kv-{rnd}" / "kv.sqlite3"
                cases.append(("getset sqlite", stateful, ["--keyvalue", f"sqlite:{kv_file}"],
                              "/kv/getset?key=n"))
                if redis:
                    cases.append(("getset redis", stateful,
                                  ["--keyvalue", redis.url, "--keyvalue-namespace", f"bench{rnd}"],
                                  "/kv/getset?key=n"))
                for label, wasm, extra, path in cases:
                    d = self.work / f"state-{rnd}-{label.replace(' ', '-').replace('/', '')}"
                    d.mkdir(parents=True, exist_ok=True)
                    component = d / "guest.wasm"
                    component.write_bytes(wasm)
                    peer = Peer("hotswap", lambda c, extra=extra: [
                        self.args.hotswap, "serve", str(c), "--addr", "127.0.0.1:0",
                        "--shutdown-timeout", "2s", *extra])
                    with peer.start(component, self.logs, log_name=f"state-{rnd}-{d.name}") as server:
                        addr = server.wait_ready()
                        client = Client(addr)
                        status, _, body = client.request("GET", path)
                        client.close()
                        if status != 200:
                            raise HarnessError(f"{label}: GET {path} answered {status} {body[:120]!r}")
                        result = self.measure(server, f"http://{addr}{path}",
                                              f"state: round {rnd}/{self.s.rounds} {label}")
                        self.results.setdefault("state", {}).setdefault(label, []).append(result)
        finally:
            if redis:
                redis.stop()

    # -- 8: a fleet following a registry tag ------------------------------------------------

    def fleet(self) -> None:
        """Three hotswap replicas follow one tag of a docker-registry on loopback (poll interval
        FLEET_POLL), each under its own wrk load (c=8). Each push of a new variant of guest-example
        (oras, support/oci_push.py) is timed from the push's return to the moment every replica
        answers with its next generation; the time is compared with the poll interval plus the
        slowest replica's compile. Then a quiet window counts the registry's manifest HEADs: the
        polling cost."""
        if not (self.args.registry and self.args.oci_push):
            self.notes.append("fleet scenario left out (docker-registry or oras not available)")
            return
        pushes = 3 if self.s.smoke else 10
        quiet = 3.0 if self.s.smoke else 20.0
        reg_dir = self.work / "registry"
        reg_dir.mkdir(parents=True, exist_ok=True)
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        (reg_dir / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {reg_dir / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
        self.logs.mkdir(parents=True, exist_ok=True)
        reg_log = open(self.logs / "registry.log", "w", encoding="utf-8")
        registry = subprocess.Popen(["taskset", "-c", str(CLIENT_CPU), self.args.registry, "serve",
                                     str(reg_dir / "config.yml")],
                                    stdin=subprocess.DEVNULL, stdout=reg_log, stderr=subprocess.STDOUT)
        repo = f"127.0.0.1:{port}/bench/hello:live"
        status_lua = self.work / "status.lua"
        status_lua.write_text(STATUS_LUA)

        def push(tag: str) -> float:
            blob = self.work / "push" / "guest.wasm"
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(with_custom_section(self.guest, f"{RUN_NONCE}-fleet-{tag}"))
            out = subprocess.run(["taskset", "-c", str(CLIENT_CPU), sys.executable, self.args.oci_push,
                                  repo, str(blob)], capture_output=True, text=True)
            if out.returncode != 0:
                raise HarnessError(f"oras push failed: {out.stderr}")
            return time.perf_counter()

        servers: list[Server] = []
        wrks: list[subprocess.Popen] = []
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise HarnessError("docker-registry did not start")
                    time.sleep(0.05)
            push("v0")
            for i in range(3):
                d = self.work / f"fleet-{i}"
                d.mkdir(parents=True, exist_ok=True)
                peer = Peer("hotswap", lambda c: [self.args.hotswap, "serve", f"oci://{repo}",
                                                  "--addr", "127.0.0.1:0", "--poll-interval", FLEET_POLL,
                                                  "--shutdown-timeout", "2s"])
                servers.append(peer.start(d / "unused.wasm", self.logs, log_name=f"fleet-{i}"))
            addrs = [srv.wait_ready() for srv in servers]
            clients = [Client(a) for a in addrs]
            bound = 600 if not self.s.smoke else 120
            for a in addrs:
                wrks.append(subprocess.Popen(wrk_argv(f"http://{a}/", bound, 8, status_lua),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            time.sleep(1.0)
            rollouts = []
            for n in range(1, pushes + 1):
                starts = [len(srv.lines) for srv in servers]
                t0 = push(f"v{n}")
                seen = [None] * 3
                while None in seen:
                    for i, c in enumerate(clients):
                        if seen[i] is None:
                            status, gen = c.generation()
                            if status == 200 and gen >= n + 1:
                                seen[i] = time.perf_counter() - t0
                    if time.perf_counter() - t0 > 60:
                        raise HarnessError(f"push {n}: replicas did not converge in 60 s")
                    time.sleep(0.002)
                compiles = []
                for i, srv in enumerate(servers):
                    idx, _, _ = srv.wait_line(LOADED.format(n=n + 1), 10.0, starts[i])
                    m = re.search(r"compile_ms\"?[=:](\d+)", srv.lines[idx][1])
                    compiles.append(float(m.group(1)) if m else 0.0)
                rollouts.append({"last_ms": max(seen) * 1e3, "first_ms": min(seen) * 1e3,
                                 "compile_ms": max(compiles)})
                log(f"fleet: push {n}: every replica on it after {max(seen) * 1e3:.0f} ms "
                    f"(first {min(seen) * 1e3:.0f} ms, slowest compile {max(compiles):.0f} ms)")
                time.sleep(0.3)
            for c in clients:
                c.close()
            # The polling cost: manifest HEADs the registry logs in a quiet window.
            reg_log.flush()
            heads = lambda: sum(1 for line in (self.logs / "registry.log").read_text().splitlines()
                                if '"HEAD /v2/' in line and "/manifests/" in line)
            before = heads()
            time.sleep(quiet)
            reg_log.flush()
            counted = heads() - before
        finally:
            results = []
            for w in wrks:
                if w.poll() is None:
                    w.send_signal(signal.SIGINT)
                out, _ = w.communicate(timeout=30)
                results.append(parse_wrk(out))
            for srv in servers:
                srv.stop()
            registry.terminate()
            registry.wait(10)
            reg_log.close()
        poll_s = float(FLEET_POLL.rstrip("ms")) / (1000 if FLEET_POLL.endswith("ms") else 1)
        self.results["fleet"] = {"rollouts": rollouts, "wrk": results, "heads": counted,
                                 "quiet_s": quiet, "poll_s": poll_s}

    # -- 9 & 10: routes ---------------------------------------------------------------------

    def need_routes(self) -> None:
        """The route scenarios need a host with `serve --route PREFIX=SOURCE`."""
        if getattr(self, "_has_routes", None) is None:
            out = subprocess.run([self.args.hotswap, "serve", "--help"], capture_output=True,
                                 text=True, timeout=30)
            self._has_routes = bool(re.search(r"--route\b", out.stdout + out.stderr))
        if not self._has_routes:
            raise HarnessError(f"{self.args.hotswap} has no `serve --route`: the route scenarios "
                               "cannot run against this build")

    def route_peer(self, name: str, routes: list[tuple[str, Path]]) -> Peer:
        """hotswap serving a route table: `--route PREFIX=FILE` per entry, in the order given."""
        extra = os.environ.get("HOTSWAP_BENCH_HOST_ARGS", "").split()
        argv = [self.args.hotswap, "serve"]
        for prefix, path in routes:
            argv += ["--route", f"{prefix}={path}"]
        argv += ["--addr", "127.0.0.1:0", "--debounce", self.s.debounce, "--shutdown-timeout", "2s", *extra]
        return Peer(name, lambda _component: argv)

    def routes(self) -> None:
        """The route table's dispatch cost. Rounds like hello/echo: in each, hotswap serving
        guest-example as one component (`serve FILE`) and then hotswap with a table of
        `route_table` routes on that file (`/r01` … `/r19`, then `/`), each started afresh,
        warmed up and measured (wrk -t1 -c32). The table is measured on `GET /r19/` (the last
        prefixed route given) and on `GET /` (the `/` fallback); the single component on `GET /`
        (hello) and on `GET /r19/` (no table: guest-example's own 404, the same answer the
        table's `/r19` route gives, since the guest sees the full path)."""
        self.need_routes()
        n = self.s.route_table
        deep = f"/r{n - 1:02d}/"
        dur = self.s.route_duration
        conns = self.s.hello_conns
        rss: dict[str, list[int]] = {}
        answers: dict[str, str] = {}
        for rnd in range(1, self.s.rounds + 1):
            for kind in ("single", "table"):
                d = self.work / f"routes-{kind}-{rnd}"
                d.mkdir(parents=True, exist_ok=True)
                component = d / "guest.wasm"
                component.write_bytes(self.guest)
                if kind == "single":
                    peer = self.hotswap_peer("hotswap")
                    label = "1 route"
                    runs = [(f"{label}, GET / (hello)", "/"), (f"{label}, GET {deep}", deep)]
                    expect_routes = [("/", "index")]
                else:
                    table = [(f"/r{i:02d}", component) for i in range(1, n)] + [("/", component)]
                    peer = self.route_peer("hotswap-routes", table)
                    label = f"{n} routes"
                    runs = [(f"{label}, GET {deep}", deep), (f"{label}, GET / (hello)", "/")]
                    expect_routes = [(p + "/" if p != "/" else "/", route_name(p)) for p, _ in table]
                with peer.start(component, self.logs, log_name=f"routes-{kind}-{rnd}") as server:
                    addr = server.wait_ready()
                    client = Client(addr)
                    if kind == "table":
                        wait_routes(server, client, expect_routes)
                    for run_label, path in runs:
                        status, route, gen, body = route_response(client, path)
                        if not guest_answer_ok(status, body):
                            raise HarnessError(f"{run_label}: GET {path} answered {status} {body[:80]!r}")
                        want = route_name(deep.rstrip("/")) if (kind == "table" and path == deep) else "index"
                        if route is not None and route != want:
                            raise HarnessError(f"{run_label}: GET {path} served by route `{route}`, not `{want}`")
                        answers[run_label] = f"{status} {body.decode(errors='replace').strip()[:40]!r}" + (
                            f", route `{route}`" if route else "")
                    client.close()
                    for run_label, path in runs:
                        result = self.measure(server, f"http://{addr}{path}",
                                              f"routes: round {rnd}/{self.s.rounds} {run_label}:",
                                              conns=conns, duration=dur)
                        self.results.setdefault("routes", {}).setdefault(run_label, []).append(result)
                    rss.setdefault(label, []).append(server.rss_kib())
        self.results["routes_meta"] = {"n": n, "deep": deep, "rss": rss, "answers": answers,
                                       "duration": dur}

    def route_swaps(self) -> None:
        """`route_swaps` swaps, round-robin over 4 routes (`/a`, `/b`, `/c`, `/`; each route's
        file in its own directory), while wrk c=32 rotates GET over the four paths with a Lua
        script that checks every answer came from the right route's guest. Each swap renames new
        bytes (guest-example plus a custom section) over that route's file and waits until GET on
        that route's path carries x-hotswap-route and the route's next x-hotswap-generation. VmRSS
        is sampled after each of the last RSS_WINDOW swaps up to `route_rss_early` and up to the
        last swap (0.2 s after each)."""
        self.need_routes()
        routes = [("/a", "a"), ("/b", "b"), ("/c", "c"), ("/", "index")]
        base = self.work / "route-swaps"
        deployers = {name: Deployer(base / name, self.guest) for _, name in routes}
        for name, dep in deployers.items():
            dep.deploy(dep.variant(f"{name}-start"))
        host_dir = base / "host"
        host_dir.mkdir(parents=True, exist_ok=True)
        peer = self.route_peer("hotswap-routes", [(prefix, deployers[name].live) for prefix, name in routes])
        lua = self.work / "routes.lua"
        lua.write_text(ROUTES_LUA)
        total, early = self.s.route_swaps, self.s.route_rss_early
        window = min(RSS_WINDOW, early, total - early)
        marks = (early, total)
        samples: dict[int, int] = {}
        latencies: list[float] = []
        with peer.start(host_dir / "routes.wasm", self.logs, log_name="hotswap-route-swaps") as server:
            addr = server.wait_ready()
            client = Client(addr)
            gens = wait_routes(server, client, [(p, name) for p, name in routes])
            first = dict(gens)
            bound = 600 if not self.s.smoke else 120
            argv = wrk_argv(f"http://{addr}/", bound, self.s.hello_conns, lua)
            log(f"route swaps: wrk c={self.s.hello_conns} over /a /b /c / while {total} swaps run "
                f"round-robin over the 4 routes")
            wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(1.0)
                samples[0] = server.rss_kib()
                for i in range(1, total + 1):
                    path, name = routes[(i - 1) % len(routes)]
                    gens[name] += 1
                    latencies.append(swap_route(server, client, deployers[name],
                                                deployers[name].variant(f"{name}-{i}"), path, name,
                                                gens[name], max(self.s.poll_ms, 2.0) / 1e3))
                    if any(m - window < i <= m for m in marks):
                        time.sleep(0.2)
                        samples[i] = server.rss_kib()
                    if i in marks:
                        log(f"route swaps: after {i} swaps RSS {samples[i] / 1024:.1f} MiB")
                time.sleep(1.0)
            finally:
                out, err = stop_wrk(wrk)
                client.close()
        check_wrk(wrk, out, err)
        result = parse_wrk(out)
        m = re.search(r"^ROUTES (.*)$", out, re.MULTILINE)
        if not m:
            raise HarnessError(f"the route script printed nothing:\n{out}")
        counts = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        rss = {"window": window, "samples": samples}
        for mk in marks:
            rss[mk] = statistics.median(samples[i] for i in range(mk - window + 1, mk + 1))
        self.results["route_swaps"] = {"wrk": result, "counts": counts, "latencies": latencies,
                                       "first": first, "last": gens, "rss": rss, "marks": marks}
        log(f"route swaps: {len(latencies)} swaps, {result.requests} requests, unexpected "
            f"{counts['bad']}, socket errors {result.socket_errors}, per route "
            f"a={counts['a']} b={counts['b']} c={counts['c']} index={counts['index']}, RSS "
            f"{rss[early] / 1024:.1f} -> {rss[total] / 1024:.1f} MiB")

    # -- 11: heavy guests per request ----------------------------------------------------

    def heavy(self) -> None:
        """GET / on the compatibility suite's componentize-js and componentize-py guests (12-19 MB
        components whose every request instantiates a large memory image), hotswap against
        `wasmtime serve`, in interleaved rounds like hello. hotswap runs `--tier optimized`, so both
        serve Cranelift code: under `auto` a run would start on the Winch build while Cranelift
        compiled beside it. Each server keeps one compile cache across the rounds (hotswap's, and
        wasmtime's with `-C cache=y`), so only a guest's first round compiles it."""
        if not self.args.heavy:
            self.notes.append("heavy guests left out (no --heavy directory of compatibility guests)")
            return
        heavy_dir = Path(self.args.heavy)
        peers = [self.hotswap_peer(args=("--tier", "optimized"))]
        if self.args.wasmtime:
            peers.append(self.wasmtime_peer(args=("-Ccache=y",)))
        for guest in HEAVY_GUESTS:
            wasm = heavy_dir / f"{guest}.wasm"
            if not wasm.is_file():
                skip = heavy_dir / f"{guest}.skip"
                why = skip.read_text().strip() if skip.is_file() else f"{wasm} was not built"
                self.notes.append(f"heavy guest {guest} left out: {why}")
                continue
            data = wasm.read_bytes()
            for rnd in range(1, self.s.rounds + 1):
                for peer in peers:
                    component = self.component_copy(f"heavy-{guest}-{peer.name}-{rnd}", data)
                    env = {"XDG_CACHE_HOME": str(self.work / f"heavy-{guest}-{peer.name}-cache")}
                    with peer.start(component, self.logs, env=env,
                                    log_name=f"{peer.name}-heavy-{guest}-{rnd}") as server:
                        # A first round compiles the guest on one pinned core (25 s and more).
                        addr = server.wait_ready(timeout=600)
                        client = Client(addr, timeout=60)
                        status, _, body = client.request("GET", "/")
                        client.close()
                        if status != 200 or b"hello" not in body:
                            raise HarnessError(f"{peer.name}: GET / of the {guest} guest answered "
                                               f"{status} {body[:80]!r}")
                        result = self.measure(server, f"http://{addr}/",
                                              f"heavy {guest}: round {rnd}/{self.s.rounds} {peer.name}")
                        self.results.setdefault("heavy", {}).setdefault(guest, {}) \
                            .setdefault(peer.name, []).append(result)

    # -- run all --------------------------------------------------------------------------------

    def run(self) -> None:
        steps = [("load", self.load), ("swap", self.swap_latency), ("swap_load", self.swaps_under_load),
                 ("rss", self.rss), ("startup", self.startup), ("state", self.state),
                 ("fleet", self.fleet), ("routes", self.routes), ("route_swaps", self.route_swaps),
                 ("heavy", self.heavy)]
        only = set(self.args.only.split(",")) if self.args.only else None
        if self.args.perf or (only and "perf" in only):
            steps.append(("perf", self.profile))
        unknown = (only or set()) - {name for name, _ in steps} - {"perf"}
        if unknown:
            raise HarnessError(f"unknown step(s) in --only: {', '.join(sorted(unknown))}")
        for name, step in steps:
            if only is None or name in only:
                step()


class RedisServer:
    """A redis-server on a free loopback port, pinned to the load generator's CPU, keeping
    nothing on disk."""

    def __init__(self, binary: str, work: Path, log_dir: Path):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        work.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(log_dir / "redis.log", "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(CLIENT_CPU), binary, "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(work)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HarnessError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


STATUS_LUA = r"""
-- Counts responses by status and the range of x-hotswap-generation seen.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0; mingen = -1; maxgen = -1 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
  local g = tonumber(headers["x-hotswap-generation"] or headers["X-Hotswap-Generation"] or "")
  if g then
    if mingen < 0 or g < mingen then mingen = g end
    if g > maxgen then maxgen = g end
  end
end
function done(summary, latency, requests)
  local ok, bad, mingen, maxgen = 0, 0, -1, -1
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok"); bad = bad + t:get("bad")
    local lo, hi = t:get("mingen"), t:get("maxgen")
    if lo >= 0 and (mingen < 0 or lo < mingen) then mingen = lo end
    if hi > maxgen then maxgen = hi end
  end
  io.write(string.format("STATUS ok=%d bad=%d mingen=%d maxgen=%d\n", ok, bad, mingen, maxgen))
end
"""


ROUTES_LUA = r"""
-- Rotates GET over /a, /b, /c and / (one connection's requests take turns), and checks that
-- every answer came from a route's guest: x-hotswap-route and x-hotswap-generation present, and
-- either 200 hello or guest-example's own 404 `not found` from route a, b or c (the guest sees
-- the full path and has no /a handler). Anything else is unexpected (`bad`; `bad5xx` of them
-- 5xx). `nf` counts the guest's 404s, so wrk's non-2xx minus nf is the non-2xx beyond them.
local threads = {}
function setup(thread) table.insert(threads, thread) end
local paths = {"/a", "/b", "/c", "/"}
local reqs = {}
local i = 0
function init(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  ok = 0; bad = 0; bad5xx = 0; nf = 0
  n_a = 0; n_b = 0; n_c = 0; n_index = 0; n_other = 0
  g_a = -1; g_b = -1; g_c = -1; g_index = -1
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function response(status, headers, body)
  local route = headers["x-hotswap-route"] or headers["X-Hotswap-Route"]
  local g = tonumber(headers["x-hotswap-generation"] or headers["X-Hotswap-Generation"] or "")
  local good = false
  if route ~= nil and g ~= nil then
    if status == 200 and body ~= nil and string.sub(body, 1, 5) == "hello" then
      good = true
    elseif status == 404 and route ~= "index" and body == "not found\n" then
      good = true; nf = nf + 1
    end
  end
  if not good then
    bad = bad + 1
    if status >= 500 then bad5xx = bad5xx + 1 end
    return
  end
  ok = ok + 1
  if route == "a" then n_a = n_a + 1; if g > g_a then g_a = g end
  elseif route == "b" then n_b = n_b + 1; if g > g_b then g_b = g end
  elseif route == "c" then n_c = n_c + 1; if g > g_c then g_c = g end
  elseif route == "index" then n_index = n_index + 1; if g > g_index then g_index = g end
  else n_other = n_other + 1 end
end
function done(summary, latency, requests)
  local sums = {ok = 0, bad = 0, bad5xx = 0, nf = 0, n_a = 0, n_b = 0, n_c = 0, n_index = 0, n_other = 0}
  local gens = {g_a = -1, g_b = -1, g_c = -1, g_index = -1}
  for _, t in ipairs(threads) do
    for k, _ in pairs(sums) do sums[k] = sums[k] + t:get(k) end
    for k, v in pairs(gens) do local x = t:get(k); if x > v then gens[k] = x end end
  end
  io.write(string.format(
    "ROUTES ok=%d bad=%d bad5xx=%d nf=%d a=%d b=%d c=%d index=%d other=%d gen_a=%d gen_b=%d gen_c=%d gen_index=%d\n",
    sums.ok, sums.bad, sums.bad5xx, sums.nf, sums.n_a, sums.n_b, sums.n_c, sums.n_index, sums.n_other,
    gens.g_a, gens.g_b, gens.g_c, gens.g_index))
end
"""


# --------------------------------------------------------------------------------------------
# Report


def cmd_out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def machine() -> dict[str, str]:
    model = "n/a"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
        mem = f"{mem_kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        mem = "n/a"
    return {"nproc": str(os.cpu_count()), "cpu": model, "memory": mem, "kernel": platform.release()}


def fmt(x, spec=".1f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def ratio(a, b, spec=".2f"):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:{spec}}×"


def med(xs):
    return statistics.median(xs) if xs else None


def per_round(a, b, attr) -> str:
    """Median and range of a/b over the rounds (the runs of one round ran back to back)."""
    if not a or not b:
        return "n/a"
    get = (lambda w: w.extra["cpu_us"]) if attr == "cpu_us" else (lambda w: getattr(w, attr))
    xs = sorted(get(x) / get(y) for x, y in zip(a, b))
    spread = f" (rounds {xs[0]:.2f}–{xs[-1]:.2f}×)" if len(xs) > 1 else ""
    return f"{med(xs):.2f}×{spread}"


def render(bench: Bench, settings: Settings, args, started: datetime.datetime, elapsed: float) -> str:
    r = bench.results
    m = machine()
    wasmtime_v = cmd_out([args.wasmtime, "--version"]) if args.wasmtime else "not run"
    lines = [
        f"# hotswap benchmark {'(smoke: harness check, figures not meaningful)' if settings.smoke else ''}".rstrip(),
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} (took {elapsed:.0f} s)",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}; "
        f"load average at start {bench.loadavg}",
        f"- commit: {cmd_out(['git', '-C', str(BENCH_DIR.parent), 'rev-parse', '--short', 'HEAD'])}"
        f"{' + uncommitted changes' if cmd_out(['git', '-C', str(BENCH_DIR.parent), 'status', '--porcelain']) else ''}",
        f"- rustc: {cmd_out(['rustc', '--version'])}; wrk: {cmd_out(['wrk', '-v']).splitlines()[0] if shutil.which('wrk') else 'n/a'}"
        f"; wasmtime: {wasmtime_v}",
        f"- settings: servers pinned to CPU {SERVER_CPU}, wrk/clients pinned to CPU {CLIENT_CPU} (taskset); "
        f"RUST_BACKTRACE=0 for every server; wrk -t1 keep-alive; hello and echo in {settings.rounds} "
        f"interleaved round(s), each server started afresh in each, {settings.warmup}s warm-up + "
        f"{settings.duration}s per run; hello c={settings.hello_conns}, echo c={settings.echo_conns} "
        f"with a {settings.echo_bytes // 1024} KiB body; hotswap --debounce {settings.debounce}; "
        f"swap polling every {settings.poll_ms:g} ms (keep-alive GET /); wasmtime as `wasmtime serve -Scli`; "
        f"each hotswap process gets its own empty compile cache (XDG_CACHE_HOME) and runs in the "
        f"component's directory; extra host args: `{os.environ.get('HOTSWAP_BENCH_HOST_ARGS', '') or 'none'}`",
        f"- command: `{args.command}`",
        "",
    ]

    def runs_table(first: str, res: dict) -> list[str]:
        """A row per server (or run) of wrk results: medians over the rounds, then each round."""
        rows = [f"| {first} | req/s (median) | p50 ms | p99 ms | CPU µs/request | req/s per round "
                "| p99 ms per round | requests | non-2xx | socket errors |",
                "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
        for name, runs in res.items():
            rows.append(
                f"| {name} | {med([w.rps for w in runs]):,.0f} | {med([w.p50_ms for w in runs]):.2f} | "
                f"{med([w.p99_ms for w in runs]):.2f} | {med([w.extra['cpu_us'] for w in runs]):.1f} | "
                f"{' / '.join(f'{w.rps:,.0f}' for w in runs)} | "
                f"{' / '.join(f'{w.p99_ms:.2f}' for w in runs)} | {sum(w.requests for w in runs):,} | "
                f"{sum(w.non_2xx for w in runs)} | {sum(w.socket_errors for w in runs)} |")
        return rows

    def wrk_table(title: str, key: str):
        res = r.get(key)
        if not res:
            return
        lines.extend([f"## {title}", "", *runs_table("server", res)])
        hs, wt, nt = res.get("hotswap"), res.get("wasmtime"), res.get("native")
        lines.extend([
            "",
            f"- req/s hotswap / wasmtime serve: {per_round(hs, wt, 'rps')}; "
            f"hotswap / native: {per_round(hs, nt, 'rps')}",
            f"- p99 hotswap / wasmtime serve: {per_round(hs, wt, 'p99_ms')}; "
            f"hotswap / native: {per_round(hs, nt, 'p99_ms')}",
            f"- CPU time per request, wasmtime serve / hotswap: {per_round(wt, hs, 'cpu_us')}; "
            f"native / hotswap: {per_round(nt, hs, 'cpu_us')} (the throughput ratio an uncontended "
            "core would give a CPU-bound server; CPU time excludes time the VM was not running)",
            ""])

    wrk_table(f"1. hello (GET /), c={settings.hello_conns}", "hello")
    wrk_table(f"2. echo (POST /echo, {settings.echo_bytes // 1024} KiB body), c={settings.echo_conns}", "echo")

    swaps = r.get("swap")
    if swaps is not None:
        miss = [s for s in swaps if not s.cache_hit]
        hit = [s for s in swaps if s.cache_hit]
        lines.extend([f"## 3. swap latency (rename → first response from the new generation)", "",
                      "| swaps | n | latency median ms | latency max ms | compile median ms | compile max ms "
                      "| latency − compile median ms | latency − compile max ms | rename → log line median ms |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"])
        for label, group in (("compiled (cache miss)", miss), ("cache hit", hit)):
            if not group:
                lines.append(f"| {label} | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            lat = [s.latency_ms for s in group]
            comp = [s.compile_ms for s in group if s.compile_ms is not None]
            over = [s.latency_ms - s.compile_ms for s in group if s.compile_ms is not None]
            lines.append(f"| {label} | {len(group)} | {med(lat):.1f} | {max(lat):.1f} | {fmt(med(comp))} | "
                         f"{fmt(max(comp) if comp else None)} | {fmt(med(over))} | {fmt(max(over) if over else None)} | "
                         f"{med([s.to_log_ms for s in group]):.1f} |")
        lines.extend(["", f"- {settings.swaps} swaps to new bytes, then {settings.swaps_cached} alternating "
                      "between two contents loaded before; a swap counts as a cache hit when its "
                      "`loaded generation` log line says so" +
                      ("" if hit else " (the host reported no cache hit: n/a)"), ""])

    sl = r.get("swap_load")
    if sl:
        w: WrkResult = sl["wrk"]
        lat = [s.latency_ms for s in sl["swaps"]]
        lines.extend([f"## 4. {settings.swaps_under_load} swaps under load (wrk c={settings.hello_conns} on GET /)", "",
                      "| swaps done | requests | non-200 (lua count) | non-2xx (wrk) | socket errors | req/s | p99 ms "
                      "| generations seen | swap latency median / max ms |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
                      f"| {len(sl['swaps'])}/{settings.swaps_under_load} | {w.requests:,} | {w.extra['bad']} | "
                      f"{w.non_2xx} | {w.socket_errors} | {w.rps:,.0f} | {w.p99_ms:.2f} | "
                      f"{w.extra['mingen']}–{w.extra['maxgen']} | {fmt(med(lat))} / {fmt(max(lat) if lat else None)} |",
                      ""])

    rss = r.get("rss")
    if rss:
        early, late, w = rss.get(settings.rss_early), rss.get(settings.rss_late), rss["window"]
        smp = rss["samples"]

        def span(m):
            xs = [smp[i] / 1024 for i in range(m - w + 1, m + 1)]
            return f"{min(xs):.1f}–{max(xs):.1f}"

        lines.extend(["## 5. resident memory (VmRSS) of hotswap over swaps", "",
                      f"| at start | after {settings.rss_early} swaps | after {settings.rss_late} swaps | ratio |",
                      "| ---: | ---: | ---: | ---: |",
                      f"| {rss['start'] / 1024:.1f} MiB | {early / 1024:.1f} MiB | {late / 1024:.1f} MiB | "
                      f"{ratio(late, early, '.3f')} |", "",
                      f"- each figure is the median of {w} samples, one after each of the last {w} swaps up to "
                      f"that count (20 requests and 0.2 s after the swap); the samples spanned "
                      f"{span(settings.rss_early)} MiB and {span(settings.rss_late)} MiB", ""])

    st = r.get("startup")
    if st:
        lines.extend(["## 6. startup: process spawn → first 200", "",
                      "| server | runs | median ms | min ms | max ms | cache hit logged |",
                      "| --- | ---: | ---: | ---: | ---: | --- |"])
        for key, runs in st.items():
            ms = [x for x, _ in runs]
            lines.append(f"| {key} | {len(ms)} | {med(ms):.1f} | {min(ms):.1f} | {max(ms):.1f} | "
                         f"{('yes' if any(h for _, h in runs) else 'no') if key.startswith('hotswap') else 'n/a'} |")
        lines.extend(["", "- cold: fresh component directory (the working directory) and fresh XDG_CACHE_HOME (no compile "
                      "cache can help; the OS page cache is warm); warm: a second start with the same "
                      "directories. The time includes compiling the component and `taskset`'s exec.", ""])

    state = r.get("state")
    if state:
        lines.extend([f"## 7. key-value state per request (hotswap only), c={settings.hello_conns}", "",
                      *runs_table("run", state)])
        hello = state.get("hello")
        lines.append("")
        for name in ("getset sqlite", "getset redis"):
            runs = state.get(name)
            if hello and runs:
                xs = sorted(a.rps / b.rps for a, b in zip(runs, hello))
                spread = f" (rounds {xs[0]:.2f}–{xs[-1]:.2f}×)" if len(xs) > 1 else ""
                lines.append(f"- {name} / hello req/s: {med(xs):.2f}×{spread}")
        lines.extend(["- hello is guest-example's `GET /`; `stateful /hello` is the stateful guest "
                      "answering without a store call; getset is `GET /kv/getset?key=n`: a `get` and a "
                      "`set` of one key per request (SQLite: WAL, synchronous=NORMAL, a fresh file per "
                      "round; Redis: one redis-server on loopback pinned to the load generator's CPU)", ""])

    fl = r.get("fleet")
    if fl:
        ro = fl["rollouts"]
        lasts = [x["last_ms"] for x in ro]
        bounds = [fl["poll_s"] * 1e3 + x["compile_ms"] + 100 for x in ro]
        within = sum(1 for a, b in zip(lasts, bounds) if a <= b)
        reqs = sum(w.requests for w in fl["wrk"])
        bad = sum(w.extra.get("bad", 0) for w in fl["wrk"])
        lines.extend([f"## 8. a fleet of 3 replicas following a registry tag (poll {FLEET_POLL}), "
                      "wrk c=8 on each", "",
                      "| pushes | every replica on it, median ms | max ms | first replica, median ms "
                      "| slowest compile, median ms | bound (poll + compile + 100 ms), median ms "
                      "| pushes within bound | requests | non-200 | socket errors |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                      f"| {len(ro)} | {med(lasts):.0f} | {max(lasts):.0f} | "
                      f"{med([x['first_ms'] for x in ro]):.0f} | {med([x['compile_ms'] for x in ro]):.0f} | "
                      f"{med(bounds):.0f} | {within}/{len(ro)} | {reqs:,} | {bad} | "
                      f"{sum(w.socket_errors for w in fl['wrk'])} |", "",
                      f"- polling cost: {fl['heads']} manifest HEADs in a {fl['quiet_s']:.0f} s quiet window "
                      f"from 3 replicas (expected {3 * fl['quiet_s'] / fl['poll_s']:.0f} at one per poll "
                      "per replica); nothing else reaches the registry between pushes",
                      "- a push is timed from the return of the oras push (manifest written) to the "
                      "first response with the new generation from the last replica; each replica "
                      "polls on its own schedule, so the wait for a poll is up to one interval", ""])

    rt = r.get("routes")
    if rt:
        meta = r["routes_meta"]
        n, deep = meta["n"], meta["deep"]
        one_root, one_deep = rt.get("1 route, GET / (hello)"), rt.get(f"1 route, GET {deep}")
        tab_deep, tab_root = rt.get(f"{n} routes, GET {deep}"), rt.get(f"{n} routes, GET / (hello)")

        def rr(a, b, attr, target=None):
            """Median and range of a/b over the rounds; with a target, whether the median meets it."""
            if not a or not b:
                return "n/a"
            get = (lambda w: w.extra["cpu_us"]) if attr == "cpu_us" else (lambda w: getattr(w, attr))
            xs = sorted(get(x) / get(y) for x, y in zip(a, b))
            spread = f" (rounds {xs[0]:.2f}–{xs[-1]:.2f}×)" if len(xs) > 1 else ""
            verdict = "" if target is None else (
                f" — target ≥ {target:.2f}: {'met' if med(xs) >= target else 'NOT met'}")
            return f"**{med(xs):.3f}×**{spread}{verdict}"

        rss_txt = "; ".join(f"{k} {med(v) / 1024:.1f} MiB" for k, v in meta["rss"].items())
        lines.extend([f"## 9. route table dispatch: 1 route vs {n} routes ({n - 1} prefixed + `/`), "
                      f"c={settings.hello_conns}", "", *runs_table("server, request", rt), "",
                      f"- req/s, {n} routes `GET {deep}` / 1 route `GET /` (hello): "
                      f"{rr(tab_deep, one_root, 'rps', 0.97)}",
                      f"- req/s, {n} routes `GET {deep}` / 1 route `GET {deep}` (the same guest answer, "
                      f"so only the dispatch differs): {rr(tab_deep, one_deep, 'rps', 0.97)}",
                      f"- req/s, {n} routes `GET /` (the `/` route) / 1 route `GET /`: "
                      f"{rr(tab_root, one_root, 'rps', 0.97)}",
                      f"- CPU time per request, 1 route / {n} routes (comparable to the req/s ratios): "
                      f"`{deep}` vs hello {rr(one_root, tab_deep, 'cpu_us')}; `{deep}` vs `{deep}` "
                      f"{rr(one_deep, tab_deep, 'cpu_us')}; `/` vs `/` {rr(one_root, tab_root, 'cpu_us')}",
                      f"- p99, {n} routes / 1 route: `{deep}` vs hello {rr(tab_deep, one_root, 'p99_ms')}; "
                      f"`{deep}` vs `{deep}` {rr(tab_deep, one_deep, 'p99_ms')}",
                      f"- the table: `--route /r01=FILE` … `--route /r{n - 1:02d}=FILE --route /=FILE`, one "
                      f"file for all {n}; `{deep}` is the last prefixed route on the command line. "
                      "guest-example sees the full path and has no handler for it, so every route "
                      "but `/` answers its own 404 `not found` (wrk counts them as non-2xx): the "
                      f"1-route `GET {deep}` run gives the same answer without a table. Answers checked "
                      "before the runs: " + "; ".join(f"{k}: {v}" for k, v in meta["answers"].items()),
                      f"- in each of {settings.rounds} round(s): each server started afresh, the 1-route one "
                      f"first; per request path {settings.warmup}s warm-up + {meta['duration']}s measured "
                      f"(wrk -t1 -c{settings.hello_conns}); CPU time is the server's utime+stime "
                      "(/proc/PID/stat) over the measured run / requests",
                      f"- VmRSS after the runs (median over rounds): {rss_txt}", ""])

    rs = r.get("route_swaps")
    if rs:
        w: WrkResult = rs["wrk"]
        c = rs["counts"]
        lat = rs["latencies"]
        early, late = rs["marks"]
        rss, win = rs["rss"], rs["rss"]["window"]
        smp = rss["samples"]
        failed = c["bad"] + w.socket_errors
        beyond = w.non_2xx - c["nf"]
        gens = " / ".join(f"{rs['last'][k]} ({c['gen_' + k]})" for k in ("a", "b", "c", "index"))
        rss_ratio = rss[late] / rss[early] if rss[early] else None

        def span(mk):
            xs = [smp[i] / 1024 for i in range(mk - win + 1, mk + 1)]
            return f"{min(xs):.1f}–{max(xs):.1f}"

        lines.extend([f"## 10. {settings.route_swaps} swaps round-robin over 4 routes under load "
                      f"(wrk c={settings.hello_conns} rotating GET /a, /b, /c, /)", "",
                      "| swaps done | requests | failed (unexpected + socket errors) | unexpected answers "
                      "| of them 5xx | socket errors | non-2xx beyond the guest's 404s | req/s | p99 ms "
                      "| answers a / b / c / index | generation a / b / c / index: swapped to (highest seen by wrk) "
                      "| swap latency median / max ms |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
                      f"| {len(lat)}/{settings.route_swaps} | {w.requests:,} | **{failed}** | {c['bad']} | "
                      f"{c['bad5xx']} | {w.socket_errors} | {beyond} | {w.rps:,.0f} | {w.p99_ms:.2f} | "
                      f"{c['a']:,} / {c['b']:,} / {c['c']:,} / {c['index']:,} | {gens} | "
                      f"{fmt(med(lat))} / {fmt(max(lat) if lat else None)} |", "",
                      f"| VmRSS at load start | after {early} swaps | after {late} swaps | ratio after {late} / after {early} |",
                      "| ---: | ---: | ---: | ---: |",
                      f"| {smp[0] / 1024:.1f} MiB | {rss[early] / 1024:.1f} MiB | {rss[late] / 1024:.1f} MiB | "
                      f"**{fmt(rss_ratio, '.3f', '×')}** |", "",
                      f"- targets: 0 failed requests — {'met' if failed == 0 else 'NOT met'}; RSS after {late} "
                      f"within 10 % of after {early} (ratio ≤ 1.10) — "
                      f"{'n/a' if rss_ratio is None else ('met' if rss_ratio <= 1.10 else 'NOT met')}",
                      "- `--route /a=A --route /b=B --route /c=C --route /=D`, each file in its own "
                      "directory; swap i goes to route (i−1) mod 4, and renames guest-example plus a new "
                      "custom section over that route's file from a staging directory; it is done when GET "
                      "on that route's path carries its `x-hotswap-route` and the next `x-hotswap-generation`",
                      "- the Lua script counts as unexpected every answer without `x-hotswap-route` and "
                      "`x-hotswap-generation`, or other than 200 hello or guest-example's own 404 `not "
                      "found` from route a, b or c (it sees the full path and has no `/a` handler); wrk "
                      f"counted {w.non_2xx:,} non-2xx, of which {c['nf']:,} were those 404s",
                      f"- each RSS figure is the median of {win} samples, 0.2 s after each of the last {win} "
                      f"swaps up to that count, under the load; the samples spanned {span(early)} MiB and "
                      f"{span(late)} MiB", ""])

    heavy = r.get("heavy")
    if heavy:
        lines.extend([f"## 11. heavy guests per request (GET /, c={settings.hello_conns}, hotswap "
                      "`--tier optimized`)", ""])
        for guest, res in heavy.items():
            hs, wt = res.get("hotswap"), res.get("wasmtime")
            lines.extend([f"### {guest} (`{guest}.wasm`, tests/compat)", "", *runs_table("server", res), "",
                          f"- req/s hotswap / wasmtime serve: {per_round(hs, wt, 'rps')}; "
                          f"p99 hotswap / wasmtime serve: {per_round(hs, wt, 'p99_ms')}; CPU time per "
                          f"request, wasmtime serve / hotswap: {per_round(wt, hs, 'cpu_us')}", ""])
        lines.extend([f"- in each of {settings.rounds} round(s) each server started afresh with its compile "
                      "cache kept from the round before (wasmtime with `-C cache=y`), "
                      f"{settings.warmup}s warm-up + {settings.duration}s measured; a fresh instance per "
                      "request in both", ""])

    perf = r.get("perf")
    if perf:
        lines.extend([f"## profile: hotswap hello path ({settings.perf_seconds}s, perf record -e cpu-clock -g, self time)",
                      "", "```", *perf, "```", ""])

    if bench.notes:
        lines.extend(["## notes", "", *[f"- {n}" for n in bench.notes], ""])
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hotswap", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasmtime", default="")
    ap.add_argument("--stateful", default="", help="the stateful test guest (key-value scenario)")
    ap.add_argument("--redis", default="", help="redis-server binary (key-value scenario)")
    ap.add_argument("--registry", default="", help="docker-registry binary (fleet scenario)")
    ap.add_argument("--oci-push", default="", help="the oras push script (fleet scenario)")
    ap.add_argument("--heavy", default="", help="tests/compat/build.sh's output directory (heavy-guest scenario)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--duration", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", default="", help="comma-separated: load,swap,swap_load,rss,startup,state,fleet,routes,route_swaps,heavy,perf")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--skip-note", action="append", default=[])
    args = ap.parse_args()
    # Servers run in their own directories: every path must be absolute.
    for name in ("hotswap", "guest", "native", "wasmtime", "work_dir", "stateful", "heavy"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))

    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: server and load generator share a CPU")
        global CLIENT_CPU
        CLIENT_CPU = 0
    pin_self_to_client_cpu()
    debounce = os.environ.get("HOTSWAP_BENCH_DEBOUNCE", "50ms")
    if args.smoke:
        s = Settings(True, args.duration or 2, 1, 32, 32, 64 * 1024, 3, 2, 5, 2, 5, 1, args.rounds or 1,
                     1.0, debounce, 3, route_table=20, route_duration=args.duration or 1,
                     route_swaps=8, route_rss_early=4)
    else:
        s = Settings(False, args.duration or 5, 1, 32, 32, 64 * 1024, 20, 10, 100, 10, 200, 3,
                     args.rounds or 5, 1.0, debounce, 10, route_table=20, route_duration=args.duration or 5,
                     route_swaps=100, route_rss_early=10)
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    # Keep the newest few runs' directories (server logs); drop older ones.
    old_runs = sorted(Path(args.work_dir).glob("run-*"), key=lambda p: p.stat().st_mtime)
    for stale in old_runs[:-3]:
        shutil.rmtree(stale, ignore_errors=True)
    bench = Bench(args, s)
    bench.notes.extend(args.skip_note)
    started = datetime.datetime.now().astimezone()
    t0 = time.perf_counter()
    log(f"work directory {bench.work} (server logs in {bench.logs}); RUST_BACKTRACE=0 for every server")
    try:
        bench.run()
    except HarnessError as err:
        log(f"FAILED: {err}")
        return 1
    report = render(bench, s, args, started, time.perf_counter() - t0)
    # Compiled components (hundreds of swaps' worth) are not worth keeping; logs are.
    for cache in bench.work.rglob("*-cache"):
        shutil.rmtree(cache, ignore_errors=True)
    for cache in bench.work.glob("startup-*/cache"):
        shutil.rmtree(cache, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n")
    print(report)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------------------------
# TLS and OTLP peers for the edge benchmarks


def tls_pair(directory: Path, name: str = "server", days: int = 30) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1 (what ACME issuers
    hand out by default), written as NAME.pem and NAME.key in `directory`."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", str(days), "-subj", f"/CN=localhost/O={name}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class OtlpSink:
    """An OTLP/HTTP collector that takes every export and keeps nothing but counts: what a
    collector costs the host is its exporter's work, not the collector's. Runs on a thread of
    the benchmark process (pinned to the client CPU)."""

    def __init__(self):
        import http.server
        import threading

        sink = self
        self.exports = 0
        self.bytes = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.exports += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


ADMIN = re.compile(r"Admin API on (https?)://([^/\s]+)/")


def admin_series(server: "Server", prefix: str) -> list[str]:
    """The admin listener's metric lines that start with `prefix`, if the server has one."""
    with server.cond:
        m = next((m for _, line in server.lines if (m := ADMIN.search(line))), None)
    if not m or m.group(1) != "http":
        return []
    text = get_text(f"http://{m.group(2)}/metrics")
    return [line for line in text.splitlines() if line.startswith(prefix)]
