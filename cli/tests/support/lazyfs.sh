#!/usr/bin/env bash
# Installs what LazyFS needs (Debian packages) and builds it once into OUT_DIR; prints the path of
# the lazyfs binary. The power-loss test (cli/tests/power_loss.rs) runs it; so can a person.
#
#   cli/tests/support/lazyfs.sh OUT_DIR
#
# LazyFS's source and its offline build script come from the workplace's shared folder
# (../shared/lazyfs beside the repository, see its README), or from $ALLOT_LAZYFS_SRC.
set -euo pipefail

out=${1:?usage: lazyfs.sh OUT_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

binary="$out/lazyfs/build/lazyfs"
# Written last: a build cut short is started again rather than taken for a finished one.
done_marker="$out/.built"
if [[ -f "$done_marker" && -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

src=""
for candidate in "${ALLOT_LAZYFS_SRC:-}" "$repo/../shared/lazyfs" /work/shared/lazyfs; do
    if [[ -n "$candidate" && -x "$candidate/build.sh" ]]; then
        src=$candidate
        break
    fi
done
if [[ -z "$src" ]]; then
    echo "error: LazyFS's source not found: set ALLOT_LAZYFS_SRC to its folder (with build.sh)" >&2
    exit 1
fi

packages=(cmake g++ fuse3 libfuse3-dev libspdlog-dev libtoml11-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]} > 0)); then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package lists of a fresh machine may be stale: refresh them once if the install fails.
    apt-get install -y -q "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi

# The binary finds its library by the absolute path it was built at: build in place.
rm -rf "$out"
built=$("$src/build.sh" "$out" | tail -n 1)
[[ "$built" == "$binary" && -x "$binary" ]] ||
    { echo "error: the LazyFS build did not give $binary (it printed: $built)" >&2; exit 1; }
touch "$done_marker"
echo "$binary"
