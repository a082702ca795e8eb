#!/bin/bash
# Engines as modules: the plugin, vae-tool and vae-server need none of the
# engine modules' libraries (CUDA runtime, cuBLAS, cuDNN, libcurl) to load;
# with a module that cannot be opened they still run on the cpu engine, and
# asking for that engine says which library is missing.
#
#   test-engine-modules.sh                 (meson test --suite modules)
#   test-engine-modules.sh --hidden DIR... (itself, inside `unshare -rm`: the
#                                           folders holding the CUDA libraries
#                                           covered by empty ones)
#
# For every module of the build (cuda, remote): a stand-in module that needs
# an absent library (tests/modules/fake-module.c) put first on
# VAE_ENGINE_PATH.  For cuda also the real module with the CUDA libraries
# hidden, where a mount namespace can be had (`unshare -rm`; skipped, with a
# message, where not).  Besides: the module search order, a module of another
# engine interface version, a library that is not a module, and what modules
# and the core library export.
#
# Environment (tests/modules/meson.build): VAE_TOOL, VAE_SERVER (may be
# empty), VAE_CORE_LIB, VAE_FAKE_MODULE, VAE_ABSENT_LIB, VAE_PLUGIN_DIR
# (empty: no GStreamer), VAE_ENGINE_MODULES ("name=path ..."), VAE_TESTDATA.
# KEEP_WORKDIR=1 keeps the scratch folder.
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failures=0
passes=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; passes=$((passes + 1)); }
# show FILE: what a failed check saw
show() { sed 's/^/  | /' "$1" | tail -n 25; }
skip() {
  echo "######################################################################"
  echo "## SKIP: $*"
  echo "######################################################################"
  exit 77
}

M=${VAE_TESTDATA:-}/models/taef2
[ -n "${VAE_TESTDATA:-}" ] && [ -d "$M" ] \
  || skip "VAE_TESTDATA ('${VAE_TESTDATA:-}') has no models/taef2: the engine module tests did not run"

# GStreamer's programs are not instrumented: an ASan build of the plugin
# needs the ASan runtime preloaded into them (and only into them).
# shellcheck source=../asan-preload.sh
. "$here/../asan-preload.sh"
gst() ( vae_asan_preload "$VAE_PLUGIN_DIR" >/dev/null; exec timeout 120 "$@" )

