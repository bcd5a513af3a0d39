#!/bin/sh
# Succeeds on every device: prints who it runs for and the arguments it was given.
echo "hello from ${FLEETRUN_DEVICE_ID} (task ${FLEETRUN_TASK_ID})"
for arg in "$@"; do
  echo "arg: ${arg}"
done
