#!/bin/sh
# A stand-in for a patch run: honours --dry-run and writes a marker in its working directory.
dry_run=no
for arg in "$@"; do
  [ "$arg" = "--dry-run" ] && dry_run=yes
done
echo "patching ${FLEETRUN_DEVICE_ID} (dry run: ${dry_run})"
date -u +%Y-%m-%dT%H:%M:%SZ > patched-at
echo "patched; marker written to $(pwd)/patched-at"