# check_engine NAME EXPECT LABEL: with engine NAME unusable (how is the
# caller's business: VAE_ENGINE_PATH, hidden libraries), everything else
# works and NAME's errors match the extended regex EXPECT.
check_engine() {
  local name=$1 expect=$2 label=$3
  local out=$work/$label
  echo
  echo "== $label: $name cannot be opened; expecting /$expect/"

  # vae-tool backends: NAME not usable, with the reason; cpu usable
  if "$VAE_TOOL" backends >"$out.backends" 2>&1; then
    sed 's/^/  /' "$out.backends"
    if grep -Eq "^$name +not usable .*($expect)" "$out.backends"; then
      pass "$label: vae-tool backends: $name not usable, with the loader's reason"
    else
      fail "$label: vae-tool backends does not report $name as not usable with /$expect/"
    fi
    if grep -Eq '^cpu +usable +built in' "$out.backends" && grep -Eq '^auto -> +[a-z]' "$out.backends" \
       && ! grep -Eq "^auto -> +$name\$" "$out.backends"; then
      pass "$label: vae-tool backends: cpu usable, auto -> $(sed -n 's/^auto -> *//p' "$out.backends")"
    else
      fail "$label: vae-tool backends: cpu not usable, or auto not another engine"
    fi
  else
    fail "$label: vae-tool backends exited with $?"; show "$out.backends"
  fi

  # vae-tool encode: NAME fails and says why; cpu and auto work
  if "$VAE_TOOL" encode --backend "$name" --model "$M" --input "$work/in.png" \
       --output "$out.z.safetensors" >"$out.encode" 2>&1; then
    fail "$label: vae-tool encode --backend $name succeeded"
  elif grep -Eq "backend '$name' cannot be used here: .*($expect)" "$out.encode"; then
    pass "$label: vae-tool encode --backend $name: $(head -c 300 "$out.encode")"
  else
    fail "$label: vae-tool encode --backend $name: not the expected message"; show "$out.encode"
  fi
  for b in cpu auto; do
    rm -f "$out.$b.safetensors"
    if "$VAE_TOOL" encode --backend $b --model "$M" --input "$work/in.png" \
         --output "$out.$b.safetensors" >"$out.encode-$b" 2>&1 && [ -s "$out.$b.safetensors" ]; then
      pass "$label: vae-tool encode --backend $b"
    else
      fail "$label: vae-tool encode --backend $b"; show "$out.encode-$b"
    fi
  done

  # vae-server: starts with cpu (not run here: it serves), refuses NAME
  if [ -n "${VAE_SERVER:-}" ]; then
    if timeout 60 "$VAE_SERVER" --backend "$name" --model "$M" --port 0 >"$out.server" 2>&1; then
      fail "$label: vae-server --backend $name did not fail"
    elif grep -Eq "$expect" "$out.server"; then
      pass "$label: vae-server --backend $name fails, naming the library"
    else
      fail "$label: vae-server --backend $name: not the expected message"; show "$out.server"
    fi
  fi

  [ -n "$VAE_PLUGIN_DIR" ] || return 0
  # the plugin: loads, every element there, a cpu pipeline runs, NAME fails
  if gst gst-inspect-1.0 vaeencode >"$out.inspect" 2>&1 && grep -q 'backend' "$out.inspect"; then
    pass "$label: gst-inspect-1.0 vaeencode"
  else
    fail "$label: gst-inspect-1.0 vaeencode"; show "$out.inspect"
  fi
  for e in vaedecode safetensorsmux safetensorsdemux; do
    gst gst-inspect-1.0 "$e" >/dev/null 2>&1 || fail "$label: gst-inspect-1.0 $e"
  done
  local extra=""
  [ "$name" = remote ] && extra="endpoint=http://127.0.0.1:9/encode"
  for b in cpu auto; do
    rm -f "$out.gst-$b.safetensors"
    if gst gst-launch-1.0 -q videotestsrc num-buffers=2 ! video/x-raw,width=8,height=8 \
         ! vaeencode model="$M" backend=$b batch-size=2 ! safetensorsmux \
         ! filesink location="$out.gst-$b.safetensors" >"$out.launch-$b" 2>&1 \
       && [ -s "$out.gst-$b.safetensors" ]; then
      pass "$label: gst-launch-1.0 ... vaeencode backend=$b ! safetensorsmux"
    else
      fail "$label: gst-launch-1.0 with backend=$b"; show "$out.launch-$b"
    fi
  done
  if gst gst-launch-1.0 videotestsrc num-buffers=2 ! video/x-raw,width=8,height=8 \
       ! vaeencode model="$M" backend="$name" $extra ! fakesink >"$out.launch" 2>&1; then
    fail "$label: gst-launch-1.0 with backend=$name succeeded"
  elif grep -Eq "$expect" "$out.launch"; then
    pass "$label: backend=$name: element error naming the library"
  else
    fail "$label: backend=$name: the element error does not say /$expect/"; show "$out.launch"
  fi
}

summary() {
  echo
  echo "engine module tests ($1): $passes passed, $failures failed"
  [ "$failures" -eq 0 ]
}

# ---- inside the mount namespace: the CUDA libraries hidden ----
if [ "${1:-}" = --hidden ]; then
  shift
  work=$HIDDEN_WORK
  for d in "$@"; do
    mount -t tmpfs -o size=1m vae-no-cuda "$d" || { echo "FAIL: cannot cover $d"; exit 1; }
    echo "(hidden: $d)"
  done
  unset VAE_ENGINE_PATH
  check_engine cuda 'lib(cudart|cublas|cublasLt|cudnn[a-z_]*)\.so[.0-9]*: cannot open shared object file' hidden-cuda
  summary "CUDA libraries hidden"
  exit
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gst-vae-modules.XXXXXX")
cleanup() {
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
export GST_PLUGIN_PATH=$VAE_PLUGIN_DIR
export GST_REGISTRY=$work/registry.bin
export GST_DEBUG_NO_COLOR=1
unset VAE_ENGINE_PATH
# meson test puts the folders of the test's libraries on LD_LIBRARY_PATH:
# not the one of the library the stand-in module must not find.
absent_dir=$(dirname "$VAE_ABSENT_LIB")
ldp=""
IFS=: read -r -a ldp_parts <<<"${LD_LIBRARY_PATH:-}"
for p in "${ldp_parts[@]}"; do
  [ -n "$p" ] && [ "${p%/}" != "${absent_dir%/}" ] && ldp+=${ldp:+:}$p
done
if [ -n "$ldp" ]; then export LD_LIBRARY_PATH=$ldp; else unset LD_LIBRARY_PATH; fi

# an 8x8 RGB PNG (small: the machine may be busy) (no numpy needed)
/usr/bin/python3 - "$work/in.png" <<'PY' || { echo "FAIL: writing in.png"; exit 1; }
import struct, sys, zlib
w = h = 8
rows = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 4, y * 4, (x + y) * 2 % 256))
                for y in range(h))
