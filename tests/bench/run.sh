#!/usr/bin/env bash
# Speed benchmark: build/tools/vae-tool vs the PyTorch peer, same weights,
# same sizes, OMP_NUM_THREADS threads each. All options go to bench.py:
#   --models sd,taef2 (or flux2, or a model path)  --ops encode,decode  --sizes 256x256,512x512
#   --runs R  --threads T  --vae-tool PATH  --only-torch  --precision bf16
# Examples:
#   tests/bench/run.sh --only-torch --sizes 256x256
#   tests/bench/run.sh --runs 1
#   tests/bench/run.sh --models flux2 --sizes 256x256   # FLUX.2 VAE, normalised latents
# Needs Debian's python3-torch / python3-numpy (/usr/bin/python3, override
# with PYTHON=...). The SD-size (FLUX.2-size) random weights are written on
# first use to tests/bench/weights/sd-vae-random (flux2-vae-random), gitignored.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
exec "$PYTHON" "$here/bench.py" --python "$PYTHON" "$@"
