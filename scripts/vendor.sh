#!/usr/bin/env bash
# Re-creates vendor/ from the crates listed below: each vendored crate is a crate published on
# crates.io (its .crate file, checked against the sha256 here) plus one patch file,
# vendor/patches/<crate>-<version>.patch, so that moving to the next point release is a version
# bump here and a re-run, not a hand merge (vendor/README.md says what each patch does).
#
# Usage:
#   scripts/vendor.sh                  write vendor/<crate>-<version>/ for every crate below and
#                                      remove crate folders that are no longer listed
#   scripts/vendor.sh --check          build into a temporary directory and compare with vendor/;
#                                      exit 1 naming every file that differs
#   scripts/vendor.sh --update-patches write each patch anew from vendor/<crate>-<version>/ and
#                                      its pristine base (after editing a vendored crate)
#
# The .crate files are cached outside the repository, in
# ${HOTSWAP_VENDOR_CACHE:-$HOME/.cache/hotswap-vendor}: only the first run needs the network.
set -euo pipefail

# One line per vendored crate:
#   name  vendored-version  registry-version-it-is-made-from  sha256-of-that-.crate
# The two versions differ only for crates that upstream never published at the vendored
# version (their patch re-versions the last published source). The sha256 is the `cksum` of that
# version in the crates.io index (https://index.crates.io/<xx>/<yy>/<name>).
CRATES=(
    "cranelift-codegen 0.135.11 0.135.11 d88b15d1e66baf56ca818720083a0a2da977bd5f64753e230baf75b445e9198d"
    "wasmtime-internal-cranelift 48.0.11 48.0.11 32ed8e8f8dc058693c6257e732544a64038d329c2c14e433a9560fa1f20ea6b5"
    "wasmtime-environ 48.0.11 48.0.11 f25844ee95522f697b1fa2c5ed6c4fd6962e35388de10c1267b29967a9b0f46e"
    "wasmtime 48.0.11 48.0.11 3059629769d95e301589c3211149aa64f76e5792556e0b6dad5d45c9c62cb1d8"
    # Never published at 48.0.11 (crates.io answers 404): the 48.0.10 sources, re-versioned.
    "winch-codegen 48.0.11 48.0.10 5ac12e272a23d57398f324b0085be1188122c2d97beec74e7bc93af62bb7e9aa"
    "wasmtime-internal-wit-bindgen 48.0.11 48.0.10 5bc8a4ec2e822054d35c7e5ec800c4a33a3d4199a682a5114ce71e6f63e0de45"
)

cd "$(dirname "$0")/.."
root=$PWD
vendor=$root/vendor
patches=$vendor/patches
cache=${HOTSWAP_VENDOR_CACHE:-$HOME/.cache/hotswap-vendor}
# Files are created 0644 and folders 0755 whoever runs this, as git checks them out.
umask 022
# Sorting and diff output that do not depend on the locale.
export LC_ALL=C

mode=write
case "${1:-}" in
"") ;;
--check) mode=check ;;
--update-patches) mode=update ;;
*)
    echo "usage: scripts/vendor.sh [--check | --update-patches]" >&2
    exit 2
    ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/hotswap-vendor.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Prints the path of NAME-VERSION.crate in the cache, downloading it the first time; a file
# whose sha256 is not the one listed is deleted and is an error (a truncated download or a
# changed mirror must never become vendored source).
crate_file() {
    local name=$1 version=$2 sha=$3
    local file=$cache/$name-$version.crate
    if [[ ! -f $file ]]; then
        mkdir -p "$cache"
        echo "downloading $name $version" >&2
        # Into a temporary name first: an interrupted download never looks cached.
        curl -fsSL --retry 3 -o "$file.part" \
            "https://static.crates.io/crates/$name/$name-$version.crate"
        mv "$file.part" "$file"
    fi
    local actual
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    if [[ $actual != "$sha" ]]; then
        rm -f "$file"
        echo "error: $name-$version.crate has sha256 $actual, expected $sha (deleted it)" >&2
        return 1
    fi
    echo "$file"
}

