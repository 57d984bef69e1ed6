#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target the guests need, builds
# the host and every test guest from source, runs all tests, then runs the benchmark harness in
# smoke mode (a few seconds per scenario; it proves the harness works and asserts no speed).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
cargo fmt --all --check
cargo test --workspace --locked
bench/run.sh --smoke --no-wasmtime
