#!/bin/bash
# examples/dataset_builder.py end to end: two tiny AVI clips and a folder of
# numbered PNGs -> latent files + manifest; a second run skips them all; a
# deleted latent file and a leftover .tmp are redone; a broken clip fails
# alone (exit 1) while the others are done.
#
#   test-dataset-builder.sh PATH/TO/dataset_builder.py
# Environment: VAE_TESTDATA (models/taef2 inside), GST_PLUGIN_PATH.
set -euo pipefail

builder=${1:?usage: test-dataset-builder.sh dataset_builder.py}
model="${VAE_TESTDATA:-}/models/taef2"
if [ -z "${VAE_TESTDATA:-}" ] || [ ! -f "$model/taef2_encoder.safetensors" ]; then
  echo "SKIP: no TAEF2 model at '$model' (set VAE_TESTDATA to ../shared/testdata)"
  exit 77
fi
# shellcheck source=../asan-preload.sh
. "$(dirname "$0")/../asan-preload.sh"
vae_asan_preload "${GST_PLUGIN_PATH:?GST_PLUGIN_PATH must name the plugin build folder}"
python=/usr/bin/python3
if ! $python -c 'import gi; gi.require_version("Gst", "1.0"); from gi.repository import Gst' 2>/dev/null; then
  echo "FAIL: python3-gst-1.0 (PyGObject + GStreamer) is not installed"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
in="$work/in"; out="$work/out"
mkdir -p "$in/sub" "$in/seq"

# Raw video in AVI: decodebin needs no extra codecs for it.
gst-launch-1.0 -q videotestsrc num-buffers=12 \
  ! video/x-raw,width=128,height=96,framerate=12/1 ! videoconvert ! avimux \
  ! filesink location="$in/clip1.avi"
gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=ball \
  ! video/x-raw,width=128,height=96,framerate=12/1 ! videoconvert ! avimux \
  ! filesink location="$in/sub/clip2.avi"
gst-launch-1.0 -q videotestsrc num-buffers=5 pattern=snow \
  ! video/x-raw,width=64,height=48 ! pngenc ! multifilesink location="$in/seq/f%03d.png"

run() {   # run EXPECTED_STATUS ARGS...
  local want=$1 rc=0
  shift
  echo "+ dataset_builder.py $*"
  $python "$builder" --model "$model" --input "$in" --output "$out" --batch-size 4 \
    --backend cpu "$@" 2>"$work/stderr" || rc=$?
  cat "$work/stderr"
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: exit status $rc, expected $want"
    exit 1
  fi
}

# check: manifest and latent files; prints the clips in the manifest
check() {
  $python - "$out" "$@" <<'PY'
import json, os, struct, sys
out = sys.argv[1]
expect = {  # clip -> (latent file, frames, width, height)
    "clip1.avi": ("clip1.safetensors", 12, 64, 64),
    "sub/clip2.avi": ("sub/clip2.safetensors", 12, 64, 64),
    "seq": ("seq.safetensors", 5, 64, 64),
}
lines = [json.loads(l) for l in open(os.path.join(out, "manifest.jsonl")) if l.strip()]
by_clip = {}
for e in lines:
    assert e["clip"] not in by_clip, f"clip listed twice: {e['clip']}"
    by_clip[e["clip"]] = e
want = set(sys.argv[2:])
assert set(by_clip) == want, f"manifest lists {sorted(by_clip)}, expected {sorted(want)}"
for clip, e in by_clip.items():
    lat, frames, w, h = expect[clip]
    assert e["latents"] == lat, e
    assert e["frames"] == frames, e
    assert (e["width"], e["height"]) == (w, h), e
    assert e["model"].rstrip("/").endswith("taef2"), e
    assert isinstance(e["seconds"], (int, float)) and e["seconds"] >= 0, e
    path = os.path.join(out, lat)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        size = os.fstat(f.fileno()).st_size
    lt, pts = header["latents"], header["pts"]
    T, C, lh, lw = lt["shape"]
    assert T == frames and (lh, lw) == (h // 8, w // 8), (clip, lt)
    assert e["latent_shape"] == [T, C, lh, lw], (e, lt)
    assert lt["dtype"] == "F32", lt
    assert pts["dtype"] == "I64" and pts["shape"] == [frames], pts
    meta = header.get("__metadata__", {})
    assert int(meta["width"]) == w and int(meta["height"]) == h, meta
    a, b = lt["data_offsets"]
    assert b - a == T * C * lh * lw * 4 and 8 + n + b <= size, (lt, size)
    print(f"ok {clip}: {lat} latents {lt['shape']} pts {pts['shape']} metadata {sorted(meta)}")
tmps = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
assert not tmps, f"leftover temporary files: {tmps}"
PY
}

echo "== first run: 3 clips, 2 pipelines at a time, scaled to 64x64"
run 0 --jobs 2 --width 64 --height 64
grep -q "3 clips in .*: 0 already done, 3 to encode" "$work/stderr"
check clip1.avi sub/clip2.avi seq

echo "== second run: everything is done already"
before=$(stat -c %Y "$out/clip1.safetensors")
run 0 --jobs 2 --width 64 --height 64
grep -q "3 already done, 0 to encode" "$work/stderr"
[ "$(stat -c %Y "$out/clip1.safetensors")" = "$before" ]
check clip1.avi sub/clip2.avi seq

echo "== resume: a deleted latent file and a crashed run's .tmp are redone"
rm "$out/sub/clip2.safetensors"
echo garbage > "$out/sub/clip2.safetensors.tmp"
run 0 --jobs 1 --width 64 --height 64
grep -q "2 already done, 1 to encode" "$work/stderr"
check clip1.avi sub/clip2.avi seq

echo "== a broken clip fails on its own; the others are done, exit status 1"
head -c 3000 "$in/clip1.avi" > "$in/broken.avi"
echo "not a video" > "$in/empty.avi"
rm "$out/clip1.safetensors"
run 1 --jobs 2 --width 64 --height 64
grep -q "FAILED broken.avi" "$work/stderr"
grep -q "FAILED empty.avi" "$work/stderr"
check clip1.avi sub/clip2.avi seq
[ ! -e "$out/broken.safetensors" ] && [ ! -e "$out/broken.safetensors.tmp" ]

echo "PASS"