# Extracts the registry copy of NAME at BASE into DIR/NAME-BASE as cargo would, without
# cargo's `.cargo-ok` marker (cargo writes it beside what it unpacks; it is no part of the
# crate).
extract() {
    local name=$1 base=$2 sha=$3 dir=$4
    local file
    file=$(crate_file "$name" "$base" "$sha")
    mkdir -p "$dir"
    # Owner and permissions from the umask, not from the archive, so every machine gets the
    # same modes.
    tar --no-same-owner --no-same-permissions -xzf "$file" -C "$dir"
    rm -f "$dir/$name-$base/.cargo-ok"
    [[ -d $dir/$name-$base ]] || {
        echo "error: $name-$base.crate has no $name-$base/ folder" >&2
        return 1
    }
}

# Builds vendor/NAME-VERSION as it should be into DIR/NAME-VERSION: the registry copy of BASE,
# patched.
build() {
    local name=$1 version=$2 base=$3 sha=$4 dir=$5
    local patch=$patches/$name-$version.patch
    extract "$name" "$base" "$sha" "$dir/base"
    mv "$dir/base/$name-$base" "$dir/$name-$version"
    [[ -f $patch ]] || {
        echo "error: no patch $patch (an empty file if the crate needs none)" >&2
        return 1
    }
    # No fuzz: a patch that no longer applies exactly is a port for a person to make, never a
    # guess. -E removes files the patch empties (deleted files; the patch has no timestamps to
    # say so otherwise). An empty patch is the crate as published. A patch that does not apply
    # leaves the copy as far as it got, with the rejected hunks in .rej files, and sets
    # `rejected` (returning non-zero would turn off `set -e` in the caller's condition).
    rejected=false
    if [[ -s $patch ]] &&
        ! patch -d "$dir/$name-$version" -p1 -E --fuzz=0 --batch --no-backup-if-mismatch \
            <"$patch" >"$dir/patch.log"; then
        rejected=true
        sed "s|^|  $name: |" "$dir/patch.log" >&2
    fi
    # None of the crates needs an execute bit and git records only that bit: none is set,
    # whatever the archive said.
    find "$dir/$name-$version" -type f -perm /111 -exec chmod a-x {} +
}

