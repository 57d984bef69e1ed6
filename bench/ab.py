#!/usr/bin/env python3
"""Side-by-side (A/B) comparison of server builds on the hello route (or a POST route), for tuning work.

Each round starts every variant afresh, in turn, pinned like the harness does (server on CPU 0,
wrk on CPU 1), warms it up, then measures req/s, p50/p99 and the server's CPU time per request
(utime + stime from /proc). Rounds interleave the variants, so slow phases of a shared machine
hit them alike; compare the per-round figures, not one run.

    bench/ab.py --guest target/guests/wasm32-wasip2/release/guest_example.wasm \\
        before=/tmp/hotswap-before after=target/release/hotswap \\
        'purge0=target/release/hotswap,MIMALLOC_PURGE_DELAY=0' wasmtime=wasmtime

A variant is NAME=BINARY[,KEY=VALUE...]: the KEY=VALUE pairs are added to the server's
environment, except `@guest=PATH`, which serves that component instead of `--guest`, and
`@startup=0` for a hotswap build older than listening at once (it prints no `Startup finished`
line to wait for), and `@args=ARGS`, extra server arguments separated by spaces (e.g.
`'wasmtime49=/path/to/wasmtime,@args=-Sp3 -Wcomponent-model-async --max-instance-reuse-count 1'`
or `'reuse=target/release/hotswap,@args=--instance-reuse 128'`), `@tls=1`, which serves HTTPS
with a self-signed ECDSA P-256 certificate made for the run (wrk then speaks TLS 1.3), and
`@otlp=1`, which sends the variant's traces to an OTLP/HTTP sink started by this script (a
collector that keeps nothing; add `@args=--admin-addr 127.0.0.1:0` to print the host's
`hotswap_trace_spans_total` after each round, to see that no span was dropped), and
`@candidate=1`, which deploys the guest again with other bytes (a custom section added) once the
server is ready and waits until it runs as the route's canary candidate before warming up (give
the variant a policy that will not judge it during the run, e.g.
`@args=--canary-weight 10 --canary-min-requests 1000000000 --canary-max-duration 1h`). A variant whose name starts with `wasmtime` runs `BINARY serve -Scli` (BINARY may be
`wasmtime` for the harness's cached wasmtime-cli 48), one whose name starts with `native` runs
`BINARY 127.0.0.1:0` (bench/hello-native, built by run.sh into target/bench/release), any other
`BINARY serve`.

A round warns when a variant answered non-2xx, and when a hotswap variant served a Winch build
for the whole measurement (a large guest under the default `--tier auto` whose Cranelift build
was still compiling beside it): compare heavy guests' compiled code with
`@args=--tier optimized`.
"""

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

CACHED_WASMTIME = Path(os.environ.get("HOTSWAP_BENCH_CACHE", Path.home() / ".cache/hotswap-bench")) / "bin/wasmtime"


def parse_variant(spec: str) -> tuple[str, str, dict[str, str]]:
    """NAME, BINARY and the KEY=VALUE pairs (including `@guest`) of a variant."""
    name, sep, rest = spec.partition("=")
    if not sep or not rest:
        raise SystemExit(f"bad variant `{spec}`: expected NAME=BINARY[,KEY=VALUE...]")
    binary, *pairs = rest.split(",")
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"bad variant `{spec}`: `{pair}` is not KEY=VALUE")
        env[key] = value
    if name.startswith("wasmtime") and binary == "wasmtime":
        binary = str(CACHED_WASMTIME)
    elif "/" in binary:
        binary = str(Path(binary).resolve())  # the servers run in their own directories
    return name, binary, env