def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY

declare -A module_path=()
names=()
for nm in $VAE_ENGINE_MODULES; do
  names+=("${nm%%=*}")
  module_path[${nm%%=*}]=${nm#*=}
done
echo "engine modules of this build: ${names[*]:-(none)}"

# ---- 1. what needs what at load time ----
echo
echo "== load-time dependencies (readelf -d NEEDED)"
heavy='^lib(cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc|curl|png16)\.so'
needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'; }
progs=("$VAE_CORE_LIB" "$VAE_TOOL")
[ -n "${VAE_SERVER:-}" ] && progs+=("$VAE_SERVER")
[ -n "$VAE_PLUGIN_DIR" ] && progs+=("$VAE_PLUGIN_DIR/libgstvae.so")
for f in "${progs[@]}"; do
  n=$(needed "$f")
  [ -n "$n" ] || { fail "readelf -d $f gave nothing"; continue; }
  # vae-tool and vae-server read and write PNG themselves
  case $f in */vae-tool|*/vae-server) h=${heavy/|png16/} ;; *) h=$heavy ;; esac
  bad=$(grep -E "$h" <<<"$n" | tr '\n' ' ')
  if [ -n "$bad" ]; then
    fail "$(basename "$f") needs an engine module's libraries at load time: $bad"
  else
    pass "$(basename "$f") needs no engine module's libraries ($(tr '\n' ' ' <<<"$n"))"
  fi
done
for name in "${names[@]}"; do
  p=${module_path[$name]}
  exported=$(nm -D --defined-only "$p" | awk '{print $3}' | sort | tr '\n' ' ')
  if [ "$exported" = "vae_engine_module_get " ]; then
    pass "$(basename "$p") exports vae_engine_module_get only"
  else
    fail "$(basename "$p") exports: $exported"
  fi
  needed "$p" | grep -qx 'libgstvae-core.so.0' \
    && pass "$(basename "$p") uses the core library's symbols (NEEDED libgstvae-core.so.0)" \
    || fail "$(basename "$p") does not link libgstvae-core.so.0"
done
if nm -D --defined-only "$VAE_CORE_LIB" | awk '{print $3}' | grep -v '^vae_' | grep -q .; then
  fail "the core library exports more than vae_*: $(nm -D --defined-only "$VAE_CORE_LIB" | awk '{print $3}' | grep -v '^vae_' | head -5 | tr '\n' ' ')"
else
  pass "the core library exports vae_* only"
fi

# ---- 2. the build's own modules are found (beside the core library) ----
echo
echo "== vae-tool backends with the build tree's modules"
if "$VAE_TOOL" backends >"$work/backends" 2>&1; then
  sed 's/^/  /' "$work/backends"
  for name in cpu "${names[@]}"; do
    grep -Eq "^$name +(usable|not usable) " "$work/backends" || fail "vae-tool backends does not list $name"
  done
  for name in "${names[@]}"; do
    # found beside the core library (usable or not: no GPU here, say)
    if grep -E "^$name " "$work/backends" | grep -qF "${module_path[$name]}"; then
      pass "$name: its module found beside the core library (${module_path[$name]})"
    else
      fail "$name: vae-tool backends does not name ${module_path[$name]}"
    fi
  done
else
  fail "vae-tool backends exited with $?"; show "$work/backends"
fi

