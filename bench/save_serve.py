#!/usr/bin/env python3
"""Save → new code serving, with the repository's own `hotswap.toml` (its build commands and
profile), in a private copy of the repository's guests.

The copy (guest-example, guest-api, wit, hotswap.toml) goes to a temporary directory, so the
repository is never edited. hotswap serves it unpinned (its builds use both cores, as for a user);
after the first build serves, each of EDITS edits rewrites guest-example's greeting to a new
text and polls `GET /` until the new text answers. Reported: the time from the write to that
first response, per edit, and the median.

    bench/save_serve.py --edits 10            # the repository's hotswap.toml as it is
    bench/save_serve.py --edits 10 --profile release   # the same with `--release` builds
"""

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GREETING = "hello from hotswap guest-example"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hotswap", default="target/release/hotswap")
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--profile", help="rewrite the config's cargo profile to this one (e.g. release)")
    args = ap.parse_args()
    binary = str(Path(args.hotswap).resolve())
    work = Path(tempfile.mkdtemp(prefix="hotswap-save-"))
    for part in ["guest-example", "guest-api", "wit"]:
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("target"))
    config = (ROOT / "hotswap.toml").read_text()
    if args.profile:
        config = re.sub(r"--profile \S+|--release", "--release" if args.profile == "release"
                        else f"--profile {args.profile}", config)
        config = re.sub(r"wasm32-wasip2/[a-z-]+/", f"wasm32-wasip2/{args.profile}/", config)
    (work / "hotswap.toml").write_text(config)
    source = work / "guest-example" / "src" / "lib.rs"
    original = source.read_text()
    assert GREETING in original, "guest-example's greeting moved; update this script"
    server = H.Server("hotswap", [binary, "serve", "--addr", "127.0.0.1:0"], work / "logs",
                      {"HOTSWAP_ADMIN_ADDR": "127.0.0.1:0", "XDG_CACHE_HOME": str(work / "cache")},
                      cwd=work, pin=False)
    times = []
    try:
        url = f"http://{server.wait_ready(timeout=600)}/"
        _, _, listening = server.wait_line(H.SERVING, 1)
        deadline = time.perf_counter() + 600
        while GREETING not in H.get_text(url):
            if time.perf_counter() > deadline:
                raise SystemExit("the first build never served")
            time.sleep(0.05)
        print(f"start: `Serving HTTP on` {listening - server.t_spawn:.2f} s after the start; "
              f"the first (cold) build served after {time.perf_counter() - server.t_spawn:.1f} s",
              flush=True)
        for n in range(1, args.edits + 1):
            time.sleep(1.0)
            text = f"hello #{n} from hotswap guest-example"
            start = time.perf_counter()
            source.write_text(original.replace(GREETING, text))
            deadline = start + 120
            while text not in H.get_text(url):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"edit {n} never served; see {server.log_path}")
                time.sleep(0.005)
            took = time.perf_counter() - start
            times.append(took)
            print(f"edit {n:2d}: new text served {took:5.2f} s after the save", flush=True)
    finally:
        server.stop()
    print(f"median {statistics.median(times):.2f} s over {len(times)} edits "
          f"(min {min(times):.2f}, max {max(times):.2f}); log: {server.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
