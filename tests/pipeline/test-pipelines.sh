#!/bin/bash
# gst-vae pipeline tests: the issue's launch lines, run with gst-launch-1.0
# against the plugin in the build tree, their outputs checked with
# /usr/bin/python3 + numpy (tests/pipeline/pipeline_check.py).
#
#   test-pipelines.sh PLUGIN_DIR
#
# Environment: VAE_TESTDATA (the ../shared/testdata folder; missing = skip,
# exit 77), KEEP_WORKDIR=1 keeps the scratch folder, GST_LAUNCH_TIMEOUT
# (seconds a pipeline may run, default 300).
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
plugin_dir=${1:-${GST_VAE_PLUGIN_DIR:-}}
py=/usr/bin/python3
check="$py $here/pipeline_check.py"
timeout_s=${GST_LAUNCH_TIMEOUT:-300}

skip() {
  echo "######################################################################"
  echo "## SKIP: $*"
  echo "######################################################################"
  exit 77
}

if [ -z "${VAE_TESTDATA:-}" ] || [ ! -d "${VAE_TESTDATA}/models" ] || [ ! -d "${VAE_TESTDATA}/images" ]; then
  skip "VAE_TESTDATA ('${VAE_TESTDATA:-}') is not a test data folder (models/, images/, reference/): the pipeline tests did not run"
fi
if [ -z "$plugin_dir" ] || [ ! -d "$plugin_dir" ]; then
  echo "FAIL: no plugin folder (pass it as the first argument)"; exit 1
fi
if ! "$py" -c 'import numpy' 2>/dev/null; then
  skip "$py has no numpy (Debian: apt-get install python3-numpy)"
fi
for tool in gst-launch-1.0 gst-inspect-1.0; do
  command -v "$tool" >/dev/null || skip "$tool not found (Debian: gstreamer1.0-tools)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/gst-vae-pipelines.XXXXXX")
cleanup() {
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

plugin_dir=$(cd "$plugin_dir" && pwd)
export GST_PLUGIN_PATH="$plugin_dir"
# a registry of our own, so a stale user registry cannot hide the plugin
export GST_REGISTRY="$work/registry.bin"
export GST_DEBUG_NO_COLOR=1
# shellcheck source=../asan-preload.sh
. "$(dirname "$0")/../asan-preload.sh"
vae_asan_preload "$plugin_dir"

failures=0
passes=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; passes=$((passes + 1)); }

# run_launch LOG ARGS...: runs gst-launch-1.0 ARGS in $work; prints the
# command and, on failure, its output.
run_launch() {
  local log=$1; shift
  echo "+ gst-launch-1.0 $*"
  if (cd "$work" && timeout "$timeout_s" gst-launch-1.0 "$@") >"$log" 2>&1; then
    return 0
  else
    local rc=$?
    echo "  gst-launch-1.0 exited with $rc; its output:"
    sed 's/^/  | /' "$log" | tail -40
    return 1
  fi
}

for e in vaeencode vaedecode safetensorsmux safetensorsdemux; do
  if ! gst-inspect-1.0 "$e" >/dev/null 2>&1; then
    echo "FAIL: element $e not found in $plugin_dir:"
    gst-inspect-1.0 "$plugin_dir/libgstvae.so" 2>&1 | tail -5
    exit 1
  fi
done

M=$VAE_TESTDATA/models/taef2
[ -d "$M" ] || skip "$M is missing"

