#!/bin/bash
# From a fresh Debian 12 machine to a decoded image: installs the build
# dependencies, builds gst-vae, then encodes and decodes an image with TAEF2
# (the real tiny autoencoder for FLUX.2 latents) on the CPU engine.
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
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev libjson-glib-dev \
    libdnnl-dev libpng-dev python3 python3-numpy curl ca-certificates
fi

[ -f "$build/build.ninja" ] || meson setup "$build"
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
