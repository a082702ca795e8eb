#!/bin/sh
# Builds the safetensors fuzz target with clang, ASan and UBSan, and runs it.
#
#   tests/fuzz/run-fuzz.sh [SECONDS [BUILD_DIR]]
#
# SECONDS defaults to 60, BUILD_DIR to build-fuzz beside the sources.  The
# seed corpus is copied, so the checked-in one is never modified.  Crash
# inputs land in BUILD_DIR/fuzz-artifacts/; the script exits non-zero if the
# fuzzer found one (crash, leak, timeout or out-of-memory).
set -eu

seconds=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$src/build-fuzz}
fuzz_dir=$src/tests/fuzz

case $seconds in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS [BUILD_DIR]]" >&2; exit 2 ;;
esac

if [ ! -f "$build/build.ninja" ]; then
  CC=${CC:-clang-14} meson setup "$build" "$src" \
    -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false -Dtests=enabled
fi
ninja -C "$build" tests/fuzz/fuzz-safetensors

work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-safetensors.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/corpus"
cp "$fuzz_dir"/corpus/* "$work/corpus/"
artifacts=$build/fuzz-artifacts
rm -rf "$artifacts"
mkdir -p "$artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

status=0
"$build/tests/fuzz/fuzz-safetensors" \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -dict="$fuzz_dir/safetensors.dict" \
  -artifact_prefix="$artifacts/" \
  "$work/corpus" || status=$?

found=$(find "$artifacts" -type f | head -n 20)
if [ "$status" -ne 0 ] || [ -n "$found" ]; then
  echo "run-fuzz.sh: the fuzzer failed (exit status $status); inputs:" >&2
  [ -n "$found" ] && echo "$found" >&2
  [ "$status" -ne 0 ] || status=1
  exit "$status"
fi
echo "run-fuzz.sh: no crash in $seconds s"
