#!/usr/bin/env bash
# The CUDA engine's device check (issue 5), in one script for a GPU machine
# that has nvcc, cuDNN (e.g. in PyTorch's nvidia-cudnn wheel) and PyTorch but
# no GStreamer (and maybe no GLib/json-glib/libpng/pkg-config).
#
#   tests/device/run.sh [--dry-run]        (from anywhere; it cds to the repo root)
#
# Stages (each timed; a failing stage is recorded and the rest go on; the
# exit status is 1 when any stage failed):
#   env      find GLib & co (pkg-config, else $VAE_DEPS/env.sh), nvcc, cuDNN
#            (PyTorch's nvidia/cudnn wheel, else the toolkit's) and
#            cuBLAS/cudart; make symlink folders for what meson needs
#   weights  the SD-size random-weight model (tests/bench/make_weights.py with
#            this machine's torch; in the background, while building)
#   build    meson + ninja in build-device (CUDA engine only, sm_90)
#   kernels  build-device/tests/device/test-cuda-kernels, then its --bench
#   golden   test-golden with VAE_GOLDEN_BACKEND=cuda (fp32 and fp16 checks)
#   ours     vae-tool bench --backend cuda --precision f16 per case
#   torch    the PyTorch peer on the same GPU (tests/bench/torch_gpu_bench.py)
#   table    the markdown table (ours vs torch, ms/frame, peaks, TFLOP/s)
#
# Output: $OUT (the device tool sets it; default ./device-out): env.log,
# build.log, kernels.log, golden.log, bench.log, table.md, summary.txt
# (7 files: the device tool brings back at most 8).
#
# --dry-run (or VAE_DEVICE_DRY=1): the same plumbing on a machine without a
# GPU: builds with the local toolkit, runs the GPU stages (which fail or skip:
# reported as EXPECTED, not counted), and the torch peer on the CPU in
# float32 at tiny sizes. Catches script bugs before spending GPU minutes.
#
# Environment (all optional):
#   VAE_DEPS=.deps            Debian GLib/json-glib/libpng/pkgconf (shared/device/pack-deps.sh)
#   VAE_FORCE_DEPS=1          use $VAE_DEPS even when pkg-config finds the libraries
#   VAE_TESTDATA=.testdata    models/ and reference/ (tests/device/prepare.sh), else ../shared/testdata
#   VAE_BUILD_DIR=build-device
#   CUDA_HOME=/usr/local/cuda the toolkit (bin/nvcc)
#   VAE_CUDNN_DIR=DIR         cuDNN folder (lib/, maybe include/) instead of the search
#   VAE_GPU_ARCHS=90          -Dgpu_archs
#   VAE_SD_WEIGHTS=DIR        SD-size weights folder (default tests/bench/weights/sd-vae-random; made if missing)
#   PYTHON=python3            the python with torch (falls back to /usr/bin/python3)
#   VAE_OURS_TOOL, VAE_OURS_BACKEND=cuda, VAE_OURS_PRECISION=f16
#                             what "ours" runs (the dry run can point at a CPU build)
#   VAE_DEVICE_BUDGET_S=330   no torch case starts after this many seconds since the start,
#                             no vae-tool case after 90 s less (and none runs past 60 s after that)
#   VAE_BENCH_TIMEOUT=90      seconds per vae-tool bench case at most
# Time: about 4-5 minutes on a 16-core H100 machine; the timeouts and the
# budget above keep even a hanging engine under about 8 minutes.
#   VAE_TORCH_MODES=default,benchmark   cudnn.benchmark False and True columns
set -u
set -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

DRY=${VAE_DEVICE_DRY:-0}
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

