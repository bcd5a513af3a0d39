#!/bin/sh
# Runs long enough to watch and to cancel: counts to $1 (default 30), one step a second.
steps="${1:-30}"
i=1
while [ "$i" -le "$steps" ]; do
  echo "${FLEETRUN_DEVICE_ID}: step ${i}/${steps}"
  sleep 1
  i=$((i + 1))
done
echo "${FLEETRUN_DEVICE_ID}: done"
