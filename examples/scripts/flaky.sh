#!/bin/sh
# Fails on some devices, so a task ends completed with failed devices in its result:
# a device whose id ends in 2 or contains "fail" exits 3 with a message on stderr.
echo "checking ${FLEETRUN_DEVICE_ID}"
case "${FLEETRUN_DEVICE_ID}" in
  *2 | *fail*)
    echo "disk check failed on ${FLEETRUN_DEVICE_ID}" >&2
    exit 3
    ;;
esac
echo "ok"
