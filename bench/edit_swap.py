#!/usr/bin/env python3
"""Time from a new build landing to its new code serving, with and without the incremental
compilation cache.

Each repetition starts hotswap afresh with an empty cache directory, serving FIRST; once
generation 1 serves, SECOND (a build never seen before: the whole-module cache is cold) is
renamed into place, and the client polls `GET /` until the body contains TEXT. Reported: the
time from the rename to that first new response, and hotswap's own compile time for SECOND.
Mode `off` runs hotswap with `--incremental-cache-size 0`; mode `on` with the cache on, so
that FIRST's compile has filled it (the case of a JS or Python guest whose script changed over
the same engine). The modes alternate, so slow phases of a shared machine hit both alike.
`--modes on` runs one mode; `--args '--tier optimized'` passes more flags to hotswap (under
`--tier auto`, the default, a large guest serves from its Winch build first, and the time
reported is the time to that).

    bench/edit_swap.py --first js.wasm --second js-edited.wasm --text 'edited' --reps 3
"""

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

LOADED = re.compile(r"loaded generation 2 \(([^)]*)\)")


def one(binary: str, first: bytes, second: bytes, text: str, incremental: bool, work: Path,
        extra: list[str]) -> tuple[float, str]:
    d = Path(tempfile.mkdtemp(dir=work))
    app = d / "app.wasm"
    app.write_bytes(first)
    argv = [binary, "serve", str(app), "--addr", "127.0.0.1:0", "--debounce", "50ms",
            "--cache-dir", str(d / "cache")]
    if not incremental:
        argv += ["--incremental-cache-size", "0"]
    argv += extra
    server = H.Server("hotswap", argv, work / "logs", {}, signal.SIGTERM, d)
    try:
        url = f"http://{server.wait_ready(timeout=300)}/"
        tmp = d / ".app.wasm.tmp"
        tmp.write_bytes(second)
        start = time.perf_counter()
        os.rename(tmp, app)
        deadline = start + 300
        while text not in H.get_text(url):
            if time.perf_counter() > deadline:
                raise SystemExit("the new build never served")
            time.sleep(0.005)
        took = time.perf_counter() - start
        _, m, _ = server.wait_line(LOADED, 10)
        return took, m.group(1)
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hotswap", default="target/release/hotswap")
    ap.add_argument("--first", required=True)
    ap.add_argument("--second", required=True)
    ap.add_argument("--text", required=True, help="text only the second build's GET / answers")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="off,on", help="which of the modes to run (off,on)")
    ap.add_argument("--args", default="", help="extra hotswap arguments, e.g. '--tier optimized'")
    args = ap.parse_args()
    binary = str(Path(args.hotswap).resolve())
    first, second = Path(args.first).read_bytes(), Path(args.second).read_bytes()
    work = Path(tempfile.mkdtemp(prefix="hotswap-edit-"))
    wanted = args.modes.split(",")
    times: dict[str, list[float]] = {m: [] for m in wanted}
    for rep in range(args.reps):
        modes = wanted if rep % 2 == 0 else wanted[::-1]
        for mode in modes:
            took, how = one(binary, first, second, args.text, mode == "on", work, args.args.split())
            times[mode].append(took)
            print(f"rep {rep} incremental {mode:3s}: new code serving {took:6.2f} s after the rename ({how})",
                  flush=True)
    for mode in wanted:
        print(f"incremental {mode}: median {statistics.median(times[mode]):.2f} s "
              f"({' / '.join(f'{t:.2f}' for t in times[mode])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
