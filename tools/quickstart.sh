#!/bin/bash
# From a fresh Debian 12 machine to latents and decoded frames: installs the
# build dependencies (GStreamer included), builds gst-vae, encodes and decodes
# an image with vae-tool and TAEF2 (the real tiny autoencoder for FLUX.2
# latents) on the CPU engine, then runs real GStreamer pipelines: a 2-second
# test clip to a latent file (vaeencode ! safetensorsmux) and that file back
# to PNG frames (safetensorsdemux ! vaedecode).
#
#   tools/quickstart.sh [IMAGE.png]
#
# IMAGE defaults to ../shared/testdata/images/astronaut.png.  The model comes
# from ../shared/testdata/models/taef2 when present, else from Hugging Face
# (tools/get-model.sh).  Outputs go to $BUILD_DIR/quickstart/ (BUILD_DIR
# defaults to build).  QUICKSTART_SKIP_APT=1 skips apt-get.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
image=${1:-$root/../shared/testdata/images/astronaut.png}

if [ "${QUICKSTART_SKIP_APT:-0}" != 1 ]; then
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update || echo "quickstart: apt-get update failed; trying the package lists we have" >&2
  # Everything the product needs (cpu engine, remote engine, vae-server,
  # the plugin, tests and examples): the list CI installs, less its
  # sanitizer toolchain.
  mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]//g' tools/debian-packages.txt)
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
fi

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build"
elif [ ! -e "$build/gst/vae" ] && pkg-config --exists gstreamer-1.0 gstreamer-video-1.0 2>/dev/null; then
  # configured before GStreamer was installed: pick it up now
  meson setup --reconfigure "$build"
fi
ninja -C "$build"

if [ ! -f "$image" ]; then
  echo "quickstart: no image at $image; pass one: tools/quickstart.sh IMAGE.png" >&2
  exit 1
fi
model=$(tools/get-model.sh)
out="$build/quickstart"
mkdir -p "$out"
name=$(basename "${image%.*}")
tool="$build/tools/vae-tool"

set -x
"$tool" info --model "$model"
"$tool" encode --model "$model" --input "$image" --output "$out/$name.safetensors"
"$tool" decode --model "$model" --input "$out/$name.safetensors" --output "$out/$name-decoded.png"
{ set +x; } 2>/dev/null
echo "quickstart: latents in $out/$name.safetensors, decoded image in $out/$name-decoded.png"

# ---- the GStreamer elements: a clip to latents and back ----
plugin_dir="$build/gst/vae"
if [ ! -f "$plugin_dir/libgstvae.so" ]; then
  echo "quickstart: no GStreamer plugin in $plugin_dir (GStreamer development packages missing?); skipping the pipelines" >&2
  exit 0
fi
case $plugin_dir in /*) plugin_abs=$plugin_dir ;; *) plugin_abs=$root/$plugin_dir ;; esac
export GST_PLUGIN_PATH="$plugin_abs${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
if ! gst-inspect-1.0 vaeencode >/dev/null 2>&1; then
  echo "quickstart: $plugin_dir/libgstvae.so does not provide vaeencode; skipping the pipelines" >&2
  exit 1
fi
rm -f "$out"/preview_*.png
set -x
gst-launch-1.0 videotestsrc num-buffers=24 pattern=smpte \
  ! video/x-raw,width=256,height=256,framerate=12/1 \
  ! vaeencode model="$model" batch-size=4 \
  ! safetensorsmux ! filesink location="$out/clip.safetensors"
gst-launch-1.0 filesrc location="$out/clip.safetensors" ! safetensorsdemux \
  ! vaedecode model="$model" ! videoconvert ! pngenc snapshot=false \
  ! multifilesink location="$out/preview_%03d.png"
{ set +x; } 2>/dev/null
frames=$(find "$out" -maxdepth 1 -name 'preview_*.png' | wc -l)
echo "quickstart: 24 frames of a test clip -> latents in $out/clip.safetensors ($(stat -c %s "$out/clip.safetensors") bytes)"
echo "quickstart: decoded back to $frames PNG frames: $out/preview_000.png ... $out/preview_$(printf %03d $((frames - 1))).png"
echo "quickstart: run your own pipelines with GST_PLUGIN_PATH=$plugin_dir (see README.md, GStreamer pipelines)"