OUT=${OUT:-$ROOT/device-out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
BUILD=${VAE_BUILD_DIR:-build-device}
# Symlink folders (cuDNN, maybe a merged toolkit) and bench scratch. Outside the
# source tree: meson 1.x refuses include folders given by an absolute path
# under the source root, the build tree included.
AUX=${VAE_AUX_DIR:-${TMPDIR:-/tmp}/gst-vae-device-$(printf '%s' "$ROOT/$BUILD" | md5sum | cut -c1-8)}
DEPS=${VAE_DEPS:-.deps}
TESTDATA=${VAE_TESTDATA:-.testdata}
CUDA=${CUDA_HOME:-/usr/local/cuda}
GPU_ARCHS=${VAE_GPU_ARCHS:-90}
BENCH_TIMEOUT=${VAE_BENCH_TIMEOUT:-90}
TORCH_MODES=${VAE_TORCH_MODES:-default,benchmark}
SD_WEIGHTS=${VAE_SD_WEIGHTS:-$ROOT/tests/bench/weights/sd-vae-random}
JOBS=$(nproc 2>/dev/null || echo 4)
NICE=()
if [ "$DRY" = 1 ]; then
  # shared 2-core machine: be gentle, and no time budget for the slow CPU build
  NICE=(nice -n 10)
  JOBS=2
  BUDGET=${VAE_DEVICE_BUDGET_S:-100000}
else
  BUDGET=${VAE_DEVICE_BUDGET_S:-330}
fi
OURS_DEADLINE=$((BUDGET - 90))   # leave the torch peer time in the budget
mkdir -p "$AUX" "$AUX/bench"
rm -f "$AUX"/bench/*
ORIG_LDP=${LD_LIBRARY_PATH:-}    # what python/torch runs with (not .deps' Debian libraries)

T0=$SECONDS
SUMMARY=()
ANY_FAILED=0
ts() { date -u +%H:%M:%S; }
stage_begin() {
  STAGE=$1; STAGE_T=$SECONDS
  echo
  echo "=== [$(ts) +$((SECONDS - T0))s] stage $1: $2"
}
# stage_end STATUS: ok | FAILED(...) | EXPECTED(...) (dry run only; not counted)
stage_end() {
  local st=$1 dt=$((SECONDS - STAGE_T))
  case $st in ok|EXPECTED*) ;; *) ANY_FAILED=1 ;; esac
  SUMMARY+=("$(printf '%-8s %4ds  %s' "$STAGE" "$dt" "$st")")
  echo "=== [$(ts) +$((SECONDS - T0))s] stage $STAGE: $st (${dt}s)"
}
# A GPU stage that failed: expected in a dry run (no GPU here).
gpu_fail() { if [ "$DRY" = 1 ]; then echo "EXPECTED(dry run, no GPU: $1)"; else echo "FAILED($1)"; fi; }
# Python with torch, with the environment it had before .deps/env.sh.
pyrun() { LD_LIBRARY_PATH=$ORIG_LDP "$PY" "$@"; }

echo "gst-vae device check $( [ "$DRY" = 1 ] && echo '(DRY RUN)') at $(date -u '+%Y-%m-%d %H:%M:%S') UTC in $ROOT"
if git rev-parse --short HEAD >/dev/null 2>&1; then
  echo "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' +local changes')"
fi
echo "output: $OUT; scratch: $AUX"

# ---------------------------------------------------------------------------
# env: libraries, python, nvcc, cuDNN, cuBLAS/cudart
# ---------------------------------------------------------------------------
stage_begin env "find GLib & co, python+torch, nvcc, cuDNN, cuBLAS/cudart"
ENVLOG=$OUT/env.log
: >"$ENVLOG"
env_err=""
note() { echo "$*" >>"$ENVLOG"; }

# Symlink every entry of folder $1 into folder $2 (made if missing) unless
# $2 already has that name.
link_all() {
  local f
  mkdir -p "$2"
  for f in "$1"/* ; do
    [ -e "$f" ] || continue
    [ -e "$2/$(basename "$f")" ] || ln -s "$f" "$2/$(basename "$f")"
  done
}
# The site-packages folders of $PY (the venv's nvidia/* wheels live there).
site_dirs() { pyrun -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null; }
# First file in the nvidia/* wheels matching a glob: wheel_find 'libcublas.so.*'
wheel_find() {
  local sp
  for sp in $(site_dirs); do
    [ -d "$sp/nvidia" ] || continue
    find "$sp/nvidia" -maxdepth 4 -name "$1" 2>/dev/null | sort | head -1 | grep . && return 0
  done
  return 1
}

{
  note "host: $(uname -srm), $(nproc) CPUs, $(date -u)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    note "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -2)"
  else
    note "nvidia-smi: not found"
  fi

  # --- GLib, json-glib, libpng, pkg-config -----------------------------------
  if [ "${VAE_FORCE_DEPS:-0}" != 1 ] && command -v pkg-config >/dev/null 2>&1 \
     && pkg-config --exists glib-2.0 json-glib-1.0 libpng 2>/dev/null; then
    note "libraries: system pkg-config (glib $(pkg-config --modversion glib-2.0), json-glib $(pkg-config --modversion json-glib-1.0), libpng $(pkg-config --modversion libpng))"
  elif [ -f "$DEPS/env.sh" ]; then
    # shellcheck disable=SC1090,SC1091
    source "$DEPS/env.sh"
    if pkg-config --exists glib-2.0 json-glib-1.0 libpng 2>>"$ENVLOG"; then
      note "libraries: $DEPS (glib $(pkg-config --modversion glib-2.0), json-glib $(pkg-config --modversion json-glib-1.0), libpng $(pkg-config --modversion libpng))"
    else
      env_err+=" $DEPS/env.sh sourced but pkg-config still lacks glib-2.0/json-glib-1.0/libpng;"
    fi
  else
    env_err+=" no glib-2.0/json-glib-1.0/libpng via pkg-config and no $DEPS/env.sh (run tests/device/prepare.sh here and carry $DEPS);"
  fi
  OUR_LDP=${LD_LIBRARY_PATH:-}   # .deps' libraries, if sourced: for our programs only

  # --- python with torch ------------------------------------------------------
  PY=""
  for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if LD_LIBRARY_PATH=$ORIG_LDP "$p" -c 'import torch, numpy' >/dev/null 2>&1; then PY=$p; break; fi
  done
  if [ -n "$PY" ]; then
    note "python: $(command -v "$PY") $(pyrun -c 'import sys, torch, numpy; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "numpy", numpy.__version__)' 2>&1 | tail -1)"
  else
    PY=python3
    env_err+=" no python with torch and numpy (PYTHON=...);"
  fi

  # --- nvcc -------------------------------------------------------------------
  if [ ! -x "$CUDA/bin/nvcc" ] && command -v nvcc >/dev/null 2>&1; then
    CUDA=$(cd "$(dirname "$(readlink -f "$(command -v nvcc)")")/.." && pwd)
  fi
  if [ -x "$CUDA/bin/nvcc" ]; then
    NVCC_VER=$("$CUDA/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    note "nvcc: $CUDA/bin/nvcc, release $NVCC_VER"
  else
    NVCC_VER=0
    env_err+=" no nvcc under $CUDA/bin or on PATH (CUDA_HOME=...);"
  fi
  NVCC_MAJOR=${NVCC_VER%%.*}

  # --- meson and ninja: on PATH, else the python's packages ---------------------
  if ! command -v ninja >/dev/null 2>&1; then
    nb=$(pyrun -c 'import ninja, os; print(ninja.BIN_DIR)' 2>/dev/null | tail -1)
    if [ -n "$nb" ] && [ -x "$nb/ninja" ]; then export PATH=$nb:$PATH; fi
  fi
  if command -v meson >/dev/null 2>&1; then
    MESON=(meson)
  elif pyrun -c 'import mesonbuild' >/dev/null 2>&1; then
    MESON=(env LD_LIBRARY_PATH="$ORIG_LDP" "$PY" -m mesonbuild.mesonmain)
  else
    MESON=(meson); env_err+=" no meson (PATH or python -m mesonbuild);"
  fi
  command -v ninja >/dev/null 2>&1 || env_err+=" no ninja;"
  note "meson: ${MESON[*]} $("${MESON[@]}" --version 2>/dev/null); ninja: $(command -v ninja) $(ninja --version 2>/dev/null)"

  # --- cuBLAS and cudart: the toolkit's, else the venv's wheels ----------------
  # ext/cuda/meson.build looks for them in <cudatoolkit>/lib64 and /lib only, so
  # when the toolkit lacks one, a merged toolkit folder of symlinks is made.
  TK=$CUDA
  missing=()
  for l in libcudart.so libcublas.so libcublasLt.so; do
    [ -e "$CUDA/lib64/$l" ] || [ -e "$CUDA/lib/$l" ] || missing+=("$l")
  done
  for h in cuda_runtime.h cublas_v2.h; do [ -f "$CUDA/include/$h" ] || missing+=("$h"); done
  if [ ${#missing[@]} -eq 0 ]; then
    note "cuBLAS/cudart: $CUDA/lib64 ($(cd "$CUDA/lib64" 2>/dev/null && ls libcublas.so.* libcudart.so.* 2>/dev/null | tr '\n' ' '))"
  else
    note "toolkit lacks: ${missing[*]}; merging in the venv's nvidia wheels"
    TK=$AUX/cuda
    rm -rf "$TK"; mkdir -p "$TK"
    for e in "$CUDA"/*; do
      case $(basename "$e") in include|lib64|lib) ;; *) ln -s "$e" "$TK/$(basename "$e")" ;; esac
    done
    [ -d "$CUDA/include" ] && link_all "$CUDA/include" "$TK/include"
    for d in lib64 lib; do [ -d "$CUDA/$d" ] && link_all "$CUDA/$d" "$TK/lib64"; done
    mkdir -p "$TK/include" "$TK/lib64"
    for m in "${missing[@]}"; do
      case $m in
        *.so)
          f=$(wheel_find "$m.[0-9]*") || { env_err+=" $m: not in $CUDA nor in the nvidia wheels;"; continue; }
          ln -sf "$f" "$TK/lib64/$m"
          link_all "$(dirname "$f")" "$TK/lib64"   # its versioned siblings (libcublasLt.so.N ...)
          maj=$(basename "$f" | sed -n 's/.*\.so\.\([0-9]*\).*/\1/p')
          note "  $m -> $f"
          [ "$maj" = "$NVCC_MAJOR" ] || env_err+=" $m is major $maj, nvcc is $NVCC_VER;"
          ;;
        *.h)
          f=$(wheel_find "$m") || { env_err+=" $m: not in $CUDA/include nor in the nvidia wheels;"; continue; }
          link_all "$(dirname "$f")" "$TK/include"
          note "  $m -> $f"
          ;;
      esac
    done
  fi

  # --- cuDNN: PyTorch's nvidia/cudnn wheel, else the toolkit's -----------------
  CUDNN_SRC=""; CUDNN_LIBDIR=""
  if [ -n "${VAE_CUDNN_DIR:-}" ]; then
    CUDNN_SRC=$VAE_CUDNN_DIR
  else
    CUDNN_SRC=$(pyrun -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null | tail -1)
    if [ -z "$CUDNN_SRC" ]; then
      for sp in $(site_dirs); do
        if [ -d "$sp/nvidia/cudnn/lib" ]; then CUDNN_SRC=$sp/nvidia/cudnn; break; fi
      done
    fi
  fi
  for d in lib lib64; do
    if [ -n "$CUDNN_SRC" ] && ls "$CUDNN_SRC/$d"/libcudnn.so* >/dev/null 2>&1; then CUDNN_LIBDIR=$CUDNN_SRC/$d; break; fi
  done
  if [ -z "$CUDNN_LIBDIR" ]; then
    [ -n "$CUDNN_SRC" ] && note "cuDNN: $CUDNN_SRC has no lib/libcudnn.so*"
    for d in "$CUDA/lib64" "$CUDA/lib" /usr/lib/x86_64-linux-gnu; do
      if ls "$d"/libcudnn.so* >/dev/null 2>&1; then CUDNN_SRC=$CUDA; CUDNN_LIBDIR=$d; break; fi
    done
  fi
  # headers: the wheel's include/ if it has them, else the toolkit's, else the system's
  CUDNN_INC=""
  for d in ${CUDNN_SRC:+"$CUDNN_SRC/include"} "$CUDA/include" /usr/include /usr/include/x86_64-linux-gnu; do
    if [ -f "$d/cudnn.h" ] && [ -f "$d/cudnn_version.h" ]; then CUDNN_INC=$d; break; fi
  done
  CUDNN_DIR=$AUX/cudnn
  rm -rf "$CUDNN_DIR"; mkdir -p "$CUDNN_DIR/lib" "$CUDNN_DIR/include"
  if [ -z "$CUDNN_LIBDIR" ]; then
    env_err+=" no libcudnn.so* (wheel nvidia-cudnn-cu13 or the toolkit; VAE_CUDNN_DIR=...);"
  elif [ -z "$CUDNN_INC" ]; then
    env_err+=" no cudnn.h/cudnn_version.h (wheel include/, $CUDA/include, /usr/include);"
  else
    # the libraries, plus unversioned names (wheels ship only libcudnn*.so.9)
    for f in "$CUDNN_LIBDIR"/libcudnn*.so*; do
      b=$(basename "$f")
      ln -sf "$f" "$CUDNN_DIR/lib/$b"
      u=${b%%.so*}.so
      [ -e "$CUDNN_DIR/lib/$u" ] || ln -s "$f" "$CUDNN_DIR/lib/$u"
    done
    for f in "$CUDNN_INC"/cudnn*.h; do ln -sf "$f" "$CUDNN_DIR/include/$(basename "$f")"; done
    h_ver=$(awk '/#define CUDNN_(MAJOR|MINOR|PATCHLEVEL)[ \t]/ {printf "%s%s", sep, $3; sep="."}' "$CUDNN_INC/cudnn_version.h")
    l_maj=$(cd "$CUDNN_LIBDIR" && ls libcudnn.so.[0-9]* 2>/dev/null | head -1 | sed -n 's/libcudnn\.so\.\([0-9]*\).*/\1/p')
    note "cuDNN: libraries $CUDNN_LIBDIR ($(cd "$CUDNN_LIBDIR" && ls libcudnn.so* | tr '\n' ' ')), headers $CUDNN_INC (version $h_ver) -> $CUDNN_DIR"
    if [ -z "$l_maj" ]; then
      note "cuDNN: no libcudnn.so.N to read the major version from; trusting the headers"
    elif [ "${h_ver%%.*}" != "$l_maj" ]; then
      env_err+=" cuDNN headers are $h_ver but the library is libcudnn.so.$l_maj;"
    fi
    [ "${h_ver%%.*}" = 9 ] || env_err+=" cuDNN $h_ver is not major 9;"
  fi

  # run-time search path of our programs: cuDNN, the toolkit's (or merged)
  # libraries, .deps. The rpath meson writes covers our own links, but cuDNN
  # dlopens its sub-libraries and nvrtc/cublasLt by name: those need this.
  RUN_LDP=$CUDNN_DIR/lib:$TK/lib64
  RUN_LDP+=${OUR_LDP:+:$OUR_LDP}

  # test data: the prepared copy, else ../shared/testdata (here)
  if [ ! -d "$TESTDATA/reference" ] && [ -z "${VAE_TESTDATA:-}" ] && [ -d ../shared/testdata/reference ]; then
    TESTDATA=../shared/testdata
  fi
  TESTDATA=$(cd "$TESTDATA" 2>/dev/null && pwd || echo "$TESTDATA")
  if [ -d "$TESTDATA/reference" ]; then
    note "test data: $TESTDATA ($(ls "$TESTDATA/reference" | wc -l) reference files, models: $(ls "$TESTDATA/models" | tr '\n' ' '))"
  else
    env_err+=" no test data at $TESTDATA (tests/device/prepare.sh, carry .testdata);"
  fi
  note "PATH=$PATH"
  note "LD_LIBRARY_PATH for our programs: $RUN_LDP"
} 2>>"$ENVLOG"
sed 's/^/  /' "$ENVLOG"
if [ -n "$env_err" ]; then echo "  problems:$env_err"; echo "problems:$env_err" >>"$ENVLOG"; stage_end "FAILED(${env_err# })"; else stage_end ok; fi

