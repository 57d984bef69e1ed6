#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target the guests need, then
# builds the host and every test guest from source and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
cargo fmt --all --check
cargo test --workspace --locked
