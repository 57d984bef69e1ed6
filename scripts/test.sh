#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target the guests need, builds
# the host and every test guest from source, runs all tests, then runs the benchmark harness in
# smoke mode (a few seconds per scenario; it proves the harness works and asserts no speed).
# Installs what the tests need and cannot build: Redis and an OCI registry from Debian's
# packages, oras from PyPI, and the compatibility suite's toolchains (tests/compat/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
# The vendored wasmtime crates are their crates.io versions plus vendor/patches: vendor/ must be
# exactly what scripts/vendor.sh makes of them, or the tree builds code no patch describes. The
# first run downloads the .crate files (a few MB, cached in ~/.cache/hotswap-vendor).
scripts/vendor.sh --check
# Real peers the tests run on loopback, from Debian's packages (seconds to install): Redis for
# the wasi:keyvalue tests, an OCI registry (CNCF distribution) and htpasswd for the registry
# tests; and oras (PyPI) to push to it. Headless Chromium and chromedriver for the live-reload
# test that watches a real page follow the code (tests/support/browser.rs).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# apt starts packaged services where it can; the tests start their own on free ports.
if ! python3 -c 'import oras.client' 2>/dev/null; then
    echo "installing oras (PyPI) for the registry tests"
    python3 -m pip install -q oras
fi
cargo fmt --all --check
# The compatibility suite's guests, built by real third-party toolchains (wstd, Spin's SDK for
# WASI 0.2 and 0.3, componentize-py, componentize-js) fetched from crates.io, PyPI and npm and
# cached in ~/.cache/hotswap-tools (about 4 minutes the first time, seconds after).
target_dir="${CARGO_TARGET_DIR:-target}"
tests/compat/build.sh "$target_dir/compat"
export HOTSWAP_COMPAT_DIR="$PWD/$target_dir/compat"
[[ $target_dir == /* ]] && export HOTSWAP_COMPAT_DIR="$target_dir/compat"
cargo test --workspace --locked
# Timing-sensitive tests and the compatibility suite (ignored above), one at a time with
# nothing else running.
cargo test --locked -p hotswap-tests --test e2e -- --ignored --test-threads=1
# The whole e2e suite again (the compatibility guests too) with every component compiled by
# Winch: `HOTSWAP_TIER=fast` is the environment twin of `--tier fast`. The fast tier must keep
# every guarantee; the tests that are about one tier name it with `--tier`, which beats it.
HOTSWAP_TIER=fast cargo test --locked -p hotswap-tests --test e2e
HOTSWAP_TIER=fast cargo test --locked -p hotswap-tests --test e2e compat -- --ignored --test-threads=1
bench/run.sh --smoke --no-wasmtime