# ---------------------------------------------------------------------------
# weights: SD-size random weights (320 MB: made here, not carried), in the
# background while the build runs
# ---------------------------------------------------------------------------
WEIGHTS_PID=""
if [ -f "$SD_WEIGHTS/diffusion_pytorch_model.safetensors" ] && [ -f "$SD_WEIGHTS/config.json" ]; then
  echo "weights: $SD_WEIGHTS already there ($(du -sh "$SD_WEIGHTS" | cut -f1))"
  WEIGHTS_STATUS=ok
else
  echo "weights: writing $SD_WEIGHTS in the background (tests/bench/make_weights.py)"
  WEIGHTS_T=$SECONDS
  ( "${NICE[@]}" env LD_LIBRARY_PATH="$ORIG_LDP" "$PY" tests/bench/make_weights.py --out "$SD_WEIGHTS" \
      >"$AUX/weights.log" 2>&1 ) &
  WEIGHTS_PID=$!
  WEIGHTS_STATUS=pending
fi

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
stage_begin build "meson setup $BUILD (CUDA engine only, sm_$GPU_ARCHS) + ninja -j$JOBS"
BUILDLOG=$OUT/build.log
opts=(-Dgst=disabled -Dcpu=disabled -Dremote=disabled -Dcuda=enabled -Dtests=enabled
      "-Dgpu_archs=$GPU_ARCHS" "-Dcudatoolkit=$TK" "-Dcudnn_dir=$CUDNN_DIR" "-Dtestdata=$TESTDATA")
