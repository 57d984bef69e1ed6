#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target the guests need, builds
# the host and every test guest from source, runs all tests, then runs the benchmark harness in
# smoke mode (a few seconds per scenario; it proves the harness works and asserts no speed).
# Installs what the tests need and cannot build: Redis, from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
# The key-value tests run a real Redis on loopback (Debian's package; seconds to install).
if ! command -v redis-server >/dev/null; then
    echo "installing redis-server with apt-get (for the wasi:keyvalue Redis tests)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
cargo fmt --all --check
cargo test --workspace --locked
bench/run.sh --smoke --no-wasmtime
