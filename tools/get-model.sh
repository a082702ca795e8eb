#!/bin/bash
# Prints the path of a TAEF2 model folder (taef2_encoder.safetensors +
# taef2_decoder.safetensors): the copy in ../shared/testdata/models/taef2
# when it is there, else a download from Hugging Face into
# ${XDG_CACHE_HOME:-~/.cache}/gst-vae/taef2 (needs curl).
#
#   tools/get-model.sh            -> /path/to/taef2
#   TAEF2_URL=<base url> tools/get-model.sh   (another mirror)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_copy="$root/../shared/testdata/models/taef2"
if [ -f "$local_copy/taef2_encoder.safetensors" ] && [ -f "$local_copy/taef2_decoder.safetensors" ]; then
  (cd "$local_copy" && pwd)
  exit 0
fi

base=${TAEF2_URL:-https://huggingface.co/madebyollin/taef2/resolve/main}
dest="${XDG_CACHE_HOME:-$HOME/.cache}/gst-vae/taef2"
mkdir -p "$dest"
for part in encoder decoder; do
  file="taef2_$part.safetensors"
  if [ ! -s "$dest/$file" ]; then
    echo "get-model: downloading $base/$file" >&2
    if ! curl -fL --retry 3 -o "$dest/$file.part" "$base/$file"; then
      rm -f "$dest/$file.part"
      echo "get-model: cannot download $base/$file (set TAEF2_URL to another location)" >&2
      exit 1
    fi
    mv "$dest/$file.part" "$dest/$file"
  fi
done
echo "$dest"