[ ${#names[@]} -gt 0 ] || { summary "no modules in this build"; exit; }

# ---- 3. a stand-in module that needs an absent library, first on VAE_ENGINE_PATH ----
for name in "${names[@]}"; do
  d=$work/absent-$name
  mkdir -p "$d"
  cp "$VAE_FAKE_MODULE" "$d/libvae-engine-$name.so"
  VAE_ENGINE_PATH=$work/empty:$d check_engine "$name" \
    "cannot open its module $d/libvae-engine-$name.so: libvae-test-absent\\.so\\.0: cannot open shared object file" \
    "absent-$name"
done

# ---- 4. other ways a module can be wrong; the search order ----
name=${names[0]}
echo
echo "== $name: other broken modules, and VAE_ENGINE_PATH's order"
# another engine interface version: the stand-in with its library beside it
d=$work/abi
mkdir -p "$d"
cp "$VAE_FAKE_MODULE" "$d/libvae-engine-$name.so"
cp "$VAE_ABSENT_LIB" "$d/"
VAE_ENGINE_PATH=$d "$VAE_TOOL" backends >"$work/abi.out" 2>&1
if grep -Eq "^$name +not usable .*$d/libvae-engine-$name.so was built for another version of the engine interface" "$work/abi.out"; then
  pass "a module of another interface version is refused, saying so"
else
  fail "a module of another interface version"; show "$work/abi.out"
fi
# a shared library that is no engine module
d=$work/notmodule
mkdir -p "$d"
cp "$VAE_ABSENT_LIB" "$d/libvae-engine-$name.so"
VAE_ENGINE_PATH=$d "$VAE_TOOL" backends >"$work/notmodule.out" 2>&1
if grep -Eq "^$name +not usable .*is not an engine module \(it has no vae_engine_module_get\)" "$work/notmodule.out"; then
  pass "a library without vae_engine_module_get is refused, saying so"
else
  fail "a library that is not a module"; show "$work/notmodule.out"
fi
# an empty folder first: the next one's module is used
mkdir -p "$work/empty"
VAE_ENGINE_PATH=$work/empty:$work/notmodule "$VAE_TOOL" backends >"$work/order.out" 2>&1
if grep -E "^$name " "$work/order.out" | grep -qF "$work/notmodule/libvae-engine-$name.so"; then
  pass "VAE_ENGINE_PATH: the first folder holding the module wins"
else
  fail "VAE_ENGINE_PATH order"; show "$work/order.out"
fi
# a core library elsewhere (first on LD_LIBRARY_PATH) looks beside itself
# and in gst-vae/engines beside itself (an installed tree moved elsewhere)
d=$work/relocated
mkdir -p "$d"
cp "$VAE_CORE_LIB" "$d/libgstvae-core.so.0"
LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} VAE_ENGINE_PATH=$work/empty \
  "$VAE_TOOL" backends >"$work/relocated.out" 2>&1
if grep -E "^$name +not usable .*its module libvae-engine-$name.so is in none of: " "$work/relocated.out" \
   | grep -qF "$work/empty, $d, $d/gst-vae/engines, $VAE_ENGINE_INSTALL_DIR"; then
  pass "no module file: the reason lists where it was looked for"
elif grep -E "^$name " "$work/relocated.out" | grep -qF "$VAE_ENGINE_INSTALL_DIR/libvae-engine-$name.so"; then
  pass "no module file beside the moved core library: the installed one is used ($VAE_ENGINE_INSTALL_DIR)"
else
  fail "a core library elsewhere without modules"; show "$work/relocated.out"
fi
mkdir -p "$d/gst-vae/engines"
cp "${module_path[$name]}" "$d/gst-vae/engines/"
LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  "$VAE_TOOL" backends >"$work/relocated2.out" 2>&1
if grep -E "^$name " "$work/relocated2.out" | grep -qF "$d/gst-vae/engines/libvae-engine-$name.so"; then
  pass "a core library elsewhere finds its modules in gst-vae/engines beside it"
else
  fail "modules in gst-vae/engines beside the core library"; show "$work/relocated2.out"
fi

# ---- 5. the real cuda module with the CUDA libraries hidden ----
if [ -n "${module_path[cuda]:-}" ]; then
  echo
  echo "== cuda: the real module with the CUDA libraries hidden"
  dirs=$(ldd "${module_path[cuda]}" 2>/dev/null \
         | awk '$1 ~ /^lib(cudart|cublas|cublasLt|cudnn)/ && $3 ~ /^\// {print $3}' \
         | xargs -r -n1 readlink -f | xargs -r -n1 dirname | sort -u)
  system=$(grep -Ex '(/usr)?/lib(32|64)?(/x86_64-linux-gnu|/aarch64-linux-gnu)?' <<<"$dirs" || true)
  if [ -z "$dirs" ]; then
    fail "ldd finds none of the CUDA libraries of ${module_path[cuda]}"
  elif [ -n "$system" ]; then
    echo "(not run: the CUDA libraries are in a system folder ($system), which cannot be covered)"
  elif ! unshare -rm true 2>/dev/null; then
    echo "(not run: no mount namespace here: unshare -rm fails; the stand-in module above covers the message)"
  else
    echo "CUDA library folders to hide: $(tr '\n' ' ' <<<"$dirs")"
    # shellcheck disable=SC2086
    if HIDDEN_WORK=$work unshare -rm bash "${BASH_SOURCE[0]}" --hidden $dirs; then
      pass "with the CUDA libraries hidden: plugin, vae-tool and vae-server work on the cpu, cuda says why"
    else
      fail "with the CUDA libraries hidden (see above)"
    fi
  fi
fi

summary "modules: ${names[*]}"
