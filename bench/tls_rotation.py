#!/usr/bin/env python3
"""Certificate rotation under load: zero failed requests and zero failed handshakes.

Serves a guest over HTTPS (server on CPU 0) and loads it from CPU 1 with two wrk runs at once:
keep-alive connections, and `Connection: close` requests (a new TLS 1.3 handshake each). Every
`--interval` seconds a new certificate and key replace the serving ones, either the way an ACME
client's deploy hook does (`--via rename`: each file written beside its target, then renamed
over it, key first) or the way the kubelet updates a mounted Secret (`--via data-link`: the pair
in a new `..TIMESTAMP` directory, then the `..data` link swapped to it in one rename). At the
end it prints what both wrk runs saw (requests, non-2xx, socket errors), the host's certificate
reloads by result, and whether new handshakes get the last certificate.

    bench/tls_rotation.py --binary target/release/hotswap \\
        --guest target/guests/wasm32-wasip2/release/guest_example.wasm --via rename
"""

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402


def presented(addr: str) -> str:
    """The PEM certificate a new handshake with `addr` gets."""
    host, port = addr.rsplit(":", 1)
    return ssl.get_server_certificate((host, int(port)))


def same_cert(pem_a: str, pem_b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(pem_a) == ssl.PEM_cert_to_DER_cert(pem_b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--via", choices=("rename", "data-link"), default="rename")
    ap.add_argument("--duration", type=int, default=30, help="seconds of load")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between rotations")
    ap.add_argument("--conns", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--new-conns", type=int, default=4, help="connections closed after each request")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hotswap-tls-rotation-"))
    H.pin_self_to_client_cpu()
    rotations = int(args.duration / args.interval) - 1
    pairs = [H.tls_pair(work, f"pair{i}", days=30 + i) for i in range(rotations + 1)]
    live = work / "tls"
    live.mkdir()
    if args.via == "data-link":
        first = live / "..2026_01_01_00_00_00.0"
        first.mkdir()
        for src, name in zip(pairs[0], ("tls.crt", "tls.key")):
            (first / name).write_bytes(src.read_bytes())
        os.symlink(first.name, live / "..data")
        for name in ("tls.crt", "tls.key"):
            os.symlink(f"..data/{name}", live / name)
    else:
        for src, name in zip(pairs[0], ("tls.crt", "tls.key")):
            (live / name).write_bytes(src.read_bytes())
    guest = work / "guest.wasm"
    guest.write_bytes(Path(args.guest).read_bytes())

    argv = [str(Path(args.binary).resolve()), "serve", str(guest), "--addr", "127.0.0.1:0",
            "--admin-addr", "127.0.0.1:0", "--tls-cert", str(live / "tls.crt"),
            "--tls-key", str(live / "tls.key"), "--shutdown-timeout", "2s"]
    server = H.Server("hotswap", argv, work / "logs", {"XDG_CACHE_HOME": str(work / "cache")})
    try:
        addr = server.wait_ready()
        url = f"https://{addr}/"
        H.run_wrk(url, 1, args.conns)
        keep = subprocess.Popen(H.wrk_argv(url, args.duration, args.conns, None),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fresh = subprocess.Popen(H.wrk_argv(url, args.duration, args.new_conns, None, ("Connection: close",)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        for i in range(1, rotations + 1):
            time.sleep(max(0.0, started + i * args.interval - time.monotonic()))
            cert, key = pairs[i]
            if args.via == "data-link":
                new = live / f"..2026_01_01_00_00_{i:02d}.0"
                new.mkdir()
                for src, name in ((cert, "tls.crt"), (key, "tls.key")):
                    (new / name).write_bytes(src.read_bytes())
                os.symlink(new.name, live / "..data_tmp")
                os.rename(live / "..data_tmp", live / "..data")
            else:
                for src, name in ((key, "tls.key"), (cert, "tls.crt")):
                    tmp = live / f"{name}.new"
                    tmp.write_bytes(src.read_bytes())
                    os.rename(tmp, live / name)
        results = []
        for name, wrk in (("keep-alive", keep), ("new connection per request", fresh)):
            out, err = wrk.communicate(timeout=args.duration + 60)
            H.check_wrk(wrk, out, err)
            results.append((name, H.parse_wrk(out)))
        time.sleep(1)
        reloads = H.admin_series(server, "hotswap_tls_reloads_total")
        last = presented(addr)
        last_ok = same_cert(last, pairs[-1][0].read_text())
    finally:
        server.stop()
    print(f"{rotations} rotations via {args.via}, one every {args.interval:g} s, "
          f"under {args.duration} s of load (server CPU {H.SERVER_CPU}, wrk CPU {H.CLIENT_CPU})")
    failed = 0
    for name, r in results:
        print(f"  {name:27s} {r.requests:8d} requests  {r.rps:8.0f} req/s  p99 {r.p99_ms:6.2f} ms  "
              f"non-2xx {r.non_2xx}  socket errors {r.socket_errors}")
        failed += r.non_2xx + r.socket_errors
    print(f"  certificate reloads: {' '.join(reloads)}")
    print(f"  a new handshake now gets the last certificate: {last_ok}")
    print(f"  log: {server.log_path}")
    return 0 if failed == 0 and last_ok else 1


if __name__ == "__main__":
    sys.exit(main())