def winch_served_throughout(log: Path, offset: int) -> bool:
    """Whether the part of a hotswap log from `offset` on (one server's run) shows a generation
    loaded as a Winch build and no tier-up after it."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    return ", Winch," in text and "tiered up generation" not in text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guest", required=True, help="the component every variant serves")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="measured seconds per variant and round")
    ap.add_argument("--path", default="/", help="request path (default /)")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--post-bytes", type=int, default=0, metavar="N",
                    help="POST a body of N bytes instead of GET (e.g. --path /echo --post-bytes 65536)")
    ap.add_argument("--new-conns", action="store_true",
                    help="send `Connection: close`: every request on a new connection (over HTTPS, "
                         "a full handshake), so req/s is connections (handshakes) per second")
    ap.add_argument("variants", nargs="+", metavar="NAME=BINARY[,KEY=VALUE...]")
    args = ap.parse_args()

    variants = [parse_variant(v) for v in args.variants]
    guests = {name: Path(env.pop("@guest", args.guest)).read_bytes() for name, _, env in variants}
    extra = {name: env.pop("@args", "").split() for name, _, env in variants}
    startup = {name: env.pop("@startup", "1") != "0" for name, _, env in variants}
    tls = {name: env.pop("@tls", "0") == "1" for name, _, env in variants}
    otlp = {name: env.pop("@otlp", "0") == "1" for name, _, env in variants}
    candidate = {name: env.pop("@candidate", "0") == "1" for name, _, env in variants}
    work = Path(tempfile.mkdtemp(prefix="hotswap-ab-"))
    H.pin_self_to_client_cpu()
    cert, key = H.tls_pair(work) if any(tls.values()) else (None, None)
    sink = H.OtlpSink() if any(otlp.values()) else None
    headers = ("Connection: close",) if args.new_conns else ()
    script = None
    if args.post_bytes:
        script = work / "post.lua"
        script.write_text('wrk.method = "POST"\n'
                          f'wrk.body = string.rep("x", {args.post_bytes})\n'
                          'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    results: dict[str, list[tuple[H.WrkResult, float]]] = {name: [] for name, _, _ in variants}
    for rnd in range(args.rounds):
        for name, binary, env in variants:
            d = work / f"{name}-{rnd}"
            d.mkdir()
            component = d / "guest.wasm"
            component.write_bytes(guests[name])
            if name.startswith("wasmtime"):
                argv = [binary, "serve", "-Scli", *extra[name], "--addr", "127.0.0.1:0", str(component)]
                stop = signal.SIGINT
            elif name.startswith("native"):
                argv = [binary, "127.0.0.1:0"]
                stop = signal.SIGTERM
            else:
                argv = [binary, "serve", str(component), "--addr", "127.0.0.1:0", "--shutdown-timeout", "2s",
                        *extra[name]]
                if tls[name]:
                    argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
                if otlp[name]:
                    env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
                stop = signal.SIGTERM
            server = H.Server(name, argv, work / "logs", {"XDG_CACHE_HOME": str(d / "cache"), **env}, stop, d,
                              startup_line=startup[name] and argv[1] == "serve" and not name.startswith("wasmtime"))
            try:
                scheme = "https" if tls[name] else "http"
                url = f"{scheme}://{server.wait_ready()}{args.path}"
                if candidate[name]:
                    staged = d / ".guest.wasm.new"
                    staged.write_bytes(H.with_custom_section(guests[name], f"candidate-{rnd}"))
                    os.replace(staged, component)
                    server.wait_line(r"as the candidate until", 60)
                H.run_wrk(url, 1, args.conns, script, headers)
                before = H.cpu_seconds(server.proc.pid)
                result = H.run_wrk(url, args.duration, args.conns, script, headers)
                us = (H.cpu_seconds(server.proc.pid) - before) / max(result.requests, 1) * 1e6
                if otlp[name]:
                    time.sleep(1)  # the exporter's last batch of the round
                    spans = H.admin_series(server, "hotswap_trace_spans_total")
                    print(f"  {name}: {' '.join(spans) or 'no admin listener'}; "
                          f"sink took {sink.exports} exports, {sink.bytes / 1e6:.1f} MB so far", flush=True)
            finally:
                server.stop()
            results[name].append((result, us))
            print(f"round {rnd} {name:12s} {result.rps:9.0f} req/s  p50 {result.p50_ms:5.2f} ms  "
                  f"p99 {result.p99_ms:5.2f} ms  {us:5.1f} us CPU/request  non-2xx {result.non_2xx}  "
                  f"socket errors {result.socket_errors}",
                  flush=True)
            if result.non_2xx:
                print(f"warning: {name} answered {result.non_2xx} requests with a non-2xx status "
                      f"(its log: {server.log_path})", flush=True)
            if not name.startswith(("wasmtime", "native")) and \
                    winch_served_throughout(server.log_path, server.log_offset):
                print(f"warning: {name} served its Winch build for the whole measurement while its "
                      f"Cranelift build compiled beside it; pass @args=--tier optimized to compare "
                      f"compiled code", flush=True)
    print("\nmedians over the rounds:")
    for name, _, _ in variants:
        runs = results[name]
        print(f"{name:12s} {statistics.median(r.rps for r, _ in runs):9.0f} req/s  "
              f"p99 {statistics.median(r.p99_ms for r, _ in runs):5.2f} ms  "
              f"{statistics.median(us for _, us in runs):5.1f} us CPU/request  "
              f"(per round: {' / '.join(f'{us:.1f}' for _, us in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
