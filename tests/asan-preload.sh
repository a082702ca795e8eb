# Sourced by the test scripts that run uninstrumented programs
# (gst-launch-1.0, python3) on the plugin: an ASan build of the plugin can
# only be dlopen()ed once the ASan runtime is loaded first.  Leaks are not
# judged in those programs (they and GStreamer's registry keep memory until
# exit); the element tests and the 300-frame pipeline check ours under LSan.
#   vae_asan_preload PLUGIN_DIR
vae_asan_preload() {
  local asan_lib
  # The plugin's NEEDED entries name the ASan runtime (readelf reads the
  # file; it does not run the loader as ldd does).
  asan_lib=$(readelf -d "$1/libgstvae.so" 2>/dev/null \
             | sed -n 's/.*Shared library: \[\(libasan\.so[^]]*\)\].*/\1/p' | head -n 1) || true
  if [ -n "$asan_lib" ]; then
    echo "(ASan build of the plugin: preloading $asan_lib, leak detection off for this program)"
    export LD_PRELOAD="$asan_lib${LD_PRELOAD:+:$LD_PRELOAD}"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:verify_asan_link_order=0"
  fi
}
