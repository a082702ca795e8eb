#!/bin/bash
# gst-vae: frames too large for memory end in an error, not in a process
# killed by a signal (issue 9).  Each case runs under an address-space limit
# (ulimit -v) with the cpu backend:
#   1. vaeencode model=taef2 on one 8192x8192 frame, untiled (about 50 GB of
#      activations): exactly one element error from vaeencode, naming
#      8192x8192 and tile-size; gst-launch-1.0 exits non-zero, not by signal;
#   2. a sparse 268 MB latent file (4 KB on disk) declaring F16
#      [1,32,2048,2048] through safetensorsdemux ! vaedecode (16384x16384
#      frames): the same, naming 16384x16384;
#   3. vae-tool decode of that file: exit status 1 and one line naming the
#      size and --tile-size;
#   4. the frame of case 1 with tile-size=512 gets past every allocation:
#      its tiles' oneDNN plan is built and runs (seen in oneDNN's verbose
#      output) with no error.  It is stopped there: the whole encode takes
#      far longer than a test may.
#
#   test-oom.sh PLUGIN_DIR VAE_TOOL
#
# Under ASan, ulimit -v cannot be used (the shadow memory alone reserves far
# more address space); ASan's own cap on one allocation
# (max_allocation_size_mb, with allocator_may_return_null=1) stands in for
# it, which makes the same allocations fail.  Environment: VAE_TESTDATA
# (missing = skip, exit 77), KEEP_WORKDIR=1 keeps the scratch folder.
set -u -o pipefail

plugin_dir=${1:-}
vae_tool=${2:-}

skip() {
  echo "######################################################################"
  echo "## SKIP: $*"
  echo "######################################################################"
  exit 77
}

M=${VAE_TESTDATA:-}/models/taef2
if [ -z "${VAE_TESTDATA:-}" ] || [ ! -d "$M" ]; then
  skip "VAE_TESTDATA ('${VAE_TESTDATA:-}') has no models/taef2: the out-of-memory tests did not run"
fi
if [ -z "$plugin_dir" ] || [ ! -d "$plugin_dir" ] || [ ! -x "$vae_tool" ]; then
  echo "FAIL: usage: test-oom.sh PLUGIN_DIR VAE_TOOL"; exit 1
fi
command -v gst-launch-1.0 >/dev/null || skip "gst-launch-1.0 not found (Debian: gstreamer1.0-tools)"

