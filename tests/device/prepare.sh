#!/usr/bin/env bash
# Prepare, on the development machine, what tests/device/run.sh needs on a GPU
# machine that cannot reach any registry, and check it fits the device tool's
# 64 MiB limit for the working tree plus carried paths:
#   .deps/       Debian 12 GLib, json-glib, libpng, pkgconf (../shared/device/pack-deps.sh)
#   .testdata/   ../shared/testdata/{models,reference} (the golden test and TAEF2)
# Both are gitignored, so they travel only when named in `carry`.
# The SD-size random weights (tests/bench/weights/sd-vae-random, ~320 MiB F32)
# do not fit: run.sh writes them there with the machine's own torch.
#
#   tests/device/prepare.sh [--force]      (--force: remake .deps and .testdata)
set -u
set -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
SHARED=${VAE_SHARED:-$ROOT/../shared}
LIMIT_MIB=64
force=0
[ "${1:-}" = --force ] && force=1

fail=0

# --- .deps: the libraries the GPU machine lacks -------------------------------
if [ $force = 1 ]; then rm -rf .deps; fi
if [ -f .deps/env.sh ]; then
  echo ".deps: already there ($(du -sh .deps | cut -f1)); --force remakes it"
else
  echo ".deps: unpacking Debian packages with $SHARED/device/pack-deps.sh"
  if ! bash "$SHARED/device/pack-deps.sh" .deps; then
    echo "error: pack-deps.sh failed" >&2; fail=1
  fi
fi
# Debian's -dev symlinks that point to absolute /lib/... paths (libz.so,
# libselinux.so, ...) would point into the GPU machine's own /lib: make them
# relative links into .deps when the target was unpacked there.
if [ -d .deps ]; then
  while IFS= read -r l; do
    t=$(readlink "$l")
    if [ -e ".deps$t" ]; then
      ln -sfn "$(realpath --relative-to="$(dirname "$l")" ".deps$t")" "$l"
    fi
  done < <(find .deps -type l -lname '/*')
fi
# sanity: the carried pkg-config finds everything the build asks for
if [ -f .deps/env.sh ]; then
  if ( source .deps/env.sh && pkg-config --exists glib-2.0 json-glib-1.0 libpng ); then
    echo ".deps: pkg-config from .deps finds glib-2.0, json-glib-1.0, libpng"
  else
    echo "error: .deps/env.sh does not give glib-2.0 json-glib-1.0 libpng" >&2; fail=1
  fi
fi

# --- .testdata: models and reference files ------------------------------------
if [ $force = 1 ]; then rm -rf .testdata; fi
if [ -d .testdata/reference ] && [ -d .testdata/models ]; then
  echo ".testdata: already there ($(du -sh .testdata | cut -f1))"
else
  if [ ! -d "$SHARED/testdata/reference" ]; then
    echo "error: no $SHARED/testdata/reference to copy" >&2; fail=1
  else
    mkdir -p .testdata
    cp -a "$SHARED/testdata/models" "$SHARED/testdata/reference" .testdata/ || fail=1
    cp -a "$SHARED/testdata/README.md" .testdata/ 2>/dev/null
    echo ".testdata: copied models/ and reference/ ($(du -sh .testdata | cut -f1))"
  fi
fi

# --- the ignore rules the carry relies on ----------------------------------------
for p in .deps .testdata; do
  git check-ignore -q "$p" || { echo "error: $p is not ignored by git (.gitignore)" >&2; fail=1; }
done

# --- size of what travels ----------------------------------------------------------
# tracked files + untracked files git does not ignore + the carried folders
tree_bytes=$( { git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null; } \
              | awk '{s += $1} END {print s + 0}')
deps_bytes=$(du -sb .deps 2>/dev/null | cut -f1); deps_bytes=${deps_bytes:-0}
td_bytes=$(du -sb .testdata 2>/dev/null | cut -f1); td_bytes=${td_bytes:-0}
total=$((tree_bytes + deps_bytes + td_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo
echo "what travels: working tree $(mib "$tree_bytes") + .deps $(mib "$deps_bytes") + .testdata $(mib "$td_bytes") = $(mib "$total") (limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "error: over the device tool's $LIMIT_MIB MiB limit" >&2; fail=1
fi
if [ -d tests/bench/weights/sd-vae-random ]; then
  echo "note: tests/bench/weights/sd-vae-random ($(du -sh tests/bench/weights/sd-vae-random | cut -f1)) stays here (ignored, not carried); run.sh writes it on the GPU machine"
fi

echo
echo "device tool call:"
echo "  run  command: bash tests/device/run.sh    carry: [\".deps\", \".testdata\"]    timeout_s: 480"
echo "dry run here first:"
echo "  bash tests/device/run.sh --dry-run"
exit $fail
