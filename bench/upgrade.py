#!/usr/bin/env python3
"""Host binary upgrades (SIGUSR2) under load: the gap a client sees, and how long they take.

Starts the host (pinned to CPU 0) and loads it from CPU 1 with two wrk runs at once: keep-alive
connections, and `Connection: close` requests (a new connection each). Then upgrades it again
and again with SIGUSR2: each time the binary at the host's path starts anew, takes the
listening sockets, loads its routes and takes over, and the old process drains and exits.
Rounds are warm (the compile cache as the last process left it) or cold (the cache directory
emptied just before the signal, so the new process compiles every route). For each round it
prints the time from the signal to the new process serving (its `took over` line) and to its
routes being loaded (its `Startup finished` line); at the end, what both wrk runs saw (requests,
non-2xx, socket errors, the slowest response: the gap as a client sees it) and the RSS of the
first process and of the survivor after the same load.

    bench/upgrade.py --binary target/release/hotswap --scenario routes
    bench/upgrade.py --binary target/release/hotswap --scenario python \\
        --python-guest target/compat/python.wasm

`routes` is the repository's own `hotswap.toml` (two routes, each with its build, which the new
process runs too: a no-op `cargo build` when nothing changed), run from the repository root.
"""

import argparse
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

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise H.HarnessError(f"no VmRSS for {pid}")


def max_latency_ms(out: str) -> float:
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.MULTILINE)
    if not m:
        raise H.HarnessError(f"no latency line in wrk output:\n{out}")
    return H._ms(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--scenario", choices=("routes", "python"), default="routes")
    ap.add_argument("--python-guest", default=str(ROOT / "target/compat/python.wasm"))
    ap.add_argument("--warm", type=int, default=3, help="warm rounds")
    ap.add_argument("--cold", type=int, default=2, help="cold rounds")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds of load between rounds")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections")
    ap.add_argument("--new-conns", type=int, default=2, help="connections closed after each request")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hotswap-upgrade-"))
    cache = work / "cache"
    H.pin_self_to_client_cpu()
    binary = str(Path(args.binary).resolve())
    common = ["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-timeout", "5s"]
    if args.scenario == "routes":
        argv, cwd, path = [binary, "serve", *common], ROOT, "/api/time"
    else:
        guest = work / "python.wasm"
        shutil.copy(args.python_guest, guest)
        argv, cwd, path = [binary, "serve", str(guest), *common], work, "/"
    env = {"HOTSWAP_CACHE_DIR": str(cache), "HOTSWAP_LOG": "info"}
    server = H.Server("hotswap", argv, work / "logs", env, cwd=cwd)
    pids = [server.proc.pid]
    rounds = []
    try:
        addr = server.wait_ready(timeout=600)
        url = f"http://{addr}{path}"
        H.run_wrk(url, 2, args.conns)  # warm-up
        total = int((args.warm + args.cold) * (args.pause + 3) + 60 * args.cold + 10)
        keep = subprocess.Popen(H.wrk_argv(url, total, args.conns, None),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fresh = subprocess.Popen(H.wrk_argv(url, total, args.new_conns, None, ("Connection: close",)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(args.pause)
        first_rss = rss_kib(pids[0])
        seen = len(server.lines)
        for kind in ["warm"] * args.warm + ["cold"] * args.cold:
            if kind == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            old = pids[-1]
            t0 = time.perf_counter()
            os.kill(old, signal.SIGUSR2)
            i, m, t_loaded = server.wait_line(r"starting \(PID (\d+)\)", 600, seen)
            new = int(m.group(1))
            pids.append(new)
            _, _, t_loaded = server.wait_line(r"^Startup finished", 600, i)
            j, _, t_serving = server.wait_line(rf"took over from PID {old}", 600, i)
            k, m, _ = server.wait_line(r"shutdown complete: (\d+) request\(s\) drained, (\d+) cut", 60, i)
            seen = max(j, k) + 1
            rounds.append((kind, old, new, (t_loaded - t0) * 1e3, (t_serving - t0) * 1e3,
                           int(m.group(1)), int(m.group(2))))
            time.sleep(args.pause)
        survivor_rss = rss_kib(pids[-1])
        results = []
        for name, wrk in (("keep-alive", keep), ("new connection per request", fresh)):
            out, err = H.stop_wrk(wrk)
            H.check_wrk(wrk, out, err)
            results.append((name, H.parse_wrk(out), max_latency_ms(out)))
    finally:
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(1)
        server.stop()
    print(f"{args.scenario}: {len(rounds)} upgrades by SIGUSR2 under load "
          f"(server CPU {H.SERVER_CPU}, wrk CPU {H.CLIENT_CPU}, RUST_BACKTRACE=0)")
    for kind, old, new, loaded, serving, drained, cut in rounds:
        print(f"  {kind:4s}  PID {old} -> {new}: routes loaded {loaded:7.0f} ms, serving "
              f"{serving:7.0f} ms after the signal; old process drained {drained}, cut {cut}")
    failed = 0
    for name, r, slowest in results:
        print(f"  {name:27s} {r.requests:8d} requests  {r.rps:8.0f} req/s  p99 {r.p99_ms:6.2f} ms  "
              f"max {slowest:7.2f} ms  non-2xx {r.non_2xx}  socket errors {r.socket_errors}")
        failed += r.non_2xx + r.socket_errors
    print(f"  RSS: first process {first_rss / 1024:.1f} MiB, survivor {survivor_rss / 1024:.1f} MiB")
    print(f"  log: {server.log_path}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