work=$(mktemp -d "${TMPDIR:-/tmp}/gst-vae-oom.XXXXXX")
cleanup() {
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

plugin_dir=$(cd "$plugin_dir" && pwd)
export GST_PLUGIN_PATH="$plugin_dir"
export GST_REGISTRY="$work/registry.bin"
export GST_DEBUG_NO_COLOR=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# shellcheck source=../asan-preload.sh
. "$(dirname "$0")/../asan-preload.sh"
vae_asan_preload "$plugin_dir"

# Limits (KiB).  Elements: 6 GiB, above what the streams' own buffers need
# (a 3.2 GB decoded frame, the latent file twice) and far below the engine's
# activations.  vae-tool: 10 GiB, so that it gets past its own 5.3 GB of
# frame buffers to the engine (under a lower limit it fails cleanly earlier).
elem_limit=6291456
tool_limit=10485760
# ASan is told by the binaries' NEEDED entries, as asan-preload.sh does.
is_asan() { readelf -d "$1" 2>/dev/null | grep -q 'Shared library: \[libasan'; }
asan=0
if is_asan "$plugin_dir/libgstvae.so" || is_asan "$vae_tool"; then
  asan=1
  echo "(ASan build: ulimit -v cannot be used; ASan's max_allocation_size_mb=2048 stands in for it)"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=2048"
fi

# limit_self KIB: the address-space limit (or ASan's cap) for the calling
# (sub)shell; 125 if it cannot be set.
limit_self() {
  if [ "$asan" = 0 ]; then ulimit -v "$1" || exit 125; fi
}

# limited KIB CMD...: CMD under limit_self KIB, in a subshell that becomes
# CMD.  In the foreground only: run in the background, the function itself
# is one more subshell, whose pid $! would be.
limited() {
  local kib=$1; shift
  ( limit_self "$kib"; exec "$@" )
}

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

took() { echo "  (${SECONDS}s since the start)"; }

# The registry is built outside the limit: some system plugins need more.
gst-inspect-1.0 vaeencode >/dev/null 2>&1 || { echo "FAIL: vaeencode not found in $plugin_dir"; exit 1; }

# check_error LOG RC ELEMENT SIZE: one error from ELEMENT naming SIZE and
# tile-size; RC non-zero and not a signal (128 + N; 124 is timeout's).
check_error() {
  local log=$1 rc=$2 element=$3 size=$4 n
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
    echo "  exit status $rc (0: no error; >= 124: timed out or killed by a signal)"
    sed 's/^/  | /' "$log" | tail -20
    return 1
  fi
  n=$(grep -c "^ERROR: from element .*:${element}[0-9]*: " "$log")
  if [ "$n" -ne 1 ] || ! grep -q "^ERROR: from element .*:${element}[0-9]*: .*${size}.*tile-size" "$log"; then
    echo "  expected one error from $element naming $size and tile-size, got $n:"
    sed 's/^/  | /' "$log" | tail -20
    return 1
  fi
  grep "^ERROR: from element .*:$element" "$log" | sed 's/^/  /'
  return 0
}

took; echo "== 1: vaeencode, one 8192x8192 frame, untiled"
limited "$elem_limit" timeout 120 gst-launch-1.0 videotestsrc num-buffers=1 \
  ! video/x-raw,width=8192,height=8192 ! vaeencode model="$M" backend=cpu ! fakesink \
  >"$work/enc.log" 2>&1
rc=$?
if check_error "$work/enc.log" "$rc" vaeencode 8192x8192; then
  pass "8192x8192 untiled: an element error, exit status $rc"
else
  fail "8192x8192 untiled"
fi

# [1,32,2048,2048] F16 latents: a JSON header, then 268 MB of zeros that the
# file system stores as a hole.
big="$work/big.safetensors"
header='{"latents":{"dtype":"F16","shape":[1,32,2048,2048],"data_offsets":[0,268435456]}}'
while [ $(( ${#header} % 8 )) -ne 0 ]; do header="$header "; done
printf '%b' "$(printf '\\x%02x' $(( ${#header} & 255 )) $(( ${#header} >> 8 )) 0 0 0 0 0 0)" >"$big"
printf '%s' "$header" >>"$big"
truncate -s $(( 8 + ${#header} + 268435456 )) "$big"

took; echo "== 2: safetensorsdemux ! vaedecode, F16 [1,32,2048,2048] (16384x16384 frames)"
limited "$elem_limit" timeout 120 gst-launch-1.0 filesrc location="$big" blocksize=1048576 \
  ! safetensorsdemux ! vaedecode model="$M" backend=cpu ! fakesink >"$work/dec.log" 2>&1
rc=$?
if check_error "$work/dec.log" "$rc" vaedecode 16384x16384; then
  pass "16384x16384 decode: an element error, exit status $rc"
else
  fail "16384x16384 decode"
fi

took; echo "== 3: vae-tool decode of the same file"
limited "$tool_limit" timeout 120 "$vae_tool" decode --model "$M" --input "$big" \
  --output "$work/out.png" >"$work/tool.log" 2>&1
rc=$?
sed 's/^/  | /' "$work/tool.log" | tail -5
if [ "$rc" -eq 1 ] && grep -q '^vae-tool: 16384x16384 frames: out of memory: .*--tile-size' "$work/tool.log" \
   && [ "$(grep -c '^vae-tool:' "$work/tool.log")" -eq 1 ]; then
  pass "vae-tool decode: exit status 1 with the size and --tile-size"
else
  fail "vae-tool decode: exit status $rc (expected 1 and 'vae-tool: 16384x16384 frames: out of memory: ... --tile-size')"
fi

took; echo "== 4: vaeencode, the 8192x8192 frame with tile-size=512"
# oneDNN prints a line for every primitive it runs (ONEDNN_VERBOSE, or
# DNNL_VERBOSE before 2.5): the first one means the tiles' plan was built
# within the limit and the encode is under way.
# One subshell that becomes timeout, so that $! is timeout's pid and the
# kill below reaches gst-launch-1.0 (through "limited ... &", $! was the
# function's own subshell: killing it left the encode running, orphaned,
# on both cores for up to a minute after this script ended).
( limit_self "$elem_limit"
  exec env ONEDNN_VERBOSE=1 DNNL_VERBOSE=1 timeout 60 gst-launch-1.0 \
    videotestsrc num-buffers=1 ! video/x-raw,width=8192,height=8192 \
    ! vaeencode model="$M" backend=cpu tile-size=512 ! fakesink ) >"$work/tiled.log" 2>&1 &
runner=$!
started=0 finished=
for _ in $(seq 1 40); do
  if grep -qE '^(onednn|dnnl)_verbose,exec,' "$work/tiled.log"; then started=1; break; fi
  if ! kill -0 "$runner" 2>/dev/null; then wait "$runner"; finished=$?; break; fi
  sleep 1
done
if [ -z "$finished" ]; then
  # Stop the encode (timeout passes the signal on to gst-launch-1.0).
  kill -TERM "$runner" 2>/dev/null
  wait "$runner"
fi
if grep -q '^ERROR' "$work/tiled.log"; then
  grep '^ERROR' "$work/tiled.log" | sed 's/^/  | /'
  fail "8192x8192 with tile-size=512: an error"
elif [ "$started" = 1 ] || [ "$finished" = 0 ]; then
  pass "8192x8192 with tile-size=512: the tiles run within the limit"
else
  sed 's/^/  | /' "$work/tiled.log" | grep -v '_verbose,' | tail -20
  fail "8192x8192 with tile-size=512: the tiles did not start within 40 s"
fi

took
if [ "$failures" -gt 0 ]; then
  echo "$failures out-of-memory check(s) failed"
  exit 1
fi
echo "all out-of-memory checks passed"
