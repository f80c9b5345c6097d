#!/usr/bin/env bash
# Install Theano's GPU backend (libgpuarray and pygpu 0.7.6) for network3's venv.
#
# Neither is on PyPI. Debian bookworm packages both, built for Python 3.11, so this script
# fetches those three .debs (checksums pinned), unpacks them into .gpu/ in the project
# (or $NETWORK3_GPU_HOME) -- never over / and without root -- installs pygpu's Python
# dependencies (mako, six) into the venv, and links the unversioned CUDA library names that
# libgpuarray opens (libcuda.so, libnvrtc.so, libcublas.so) into .gpu/lib when the host has
# only versioned ones. network3 --device cuda then finds everything by itself; for
# THEANO_FLAGS=device=cuda directly, `source .gpu/env.sh` first. Safe to run again.
#
# Usage: scripts/gpu_setup.sh [--offline DIR] [--download DIR] [--cuda-lib DIR]...
#   --offline DIR   take the .debs and wheels from DIR (a host without a package index)
#   --download DIR  only fetch the .debs and the mako/six wheels into DIR, for --offline
#   --cuda-lib DIR  also look in DIR for libcuda/libnvrtc/libcublas (repeatable)
# Environment: PYTHON (default .venv/bin/python), NETWORK3_GPU_HOME (default .gpu).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
GPU_HOME=${NETWORK3_GPU_HOME:-$ROOT/.gpu}
VERSION=0.7.6-13+b1
# package  SHA-256 of Debian bookworm's amd64 .deb
DEBS="libgpuarray3 1bfa4e635c8ab9139c910beb2d90c9e2614a70ec9edf5afbb0f263331220219b
libgpuarray-dev 48c86c46a812e4d4734889f09d13275e2dfa19f5814fd4c845f951a8077cbf0a
python3-pygpu 8657003207c37659cbb64104305b90ca91ef3b8828bb76ed5fd408f9630cefb0"
OFFLINE='' DOWNLOAD='' CUDA_DIRS=()

