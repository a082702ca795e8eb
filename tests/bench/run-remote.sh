#!/usr/bin/env bash
# Remote engine benchmark: vaeencode backend=remote (batch 8, 4 in flight)
# vs a one-frame-per-request client vs the engine alone, against vae-server
# on 127.0.0.1. All options go to remote_bench.py:
#   --cases taef2@64x64,taef2@256x256,sd@256x256  --rounds 3  --threads 2
#   --build build  --frames-scale 0.25
# Examples:
#   tests/bench/run-remote.sh
#   tests/bench/run-remote.sh --cases taef2@256x256 --rounds 1
# Needs a build with the remote engine and vae-server (libcurl, libsoup 3),
# Debian's python3-gi, python3-numpy, python3-requests (/usr/bin/python3,
# override with PYTHON=...); the sd case writes tests/bench/weights/sd-vae-random
# on first use (python3-torch).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
exec "$PYTHON" "$here/remote_bench.py" "$@"
