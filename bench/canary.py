#!/usr/bin/env python3
"""Canary verdicts under load: how fast a bad candidate is rolled back, and that the mechanism
itself fails no request.

Serves the misbehaving test guest (its `/canary` path answers as the build's mode says: the
same code with four bytes of its data overwritten, as tests/support/guests.rs does) with a
canary policy, pinned to CPU 0, loaded from CPU 1 by wrk on `/canary`. Phase by phase, with a
wrk run of its own each, it deploys a new build by rename and waits for the verdict:

- `fail`: a candidate that answers 500 to everything (rolled back on errors);
- `latency`: the current generation answers in 50 ms, the candidate in 150 ms (3× slower;
  rolled back on p99);
- `good`: a candidate like the current one (promoted);
- `replaced`: a candidate replaced by a newer build before its verdict, the newer one promoted.

With `--mode shadow` (and `deterministic`), the candidate only answers copies of its share, so
no client may see its failures at all; a `body` phase adds a candidate whose body differs.

For each phase it prints the verdict line's numbers, the time from the candidate starting to
its verdict and from the failure that crossed the bound to the verdict (the log's timestamps),
and what wrk saw: non-2xx responses (in `fail` exactly the candidate's own 500s are expected:
they are the bad build's answers, not the mechanism's) and socket errors.

    bench/canary.py --binary target/release/hotswap \\
        --guest target/guests/wasm32-wasip2/release/misbehave.wasm
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

MARKER = b"CANARY-MODE:ok.."


def build(base: bytes, mode: str) -> bytes:
    at = base.index(MARKER)
    return base[:at + 12] + mode.encode() + base[at + 16:]


def stamp(line: str) -> float:
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    if not m:
        raise H.HarnessError(f"no timestamp in {line!r}")
    return datetime.datetime.fromisoformat(m.group(1)).timestamp()


def deploy(path: Path, data: bytes) -> None:
    staged = path.with_name("." + path.name + ".new")
    staged.write_bytes(data)
    os.replace(staged, path)


def admin_json(server: H.Server, admin: str, path: str) -> dict:
    return json.loads(H.get_text(f"http://{admin}{path}"))


def phase(server, admin, app, url, base, modes, conns, expect):
    """Deploys each build of `modes` in turn (the last one is judged) under one wrk run."""
    wrk = subprocess.Popen(H.wrk_argv(url, 120, conns, None), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    before = admin_json(server, admin, "/routes/index/canary").get("last_verdict")
    for n, mode in enumerate(modes):
        deployed = len(server.lines)
        deploy(app, build(base, mode))
        at, _, _ = server.wait_line(r"as the candidate until", 60, deployed)
        if n < len(modes) - 1:
            time.sleep(1)
    started_line = server.lines[at][1]
    j, m, _ = server.wait_line(r"canary: (promoted|rolled back) generation", 120, deployed)
    verdict_line = server.lines[j][1]
    time.sleep(1)
    out, err = H.stop_wrk(wrk)
    H.check_wrk(wrk, out, err)
    after = admin_json(server, admin, "/routes/index/canary")["last_verdict"]
    if after == before or after["decision"] != expect:
        raise H.HarnessError(f"expected {expect}, got {after}")
    return after, stamp(verdict_line) - stamp(started_line), H.parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--guest", required=True, help="the misbehaving test guest (misbehave.wasm)")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--weight", default="10")
    ap.add_argument("--min-requests", default="200")
    ap.add_argument("--mode", choices=["split", "shadow"], default="split")
    args = ap.parse_args()
    base = Path(args.guest).read_bytes()
    if base.count(MARKER) != 1:
        raise SystemExit(f"{args.guest} has no /canary marker")
    work = Path(tempfile.mkdtemp(prefix="hotswap-canary-"))
    H.pin_self_to_client_cpu()
    results = []
    shadow = args.mode == "shadow"
    phases = [
        ("fail", "ok..", ["fail"], "rolled_back"),
        ("latency", "slow", ["s150"], "rolled_back"),
        ("good", "ok..", ["ok2."], "promoted"),
        ("replaced", "ok..", ["ok2.", "ok3."], "promoted"),
    ]
    if shadow:
        phases.insert(1, ("body", "ok..", ["body"], "rolled_back"))
    for name, first, modes, expect in phases:
        d = work / name
        d.mkdir()
        app = d / "app.wasm"
        app.write_bytes(build(base, first))
        argv = [str(Path(args.binary).resolve()), "serve", str(app), "--addr", "127.0.0.1:0",
                "--admin-addr", "127.0.0.1:0", "--canary-weight", args.weight,
                "--canary-min-requests", args.min_requests, "--shutdown-timeout", "2s"]
        if shadow:
            argv += ["--canary-mode", "shadow", "--canary-deterministic"]
        server = H.Server(f"canary-{name}", argv, work / "logs", {"XDG_CACHE_HOME": str(d / "cache")}, cwd=d)
        try:
            addr = server.wait_ready()
            _, m, _ = server.wait_line(r"Admin API on http://(\S+)/", 10)
            admin = m.group(1)
            verdict, took, wrk = phase(server, admin, app, f"http://{addr}/canary", base, modes,
                                       args.conns, expect)
        finally:
            server.stop()
        results.append((name, verdict, took, wrk))
    print(f"canary verdicts under load ({args.mode} mode, weight {args.weight} %, min_requests {args.min_requests}, "
          f"wrk c={args.conns} on /canary; server CPU {H.SERVER_CPU}, wrk CPU {H.CLIENT_CPU}, RUST_BACKTRACE=0)")
    ok = True
    for name, verdict, took, wrk in results:
        cand = verdict["numbers"]["candidate"]
        cur = verdict["numbers"]["current"]
        print(f"  {name:9s} {verdict['decision']:11s} cause {verdict['cause']:8s} after {took * 1e3:7.0f} ms: "
              f"candidate {cand['requests']} requests, {cand['errors']} errors, p99 {cand['p99_ms']:.1f} ms; "
              f"current {cur['requests']} requests, p99 {cur['p99_ms']:.1f} ms")
        if "shadow" in verdict:
            sh = verdict["shadow"]
            print(f"            copies: {sh['matched']} matched, {sh['status_mismatches']} status and "
                  f"{sh['body_mismatches']} body mismatches, {sh['incomplete']} incomplete, "
                  f"not copied: {sh['not_copied']['body']} (body), {sh['not_copied']['shed']} (shed)")
        print(f"            wrk: {wrk.requests} requests, non-2xx {wrk.non_2xx}, socket errors {wrk.socket_errors}")
        # In split mode the failing build's own 500s reach its clients; in shadow mode none may.
        allowed = cand["errors"] if name == "fail" and not shadow else 0
        if wrk.non_2xx > allowed or wrk.socket_errors:
            print(f"            FAILED: {wrk.non_2xx - allowed} requests failed beyond the candidate's own errors")
            ok = False
    print(f"  logs: {work / 'logs'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
