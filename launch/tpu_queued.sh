#!/usr/bin/env bash
# Creates a queued resource for a TPU slice, waits until it is ACTIVE, then runs launch/tpu_vm.sh.
# Usage: TPU_NAME=ltx ZONE=us-east5-a ACCELERATOR=v5p-256 RUNTIME=v2-alpha-tpuv5 launch/tpu_queued.sh CONFIG [key=value ...]
set -euo pipefail
: "${TPU_NAME:?}" "${ZONE:?}" "${ACCELERATOR:?e.g. v5p-256}" "${RUNTIME:?e.g. v2-alpha-tpuv5}"
gcloud compute tpus queued-resources create "${TPU_NAME}-qr" --node-id "${TPU_NAME}" --zone "${ZONE}" \
  --accelerator-type "${ACCELERATOR}" --runtime-version "${RUNTIME}" ${SPOT:+--spot} ${PROJECT:+--project "$PROJECT"}
until [[ "$(gcloud compute tpus queued-resources describe "${TPU_NAME}-qr" --zone "${ZONE}" \
          --format='value(state.state)')" == ACTIVE ]]; do sleep 30; done
exec "$(dirname "$0")/tpu_vm.sh" "$@"
