#!/usr/bin/env python3
"""Start → listening → first response, for a component never seen before (empty caches),
with `--tier optimized` (Cranelift only) and `--tier auto` (Winch first, then a tier-up).

Each round starts hotswap afresh with an empty cache directory, once per tier, alternating
which goes first so slow phases of a shared machine hit both alike. Reported per run: the time
from the start to the `Serving HTTP on` line, to the first 200 from `GET /`, and (auto) to the
`tiered up` line; and hotswap's own compile time of the build that served first. hotswap runs
pinned to CPU 0 (so its compiles use one core) unless `--unpinned`.

    bench/first_serve.py target/compat/js.wasm target/compat/python.wasm --rounds 3
"""

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

LOADED = re.compile(r"loaded generation 1 \(([^,]*), (\w+), .*compiled in (\d+) ms")
TIERED = re.compile(r"tiered up generation 1: .*\(compiled in (\d+) ms\)")


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def one(binary: str, guest: Path, tier: str, work: Path, pin: bool) -> dict:
    d = Path(tempfile.mkdtemp(dir=work))
    argv = [binary, "serve", str(guest), "--addr", "127.0.0.1:0", "--tier", tier,
            "--cache-dir", str(d / "cache")]
    server = H.Server(f"hotswap-{guest.stem}-{tier}", argv, work / "logs", {}, signal.SIGTERM, d, pin)
    try:
        url = f"http://{server.wait_ready(timeout=60)}/"
        _, _, listening = server.wait_line(H.SERVING, 1)
        deadline = time.perf_counter() + 300
        while status(url) != 200:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{guest.name} never served; see {server.log_path}")
            time.sleep(0.01)
        served = time.perf_counter()
        _, m, _ = server.wait_line(LOADED, 10)
        out = {"listening": listening - server.t_spawn, "served": served - server.t_spawn,
               "compiler": m.group(2), "compile_ms": int(m.group(3))}
        if tier == "auto":
            _, t, at = server.wait_line(TIERED, 300)
            out["tiered"] = at - server.t_spawn
            out["tier_up_compile_ms"] = int(t.group(1))
        return out
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("guests", nargs="+")
    ap.add_argument("--hotswap", default="target/release/hotswap")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--unpinned", action="store_true",
                    help="let hotswap (and its parallel compiles) use every core, not CPU 0 alone")
    args = ap.parse_args()
    binary = str(Path(args.hotswap).resolve())
    work = Path(tempfile.mkdtemp(prefix="hotswap-first-"))
    for guest in map(Path, args.guests):
        runs: dict[str, list[dict]] = {"optimized": [], "auto": []}
        for rnd in range(args.rounds):
            for tier in (["optimized", "auto"] if rnd % 2 == 0 else ["auto", "optimized"]):
                r = one(binary, guest.resolve(), tier, work, not args.unpinned)
                runs[tier].append(r)
                extra = (f", tiered up at {r['tiered']:.2f} s (Cranelift {r['tier_up_compile_ms']} ms)"
                         if "tiered" in r else "")
                print(f"{guest.stem} round {rnd} {tier:9s}: listening {r['listening']:.3f} s, "
                      f"first 200 {r['served']:.2f} s ({r['compiler']} {r['compile_ms']} ms){extra}",
                      flush=True)
        med = {t: statistics.median(x["served"] for x in rs) for t, rs in runs.items()}
        listen = max(x["listening"] for rs in runs.values() for x in rs)
        print(f"{guest.stem}: median first 200: optimized {med['optimized']:.2f} s, auto "
              f"{med['auto']:.2f} s ({med['auto'] / med['optimized']:.2f}x); slowest "
              f"`Serving HTTP on`: {listen:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