# The cuda engine is a module (libvae-engine-cuda.so, beside the core library
# libgstvae-core.so in the build root), which nothing links: named here.
WANT_TARGETS=(tools/vae-tool libvae-engine-cuda.so tests/golden/test-golden tests/device/test-cuda-kernels)

{
  echo "+ meson setup $BUILD ${opts[*]}"
  if [ -f "$BUILD/build.ninja" ]; then
    "${NICE[@]}" "${MESON[@]}" setup --reconfigure "$BUILD" "${opts[@]}"
  else
    "${NICE[@]}" "${MESON[@]}" setup "$BUILD" "${opts[@]}"
  fi
} >"$BUILDLOG" 2>&1
setup_rc=$?
if [ $setup_rc -ne 0 ]; then
  tail -n 30 "$BUILDLOG" | sed 's/^/  | /'
  stage_end "FAILED(meson setup, exit $setup_rc; see build.log)"
else
  grep -E "^ *(CUDA|cuda|Library (cudart|cublas|cudnn)|Program nvcc|Run-time dependency)" "$BUILDLOG" | sed 's/^/  /' | head -20
  # build what the check runs (the unit tests are CI's business)
  known=$(ninja -C "$BUILD" -t targets all 2>/dev/null | cut -d: -f1)
  targets=()
  for t in "${WANT_TARGETS[@]}"; do
    if grep -qx "$t" <<<"$known"; then targets+=("$t"); else echo "  note: no target $t in this build"; fi
  done
  echo "+ ninja -C $BUILD -j$JOBS ${targets[*]}" >>"$BUILDLOG"
  "${NICE[@]}" ninja -C "$BUILD" -j"$JOBS" "${targets[@]}" >>"$BUILDLOG" 2>&1
  ninja_rc=$?
  if [ $ninja_rc -ne 0 ]; then
    grep -E "error|FAILED" "$BUILDLOG" | head -40 | sed 's/^/  | /'
    stage_end "FAILED(ninja, exit $ninja_rc; see build.log)"
  elif [ ! -x "$BUILD/tools/vae-tool" ]; then
    stage_end "FAILED(no $BUILD/tools/vae-tool after the build)"
  elif [ ! -f "$BUILD/libvae-engine-cuda.so" ]; then
    stage_end "FAILED(no $BUILD/libvae-engine-cuda.so (the cuda engine module) after the build)"
  else

    tail -n 1 "$BUILDLOG" | sed 's/^/  /'
    stage_end ok
  fi
