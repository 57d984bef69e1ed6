#!/usr/bin/env python3
"""Instructions per request, counted by valgrind: an A/B for differences too small for timing on
a shared VM.

Timing A/Bs (bench/ab.py) on this project's VMs swing by ±10 % between two runs of the same
binary, so a 2 % target cannot be read from them. Valgrind's cachegrind counts the instructions
the server executes in user space (`I refs`), host and guest code alike, the same on a busy VM
as on a quiet one. Each variant runs three times under cachegrind with `--cache-sim=no`: once to
fill its compile cache, then with WARM requests and with WARM + N requests, each ended by
SIGTERM; the instructions per request are the difference over N, so start-up and shutdown cancel
out. Requests go one at a time over one keep-alive connection (valgrind runs the server's threads
one at a time anyway).

What it does not see: the kernel's side (system calls, page faults; read those from bench/ab.py's
CPU per request, or /proc), and what instructions cost in time (cache misses, contention).

    bench/instructions.py --guest target/guests/wasm32-wasip2/release/guest_example.wasm \\
        off=target/release/hotswap \\
        'policy=target/release/hotswap,@args=--canary-weight 10 --canary-min-requests 1000000000'

A variant is NAME=BINARY[,@args=ARGS][,@candidate=1]: ARGS are extra `serve` arguments separated
by spaces; `@candidate=1` deploys the guest again with other bytes (a custom section added) once
the server is ready and waits until it runs as the route's canary candidate (give the variant a
policy that will not judge it during the run). Every variant also gets `--tier optimized` and
`--max-concurrency 2` (valgrind cannot reserve the instance pool of the default cap).
Needs valgrind (`apt install valgrind`).
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402


def run(binary: str, guest: bytes, args: list[str], candidate: bool, requests: int, work: Path) -> int:
    """Serves `guest` under cachegrind, sends `requests` GET / one at a time, stops the server
    with SIGTERM: the instructions it executed."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    app = run_dir / "app.wasm"
    app.write_bytes(guest)
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
            f"--cachegrind-out-file={run_dir / 'cachegrind.out'}",
            binary, "serve", str(app), "--addr", "127.0.0.1:0", "--tier", "optimized",
            "--max-concurrency", "2"] + args
    env = dict(os.environ, RUST_BACKTRACE="0", XDG_CACHE_HOME=str(work / "cache"))
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []

    def wait_for(pattern: str) -> re.Match:
        deadline = time.time() + 600
        while time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        server.kill()
        raise H.HarnessError(f"no line matching {pattern!r}:\n{''.join(lines[-30:])}")

    addr = wait_for(r"listening addr=(\S+)").group(1)
    wait_for(r"startup finished")
    if candidate:
        staged = run_dir / ".app.wasm.new"
        staged.write_bytes(H.with_custom_section(guest, "candidate"))
        os.replace(staged, app)
        wait_for(r"as the candidate until")
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for _ in range(requests):
        conn.request("GET", "/")
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            raise H.HarnessError(f"GET / answered {reply.status}")
    conn.close()
    server.send_signal(signal.SIGTERM)
    rest = server.communicate(timeout=600)[0]
    m = re.search(r"I\s+refs:\s+([\d,]+)", rest)
    if not m:
        raise H.HarnessError(f"valgrind printed no count:\n{rest[-3000:]}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return int(m.group(1).replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guest", required=True, help="the component every variant serves")
    ap.add_argument("--warm", type=int, default=300, help="requests before the counted ones")
    ap.add_argument("--requests", type=int, default=2000, help="counted requests (N)")
    ap.add_argument("variants", nargs="+", metavar="NAME=BINARY[,KEY=VALUE...]")
    opts = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    guest = Path(opts.guest).read_bytes()
    work = Path(tempfile.mkdtemp(prefix="hotswap-instructions-"))
    results = []
    for spec in opts.variants:
        name, rest = spec.split("=", 1)
        binary, *pairs = rest.split(",")
        keys = dict(p.split("=", 1) for p in pairs)
        args = keys.get("@args", "").split()
        candidate = keys.get("@candidate") == "1"
        binary = str(Path(binary).resolve())
        run(binary, guest, args, candidate, 10, work)
        before = run(binary, guest, args, candidate, opts.warm, work)
        after = run(binary, guest, args, candidate, opts.warm + opts.requests, work)
        per = (after - before) / opts.requests
        results.append((name, per))
        print(f"{name:12s} {before:>14,} instructions at {opts.warm} requests, {after:>14,} at "
              f"{opts.warm + opts.requests}: {per:>10,.0f} per request", flush=True)
    base = results[0][1]
    print(f"\nper request, against {results[0][0]}:")
    for name, per in results:
        print(f"  {name:12s} {per:>10,.0f}  {per / base:.4f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