# ---- 1 + 2: every real image through file latents and back (taef2) ----
for img in "$VAE_TESTDATA"/images/*.png; do
  name=$(basename "$img" .png)
  echo; echo "== $name: encode to a latent file, decode it back to a PNG"
  cp "$img" "$work/in.png"
  rm -f "$work/z.safetensors" "$work/out.png"
  read -r W H < <($py -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print(*struct.unpack('>II', d[16:24]))" "$img")
  if run_launch "$work/p1.log" filesrc location=in.png ! pngdec ! videoconvert ! vaeencode model="$M" ! safetensorsmux ! filesink location=z.safetensors \
     && $check latents-shape "$work/z.safetensors" 32 "$W" "$H" 8; then
    pass "$name: pipeline 1 (z.safetensors latents [1,32,h,w])"
    if run_launch "$work/p2.log" filesrc location=z.safetensors ! safetensorsdemux ! vaedecode model="$M" ! videoconvert ! pngenc ! filesink location=out.png \
       && $check png-size "$work/out.png" "$W" "$H"; then
      pass "$name: pipeline 2 (out.png ${W}x${H})"
    else
      fail "$name: pipeline 2"
    fi
  else
    fail "$name: pipeline 1"
  fi
done

# ---- 3: a clip of 7 PNGs at 6 fps, batch-size 5 (the last batch partial) ----
echo; echo "== clip: 7 PNGs, batch-size 5 vs batch-size 1"
if run_launch "$work/clipsrc.log" videotestsrc num-buffers=7 pattern=ball ! video/x-raw,width=64,height=48 ! pngenc ! multifilesink location=f%03d.png; then
  n_png=$(ls "$work"/f[0-9][0-9][0-9].png | wc -l)
  echo "  $n_png PNGs written"
  if run_launch "$work/p3.log" multifilesrc location=f%03d.png caps=image/png,framerate=6/1 ! pngdec ! videoconvert ! vaeencode model="$M" batch-size=5 ! safetensorsmux ! filesink location=clip.safetensors \
     && $check clip "$work/clip.safetensors" "$n_png" 6 1; then
    pass "pipeline 3 (clip.safetensors: $n_png frames, pts 1/6 s apart)"
    if run_launch "$work/p3b.log" multifilesrc location=f%03d.png caps=image/png,framerate=6/1 ! pngdec ! videoconvert ! vaeencode model="$M" batch-size=1 ! safetensorsmux ! filesink location=clip1.safetensors \
       && $check same-latents "$work/clip.safetensors" "$work/clip1.safetensors"; then
      pass "batch-size 5 and batch-size 1 give the same latents"
    else
      fail "batched vs unbatched"
    fi
  else
    fail "pipeline 3"
  fi
else
  fail "making the clip's PNGs"
fi

# ---- 4: encode + decode straight through, to the screen when there is one ----
echo; echo "== videotestsrc -> vaeencode -> vaedecode -> display"
if [ -n "${DISPLAY:-}" ]; then
  sink=autovideosink
  echo "  DISPLAY=$DISPLAY: using autovideosink"
else
  sink=fakesink
  echo "  no DISPLAY: running the same pipeline with fakesink instead of autovideosink"
fi
if run_launch "$work/p4.log" videotestsrc num-buffers=60 ! vaeencode model="$M" ! vaedecode model="$M" ! videoconvert ! $sink; then
  pass "pipeline 4 ($sink)"
else
  fail "pipeline 4 ($sink)"
fi

# ---- golden: every reference whose model folder exists and whose size is a multiple of 8 ----
n_golden=0
for ref in "$VAE_TESTDATA"/reference/*.safetensors; do
  [ -e "$ref" ] || continue
  base=$(basename "$ref" .safetensors)
  model=${base%%__*}
  size=${base##*_}
  rw=${size%x*}; rh=${size#*x}
  if [ ! -d "$VAE_TESTDATA/models/$model" ]; then
    echo "(golden: $base skipped: no model folder $model)"; continue
  fi
  if [ $((rw % 8)) -ne 0 ] || [ $((rh % 8)) -ne 0 ]; then
    echo "(golden: $base skipped: ${rw}x${rh} is not a multiple of 8)"; continue
  fi
  echo; echo "== golden: $base"
  n_golden=$((n_golden + 1))
  GM=$VAE_TESTDATA/models/$model
  rm -f "$work/in.png" "$work/z.safetensors" "$work/out.png"
  $check ref-png "$ref" "$work/in.png" >/dev/null || { fail "$base: writing in.png"; continue; }
  if run_launch "$work/g1.log" filesrc location=in.png ! pngdec ! videoconvert ! vaeencode model="$GM" ! safetensorsmux ! filesink location=z.safetensors \
     && $check golden-latents "$work/z.safetensors" "$ref"; then
    pass "$base: latents"
  else
    fail "$base: latents"
    continue
  fi
  if run_launch "$work/g2.log" filesrc location=z.safetensors ! safetensorsdemux ! vaedecode model="$GM" ! videoconvert ! pngenc ! filesink location=out.png \
     && $check golden-decoded "$work/out.png" "$ref"; then
    pass "$base: decoded"
  else
    fail "$base: decoded"
  fi
done
[ "$n_golden" -gt 0 ] || fail "no golden reference was usable in $VAE_TESTDATA/reference"

echo
echo "pipeline tests: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