fi
export LD_LIBRARY_PATH=$RUN_LDP
# whether the cuda module opens and sees the GPU, and if not why
if [ -x "$BUILD/tools/vae-tool" ]; then
  echo "+ vae-tool backends"
  timeout 60 "$BUILD/tools/vae-tool" backends 2>&1 | sed 's/^/  /' | tee -a "$BUILDLOG"
fi

# ---------------------------------------------------------------------------
# kernels: the kernel checks, then their timing mode
# ---------------------------------------------------------------------------
stage_begin kernels "test-cuda-kernels, then --bench"
KLOG=$OUT/kernels.log
: >"$KLOG"
K=$BUILD/tests/device/test-cuda-kernels
if [ "${VAE_SKIP_KERNELS:-0}" = 1 ]; then
  echo "  skipped (VAE_SKIP_KERNELS=1: device time is short)" | tee -a "$KLOG"
  stage_end ok
elif [ ! -x "$K" ]; then
  echo "  $K was not built" | tee -a "$KLOG"
  stage_end "FAILED(test-cuda-kernels not built)"
else
  echo "+ $K" >>"$KLOG"
  timeout 90 "$K" 2>&1 | tee -a "$KLOG" | tail -n 25 | sed 's/^/  /'
  k_rc=${PIPESTATUS[0]}
  kb_rc=skipped
  if [ "$k_rc" -eq 0 ]; then
    echo "+ $K --bench" >>"$KLOG"
    timeout 60 "$K" --bench 2>&1 | tee -a "$KLOG" | tail -n 40 | sed 's/^/  /'
    kb_rc=${PIPESTATUS[0]}
  fi
  if [ "$k_rc" -eq 0 ] && [ "$kb_rc" = 0 ]; then stage_end ok
  elif [ "$k_rc" -eq 77 ]; then stage_end "$(gpu_fail "checks skipped, exit 77")"
  elif [ "$k_rc" -ne 0 ]; then stage_end "$(gpu_fail "checks exit $k_rc")"
  else stage_end "$(gpu_fail "--bench exit $kb_rc")"
  fi
fi

# ---------------------------------------------------------------------------
# golden: every reference file, fp32 within the float32 tolerances and fp16
# within the reduced-precision ones (VAE_GOLDEN_BACKEND=cuda)
# ---------------------------------------------------------------------------
stage_begin golden "test-golden with VAE_GOLDEN_BACKEND=cuda on $TESTDATA/reference"
GLOG=$OUT/golden.log
G=$BUILD/tests/golden/test-golden
if [ ! -x "$G" ]; then
  echo "  $G was not built" | tee "$GLOG"
  stage_end "FAILED(test-golden not built)"