listed=()
status=0
for line in "${CRATES[@]}"; do
    read -r name version base sha <<<"$line"
    listed+=("$name-$version")
    case $mode in
    write)
        build "$name" "$version" "$base" "$sha" "$work/out"
        if $rejected; then
            rm -rf "$vendor/$name-$version"
            mv "$work/out/$name-$version" "$vendor/$name-$version"
            echo "vendor/$name-$version: written, but vendor/patches/$name-$version.patch does" \
                "not apply to $name $base: port its rejected hunks (the .rej files) into the" \
                "folder, delete the .rej files and run scripts/vendor.sh --update-patches" >&2
            status=1
            continue
        fi
        # Leave a crate that is already as it should be untouched: cargo rebuilds a path
        # dependency whose files have new modification times.
        if [[ -d $vendor/$name-$version ]] &&
            diff -rq "$vendor/$name-$version" "$work/out/$name-$version" >/dev/null; then
            echo "vendor/$name-$version: unchanged"
        else
            rm -rf "$vendor/$name-$version"
            mv "$work/out/$name-$version" "$vendor/$name-$version"
            echo "vendor/$name-$version: written"
        fi
        ;;
    check)
        build "$name" "$version" "$base" "$sha" "$work/out"
        if $rejected; then
            echo "vendor/patches/$name-$version.patch: does not apply to $name $base"
            status=1
            continue
        fi
        if [[ ! -d $vendor/$name-$version ]]; then
            echo "vendor/$name-$version: missing"
            status=1
            continue
        fi
        # diff exits 1 when the trees differ: report, and go on to the other crates.
        if ! differences=$(diff -rq "$vendor/$name-$version" "$work/out/$name-$version"); then
            [[ -n $differences ]] || exit 1 # diff itself failed (it said why)
            # Name the files as they are in the repository and as the script makes them.
            sed "s|$work/out/|(made) |g; s|$root/||g" <<<"$differences"
            status=1
        fi
        # git records the execute bit; the script makes none.
        while IFS= read -r -d '' f; do
            echo "${f#"$root"/}: executable, scripts/vendor.sh makes it 0644"
            status=1
        done < <(find "$vendor/$name-$version" -type f -perm /111 -print0)
        ;;
    update)
        [[ -d $vendor/$name-$version ]] || {
            echo "error: no vendor/$name-$version to make a patch from" >&2
            exit 1
        }
        extract "$name" "$base" "$sha" "$work/base"
        rm -rf "$work/a" "$work/b"
        mv "$work/base/$name-$base" "$work/a"
        cp -r "$vendor/$name-$version" "$work/b"
        # Paths a/… and b/… (patch -p1), no timestamps (the file depends only on the
        # contents); diff exits 1 when the trees differ, which is the usual case.
        (cd "$work" && diff -ruN a b) |
            sed -E 's/^(---|\+\+\+) ([^\t]*)\t.*$/\1 \2/' >"$work/new.patch" || [[ $? -le 1 ]]
        mkdir -p "$patches"
        if cmp -s "$work/new.patch" "$patches/$name-$version.patch"; then
            echo "vendor/patches/$name-$version.patch: unchanged"
        else
            mv "$work/new.patch" "$patches/$name-$version.patch"
            echo "vendor/patches/$name-$version.patch: written"
        fi
        rm -rf "$work/a" "$work/b" "$work/base"
        ;;
    esac
done

# Everything else in vendor/: the README, the patches, and nothing else; a crate folder or a
# patch that is no longer listed is removed by a write and is a difference for a check.
for entry in "$vendor"/* "$vendor"/.[!.]*; do
    [[ -e $entry ]] || continue
    entry=${entry#"$vendor"/}
    case $entry in
    README.md | patches) continue ;;
    esac
    if [[ " ${listed[*]} " == *" $entry "* ]]; then
        continue
    fi
    case $mode in
    write)
        rm -rf "${vendor:?}/$entry"
        echo "vendor/$entry: removed (not listed in scripts/vendor.sh)"
        ;;
    check)
        echo "vendor/$entry: not listed in scripts/vendor.sh"
        status=1
        ;;
    esac
done
for patch in "$patches"/*; do
    [[ -e $patch ]] || continue
    patch=${patch#"$patches"/}
    if [[ " ${listed[*]} " != *" ${patch%.patch} "* ]]; then
        case $mode in
        write | update)
            rm -f "${patches:?}/$patch"
            echo "vendor/patches/$patch: removed (not listed in scripts/vendor.sh)"
            ;;
        check)
            echo "vendor/patches/$patch: not listed in scripts/vendor.sh"
            status=1
            ;;
        esac
    fi
done

# A crate may carry its own .gitignore (wasmtime-environ's ignores its Cargo.lock): such files
# must be added with `git add -f`, or a fresh clone lacks them and the check fails there.
if [[ $mode == write ]] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    ignored=$(git -C "$root" ls-files --others --ignored --exclude-standard -- vendor)
    if [[ -n $ignored ]]; then
        echo "note: git ignores these vendored files; add them with git add -f:"
        echo "$ignored"
    fi
fi

if [[ $mode == check ]]; then
    if [[ $status -ne 0 ]]; then
        echo "vendor/ is not what scripts/vendor.sh makes (the differences are above)" >&2
    else
        echo "vendor/ is what scripts/vendor.sh makes (${#listed[@]} crates)"
    fi
fi
exit $status
