#!/bin/bash
# Every part of gst-vae that Debian packages provide is built when its meson
# feature is left on `auto` (issue: the quickstart once installed neither
# libcurl nor libsoup, and the newcomer's build had no remote engine and no
# vae-server without a word).  Arguments: one "NAME|yes/no|check/report|PACKAGES"
# per part, written by meson.build.
set -u
fail=0
for part in "$@"; do
  IFS='|' read -r name built mode packages <<<"$part"
  if [ "$built" = yes ]; then
    echo "ok: $name"
  elif [ "$mode" = check ]; then
    echo "FAIL: $name is not built: install $packages (tools/debian-packages.txt) and reconfigure"
    fail=1
  else
    echo "not built (optional): $name: needs $packages"
  fi
done
exit "$fail"