else
  rm -f "$AUX/golden-skipped.marker"
  echo "+ VAE_GOLDEN_BACKEND=cuda VAE_TESTDATA=$TESTDATA $G --tap" >"$GLOG"
  VAE_GOLDEN_BACKEND=cuda VAE_TESTDATA=$TESTDATA VAE_GOLDEN_SKIP_MARKER=$AUX/golden-skipped.marker \
    G_DEBUG=fatal-criticals timeout 100 "$G" --tap >>"$GLOG" 2>&1
  g_rc=$?
  n_ok=$(grep -c '^ok ' "$GLOG")
  n_bad=$(grep '^not ok ' "$GLOG" | grep -vc '# TODO')
  n_todo=$(grep '^not ok ' "$GLOG" | grep -c '# TODO')
  n_skip=$(grep -c '^ok .*# SKIP' "$GLOG")
  echo "  golden: exit $g_rc; $n_ok passed (of which $n_skip skipped), $n_bad failed, $n_todo known failures (TODO)"
  # the failures and the messages around them (GLib prints them as '# ...' lines)
  grep -E '^not ok |^# .*(differs|PSNR|failed|cannot|off by|lacks)|GOLDEN TESTS SKIPPED' "$GLOG" | head -40 | sed 's/^/  /'
  if [ "$n_bad" -gt 0 ] || { [ "$g_rc" -ne 0 ] && [ "$g_rc" -ne 77 ]; }; then
    # Isolate: the same small cases without CUDA graphs, then also with
    # cuDNN's heuristics instead of measured algorithms.
    for env_set in "VAE_CUDA_GRAPH=0" "VAE_CUDA_GRAPH=0 VAE_CUDA_FIND=0"; do
      echo "+ isolation rerun with $env_set" >>"$GLOG"
      env $env_set VAE_GOLDEN_BACKEND=cuda VAE_TESTDATA=$TESTDATA VAE_GOLDEN_SKIP_MARKER=$AUX/golden-skipped.marker \
        timeout 40 "$G" --tap -p /golden/taef2/astronaut_64x64 -p /golden/kl-sd-mini/astronaut_64x64 \
        -p /golden-f16/taef2/astronaut_64x64 >"$AUX/golden-iso.log" 2>&1
      echo "  isolation ($env_set): exit $?; $(grep -c '^ok ' "$AUX/golden-iso.log") ok, $(grep -c '^not ok ' "$AUX/golden-iso.log") not ok"
      cat "$AUX/golden-iso.log" >>"$GLOG"
    done
  fi
  if [ "$g_rc" -eq 0 ] && [ "$n_bad" -eq 0 ] && [ "$n_ok" -gt "$n_skip" ]; then stage_end ok
  elif [ -f "$AUX/golden-skipped.marker" ]; then
    stage_end "FAILED(golden skipped, test data: $(tr -d '\n' <"$AUX/golden-skipped.marker"))"
  elif [ "$g_rc" -eq 77 ]; then
    stage_end "$(gpu_fail "golden skipped: $(grep -i skip "$GLOG" | tail -n 1 | cut -c1-120)")"
  else stage_end "$(gpu_fail "golden exit $g_rc, $n_bad failed of $((n_ok + n_bad + n_todo))")"
  fi
fi

# ---------------------------------------------------------------------------
# bench cases: id, label, model path, op, width, height, batch, runs
# ---------------------------------------------------------------------------
CASES=$AUX/bench/cases.tsv
TAEF2=$TESTDATA/models/taef2
SDL="sd-vae-random (KL, SD-size)"
TL="taef2 (tiny)"
if [ "$DRY" = 1 ]; then
  # tiny sizes: the CPU fallback only checks the plumbing
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    sd-enc-64-b1 "$SDL" "$SD_WEIGHTS" encode 64 64 1 1 \
    sd-dec-64-b1 "$SDL" "$SD_WEIGHTS" decode 64 64 1 1 \
    taef2-enc-64-b2 "$TL" "$TAEF2" encode 64 64 2 2 \
    taef2-dec-64-b2 "$TL" "$TAEF2" decode 64 64 2 2 >"$CASES"
  TORCH_ARGS=(--device cpu --dtype float32 --channels-last)
else
  # the issue's cases; most telling first, the largest (slowest, OOM-prone) last
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    sd-enc-512-b8 "$SDL" "$SD_WEIGHTS" encode 512 512 8 5 \
    sd-dec-512-b8 "$SDL" "$SD_WEIGHTS" decode 512 512 8 5 \
    taef2-enc-512-b8 "$TL" "$TAEF2" encode 512 512 8 5 \
    taef2-dec-512-b8 "$TL" "$TAEF2" decode 512 512 8 5 \
    sd-enc-1024-b1 "$SDL" "$SD_WEIGHTS" encode 1024 1024 1 5 \
    sd-dec-1024-b1 "$SDL" "$SD_WEIGHTS" decode 1024 1024 1 5 \
    sd-enc-2048-b1 "$SDL" "$SD_WEIGHTS" encode 2048 2048 1 3 \
    sd-dec-2048-b1 "$SDL" "$SD_WEIGHTS" decode 2048 2048 1 3 >"$CASES"
  TORCH_ARGS=(--device cuda --dtype float16 --channels-last)
fi
BLOG=$OUT/bench.log
: >"$BLOG"

# the weights must be there before any SD case
if [ -n "$WEIGHTS_PID" ]; then
  echo; echo "[$(ts)] waiting for the SD-size weights (pid $WEIGHTS_PID)"
  if wait "$WEIGHTS_PID"; then WEIGHTS_STATUS=ok; else WEIGHTS_STATUS="FAILED(make_weights.py, see bench.log)"; fi
  { echo "== make_weights.py ($((SECONDS - WEIGHTS_T)) s): $WEIGHTS_STATUS"; cat "$AUX/weights.log"; } >>"$BLOG"
  sed 's/^/  /' "$AUX/weights.log" | tail -n 5
  SUMMARY+=("$(printf '%-8s %4ds  %s' weights "$((SECONDS - WEIGHTS_T))" "$WEIGHTS_STATUS")")
  [ "$WEIGHTS_STATUS" = ok ] || ANY_FAILED=1
fi