say() { echo "gpu_setup: $*"; }
die() { echo "gpu_setup: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --offline) OFFLINE=$(cd "${2:?--offline needs a directory}" && pwd); shift 2 ;;
        --download) mkdir -p "${2:?--download needs a directory}"
                    DOWNLOAD=$(cd "$2" && pwd); shift 2 ;;
        --cuda-lib) CUDA_DIRS+=("${2:?--cuda-lib needs a directory}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
cd "$ROOT"

[ "$(uname -m)" = x86_64 ] || die "the Debian packages are for x86-64; this is $(uname -m)"
[ -x "$PY" ] || die "no Python at $PY: make the venv first (README), or set PYTHON"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    die "$PY is not Python 3.11, which Debian's pygpu is built for (use a 3.11 venv)"

deb_file() { echo "${1}_${VERSION}_amd64.deb"; }

checksum_ok() {  # FILE SHA256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch_debs() {  # DIR: the three .debs, from DIR itself, --offline, apt or Debian's pool
    local dir=$1 name sum file source
    mkdir -p "$dir"
    while read -r name sum; do
        file=$(deb_file "$name")
        if checksum_ok "$dir/$file" "$sum"; then
            say "$file: already there"
            continue
        elif [ -n "$OFFLINE" ]; then
            [ -f "$OFFLINE/$file" ] || die "$OFFLINE/$file missing (make it with --download)"
            cp "$OFFLINE/$file" "$dir/"
            source="copied from $OFFLINE"
        elif command -v apt-get >/dev/null &&
             apt-cache show "$name=$VERSION" >/dev/null 2>&1; then
            # As root, apt drops to the _apt user, who cannot write here; stay root.
            (cd "$dir" && apt-get -q -o APT::Sandbox::User="$(id -un)" \
                download "$name=$VERSION" >/dev/null)
            source="downloaded with apt-get"
        else
            die "cannot get $file: apt here knows no Debian bookworm $name=$VERSION;" \
                "run this script with --download DIR on a Debian bookworm machine and" \
                "then here with --offline DIR"
        fi
        checksum_ok "$dir/$file" "$sum" || die "$dir/$file: SHA-256 is not $sum"
        say "$file: $source, SHA-256 verified"
    done <<< "$DEBS"
}

if [ -n "$DOWNLOAD" ]; then
    fetch_debs "$DOWNLOAD"
    "$PY" -m pip download -q -d "$DOWNLOAD" mako six
    say "wheels for mako and six in $DOWNLOAD"
    say "done: copy $DOWNLOAD to the GPU host and run scripts/gpu_setup.sh --offline DIR there"
    exit 0
fi

mkdir -p "$GPU_HOME"
echo '*' > "$GPU_HOME/.gitignore"  # never committed
fetch_debs "$GPU_HOME/debs"

# Unpack afresh each time: a new tree replaces the old one whole.
rm -rf "$GPU_HOME/root.new"
mkdir "$GPU_HOME/root.new"
while read -r name sum; do
    file=$GPU_HOME/debs/$(deb_file "$name")
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$file" "$GPU_HOME/root.new"
    else  # a .deb is an ar archive; bookworm's data member is data.tar.xz
        (cd "$GPU_HOME/root.new" && ar p "$file" data.tar.xz | tar -xJ)
    fi
done <<< "$DEBS"
rm -rf "$GPU_HOME/root"
mv "$GPU_HOME/root.new" "$GPU_HOME/root"
say "unpacked into $GPU_HOME/root"

mkdir -p "$GPU_HOME/lib"
ln -sfn ../root/usr/lib/libgpuarray.so.3 "$GPU_HOME/lib/libgpuarray.so.3"
ln -sfn ../root/usr/lib/libgpuarray.so.3 "$GPU_HOME/lib/libgpuarray.so"  # for -lgpuarray

if "$PY" -c 'import mako, six' 2>/dev/null; then
    say "mako and six: already in the venv"
elif [ -n "$OFFLINE" ]; then
    "$PY" -m pip install -q --no-index --find-links "$OFFLINE" mako six
    say "mako and six: installed into the venv from $OFFLINE"
else
    "$PY" -m pip install -q mako six
    say "mako and six: installed into the venv"
fi

# libgpuarray dlopens the unversioned names, which only CUDA's -dev packages provide. When
# the loader cannot find one, link the newest versioned file found into .gpu/lib.
loader_finds() {  # NAME: in LD_LIBRARY_PATH or ldconfig's cache?
    local d IFS=:
    for d in ${LD_LIBRARY_PATH:-}; do [ -e "$d/$1" ] && return 0; done
    ldconfig -p 2>/dev/null | grep "^[[:space:]]$1 " >/dev/null  # not -q: no SIGPIPE
}
search_dirs() {
    printf '%s\n' "${CUDA_DIRS[@]}" ${CUDA_HOME:+"$CUDA_HOME/lib64"} \
        /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
        /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib
    ldconfig -p 2>/dev/null | sed -n 's/.* => \(.*\)\/[^/]*$/\1/p' | sort -u
}
missing=()
for lib in libcuda.so libnvrtc.so libcublas.so; do
    if loader_finds "$lib"; then
        say "$lib: found by the loader"
        continue
    fi
    target=  # the newest version in the first directory that has one
    while read -r d; do
        target=$( (ls "$d/$lib" "$d/$lib".[0-9]* 2>/dev/null || true) | sort -V | tail -n 1)
        [ -n "$target" ] && break
    done < <(search_dirs)
    if [ -n "$target" ]; then
        ln -sfn "$(readlink -f "$target")" "$GPU_HOME/lib/$lib"
        say "$lib: linked $GPU_HOME/lib/$lib -> $(readlink -f "$target")"
    else
        missing+=("$lib")
        say "$lib: not on this machine (pass --cuda-lib DIR if it is somewhere else)"
    fi
done

THEANO_FLAGS=device=cpu "$PY" -m network3 gpu env > "$GPU_HOME/env.sh"
say "wrote $GPU_HOME/env.sh (source it to use THEANO_FLAGS=device=cuda without --device)"

# Smoke tests with the stack's paths: pygpu imports, and a Python extension including the
# headers that Theano's GPU ops include (in its order) builds and links with libgpuarray.
# shellcheck source=/dev/null
. "$GPU_HOME/env.sh"
imported=$("$PY" -c 'import pygpu; print("pygpu", pygpu.__version__, "imports from", pygpu.__file__)') ||
    die "pygpu does not import with the paths of $GPU_HOME/env.sh (error above)"
say "$imported"
includes=$("$PY" -c 'import sysconfig, numpy, pygpu
print(" ".join("-I" + d for d in (sysconfig.get_paths()["include"], numpy.get_include(),
                                  pygpu.get_include())))')
headers="gpuarray/array.h gpuarray/kernel.h gpuarray/error.h gpuarray/buffer.h
gpuarray/buffer_blas.h numpy/arrayobject.h gpuarray_api.h"
# shellcheck disable=SC2086
{ printf '#include <%s>\n' $headers; echo 'void check(GpuArray *a) { GpuArray_clear(a); }'; } |
    g++ -x c++ - -w -shared -fPIC $includes -lgpuarray -o "$GPU_HOME/compile_check.so" ||
    die "an extension using libgpuarray's headers does not build: Theano's GPU ops would not either"
rm -f "$GPU_HOME/compile_check.so"
say "Theano's C compiler finds libgpuarray's headers and library"

if [ ${#missing[@]} -gt 0 ]; then
    say "done; still missing for a GPU run: ${missing[*]} (NVIDIA driver / CUDA toolkit)"
else
    say "done"
fi
say "next: \`network3 gpu check\` says whether the GPU is usable; \`network3 train --device cuda\`"