# ---------------------------------------------------------------------------
# ours: vae-tool bench per case (one process each; a failing case, e.g. out of
# memory, is recorded and the rest go on)
# ---------------------------------------------------------------------------
OURS_TOOL=${VAE_OURS_TOOL:-$BUILD/tools/vae-tool}
OURS_BACKEND=${VAE_OURS_BACKEND:-cuda}
OURS_PRECISION=${VAE_OURS_PRECISION:-f16}
stage_begin ours "vae-tool bench --backend $OURS_BACKEND --precision $OURS_PRECISION ($(wc -l <"$CASES") cases, ${BENCH_TIMEOUT}s each at most)"
ours_bad=0
while IFS=$'\t' read -r id _label model op w h batch runs; do
  o=$AUX/bench/$id.out
  if [ $((SECONDS - T0)) -gt "$OURS_DEADLINE" ]; then
    echo "skipped (time budget: ${OURS_DEADLINE}s since the start)" >"$o"; echo 125 >"$AUX/bench/$id.rc"
    echo "  $id: skipped (time budget)"; ours_bad=$((ours_bad + 1)); continue
  fi
  cmd=("$OURS_TOOL" bench --backend "$OURS_BACKEND" --precision "$OURS_PRECISION" --model "$model"
       --op "$op" --width "$w" --height "$h" --batch "$batch" --runs "$runs")
  t=$SECONDS
  # at most BENCH_TIMEOUT, and no later than 60 s after the deadline for starting cases
  tmo=$((OURS_DEADLINE + 60 - (SECONDS - T0)))
  [ $tmo -gt "$BENCH_TIMEOUT" ] && tmo=$BENCH_TIMEOUT
  [ $tmo -lt 20 ] && tmo=20
  timeout "$tmo" "${cmd[@]}" >"$o" 2>&1 </dev/null
  rc=$?
  echo "$rc" >"$AUX/bench/$id.rc"
  { echo "== ours $id: ${cmd[*]} -> exit $rc ($((SECONDS - t)) s)"; cat "$o"; } >>"$BLOG"
  if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
    # One retry without CUDA graphs, to tell a capture problem from others.
    { echo "== retry of $id with VAE_CUDA_GRAPH=0"; VAE_CUDA_GRAPH=0 timeout "$tmo" "${cmd[@]}" 2>&1 </dev/null; echo "-> exit $?"; } >>"$BLOG"
    tail -n 2 "$BLOG" | sed "s/^/  $id retry: /"
  fi
  if [ $rc -eq 0 ]; then
    echo "  $id: $(grep -E '^(device_ms|device_peak_mib|median_s)=' "$o" | cut -d' ' -f1 | tr '\n' ' ')($((SECONDS - t)) s)"
  else
    ours_bad=$((ours_bad + 1))
    echo "  $id: FAILED exit $rc ($((SECONDS - t)) s): $(grep -v '^ *$' "$o" | tail -n 1 | cut -c1-200)"
  fi
done <"$CASES"
if [ $ours_bad -eq 0 ]; then stage_end ok; else stage_end "$(gpu_fail "$ours_bad of $(wc -l <"$CASES") cases failed")"; fi

# ---------------------------------------------------------------------------
# torch: the PyTorch peer on the same GPU, all cases in one process
# ---------------------------------------------------------------------------
stage_begin torch "PyTorch peer (${TORCH_ARGS[*]}, SDPA attention, cudnn.benchmark modes: $TORCH_MODES)"
left=$((BUDGET - (SECONDS - T0)))
[ $left -lt 30 ] && left=30
TORCH_TSV=$AUX/bench/torch.tsv
META=$AUX/bench/meta.json
echo "== torch peer: ${TORCH_ARGS[*]} modes=$TORCH_MODES deadline=${left}s" >>"$BLOG"
PYTHONUNBUFFERED=1 "${NICE[@]}" timeout $((left + 60)) env LD_LIBRARY_PATH="$ORIG_LDP" "$PY" \
  tests/bench/torch_gpu_bench.py torch --cases "$CASES" --out "$TORCH_TSV" --meta "$META" \
  "${TORCH_ARGS[@]}" --modes "$TORCH_MODES" --deadline-s "$left" 2>&1 | tee -a "$BLOG" | sed 's/^/  /'
t_rc=${PIPESTATUS[0]}
[ -f "$TORCH_TSV" ] && cat "$TORCH_TSV" >>"$BLOG"
if [ "$t_rc" -ne 0 ]; then stage_end "FAILED(torch peer exit $t_rc)"
elif grep -qv -e $'\tok\t' -e '^id' "$TORCH_TSV"; then stage_end "FAILED($(grep -vc -e $'\tok\t' -e '^id' "$TORCH_TSV") torch rows not ok)"
else stage_end ok
fi

# ---------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# tiled: frames larger than what one pass should hold, through --tile-size
# (not compared with torch; memory and time of the tiled path)
# ---------------------------------------------------------------------------
stage_begin tiled "vae-tool bench --tile-size 1024 at 4096x4096 (SD-size, f16)"
tiled_bad=0
for op in decode encode; do
  if [ "$DRY" = 1 ]; then tw=128; tt=64; else tw=4096; tt=1024; fi
  o=$AUX/bench/tiled-$op.out
  timeout 90 "$OURS_TOOL" bench --backend "$OURS_BACKEND" --precision "$OURS_PRECISION" \
    --model "$SD_WEIGHTS" --op $op --width $tw --height $tw --batch 1 --runs 1 \
    --tile-size $tt --tile-overlap 128 >"$o" 2>&1 </dev/null
  rc=$?
  { echo "== tiled $op ${tw}x${tw} tile $tt -> exit $rc"; cat "$o"; } >>"$BLOG"
  echo "  tiled $op ${tw}x${tw} (tile $tt): exit $rc; $(grep -E '^(device_peak_mib|median_s)=|tiles' "$o" | cut -c1-100 | tr '\n' ' ')"
  [ $rc -eq 0 ] || tiled_bad=$((tiled_bad + 1))
done
if [ $tiled_bad -eq 0 ]; then stage_end ok; else stage_end "$(gpu_fail "$tiled_bad tiled runs failed")"; fi

# ---------------------------------------------------------------------------
# profile: where our passes spend their time (VAE_CUDA_PROFILE=1), what CUDA
# graphs are worth (VAE_CUDA_GRAPH=0), and a batch split past 2^31 elements
# ---------------------------------------------------------------------------
stage_begin profile "per-op-kind profile, CUDA graphs on/off, batch split"
PLOG=$OUT/profile.log
: >"$PLOG"
prof_bad=0
prof() {   # prof LABEL ENV... -- vae-tool bench args
  local label=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  echo "== $label: ${envs[*]} vae-tool bench $*" >>"$PLOG"
  env "${envs[@]}" timeout 60 "$OURS_TOOL" bench --backend "$OURS_BACKEND" --precision "$OURS_PRECISION" "$@" >>"$PLOG" 2>&1 </dev/null
  local rc=$?
  [ $rc -eq 0 ] || prof_bad=$((prof_bad + 1))
  echo "  $label: exit $rc; $(sed -n '/^== '"$label"':/,$p' "$PLOG" | grep -E '^(cuda profile|device_ms|device_peak_mib|pipelined:|median_s)|captured|plan for' | cut -c1-400 | tr '\n' ' ')"
}
if [ "$DRY" = 1 ]; then psz=64; pb=1; else psz=512; pb=8; fi
prof sd-dec-profile G_MESSAGES_DEBUG=all VAE_CUDA_PROFILE=1 -- --model "$SD_WEIGHTS" --op decode --width $psz --height $psz --batch $pb --runs 3
prof sd-dec-profile-nofold VAE_CUDA_PROFILE=1 VAE_CUDA_FOLD_BIAS=0 -- --model "$SD_WEIGHTS" --op decode --width $psz --height $psz --batch $pb --runs 3
prof sd-enc-profile VAE_CUDA_PROFILE=1 -- --model "$SD_WEIGHTS" --op encode --width $psz --height $psz --batch $pb --runs 3
prof taef2-dec-profile VAE_CUDA_PROFILE=1 -- --model "$TAEF2" --op decode --width $psz --height $psz --batch $pb --runs 3
prof sd-enc-nograph VAE_CUDA_GRAPH=0 -- --model "$SD_WEIGHTS" --op encode --width $psz --height $psz --batch $pb --runs 5
prof taef2-enc-nograph VAE_CUDA_GRAPH=0 -- --model "$TAEF2" --op encode --width $psz --height $psz --batch $pb --runs 5
prof taef2-enc-graph G_MESSAGES_DEBUG=all -- --model "$TAEF2" --op encode --width $psz --height $psz --batch $pb --runs 5
# pinned, asynchronous transfers: a caller with batches in flight (wall time per batch)
prof taef2-enc-pipelined -- --model "$TAEF2" --op encode --width $psz --height $psz --batch $pb --runs 20 --inflight 3
prof taef2-dec-pipelined -- --model "$TAEF2" --op decode --width $psz --height $psz --batch $pb --runs 20 --inflight 3
prof sd-enc-pipelined -- --model "$SD_WEIGHTS" --op encode --width $psz --height $psz --batch $pb --runs 10 --inflight 3
prof sd-dec-pipelined -- --model "$SD_WEIGHTS" --op decode --width $psz --height $psz --batch $pb --runs 10 --inflight 3
if [ "$DRY" != 1 ]; then
  prof sd-dec-1024-b8-split G_MESSAGES_DEBUG=all -- --model "$SD_WEIGHTS" --op decode --width 1024 --height 1024 --batch 8 --runs 2
fi
if [ $prof_bad -eq 0 ]; then stage_end ok; else stage_end "$(gpu_fail "$prof_bad profile runs failed")"; fi

stage_begin table "markdown table -> $OUT/table.md"
if [ "$DRY" = 1 ]; then
  # the vae-tool output parser on canned GPU-engine output (no GPU here to make real output)
  env LD_LIBRARY_PATH="$ORIG_LDP" "$PY" tests/bench/torch_gpu_bench.py selftest 2>&1 | sed 's/^/  /'
  selftest_rc=${PIPESTATUS[0]}
fi
ours_desc="vae-tool bench --backend $OURS_BACKEND --precision $OURS_PRECISION ($OURS_TOOL)"
env LD_LIBRARY_PATH="$ORIG_LDP" "$PY" tests/bench/torch_gpu_bench.py table --cases "$CASES" --ours-dir "$AUX/bench" \
  --torch "$TORCH_TSV" --meta "$META" --ours-desc "$ours_desc" >"$OUT/table.md" 2>>"$BLOG"
tb_rc=$?
if [ "${selftest_rc:-0}" != 0 ]; then
  stage_end "FAILED(parser selftest, exit $selftest_rc)"
elif grep -q '^| model' "$OUT/table.md"; then
  # the table is printed below, after the summary; missing numbers were counted by the ours/torch stages
  if [ $tb_rc -eq 0 ]; then stage_end ok; else stage_end "$(gpu_fail "some cells have no number")"; fi
else
  tail -n 20 "$BLOG"
  stage_end "FAILED(table, exit $tb_rc)"
fi

# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------
{
  echo "device check $( [ "$DRY" = 1 ] && echo '(DRY RUN) ')finished at $(date -u '+%Y-%m-%d %H:%M:%S') UTC after $((SECONDS - T0)) s"
  printf '%s\n' "${SUMMARY[@]}"
  if [ $ANY_FAILED -eq 0 ]; then echo "RESULT: all stages ok"; else echo "RESULT: FAILED (see the stages above and the logs in $OUT)"; fi
} >"$OUT/summary.txt"
echo
echo "=================== table ($OUT/table.md) ==================="
cat "$OUT/table.md" 2>/dev/null
echo
echo "=================== summary ==================="
cat "$OUT/summary.txt"
exit $ANY_FAILED
