#!/usr/bin/env bash
# Submits the training command as an xpk workload on a GKE TPU cluster (xpk handles all workers).
# Usage: CLUSTER=c WORKLOAD=ltx TPU_TYPE=v5p-256 IMAGE=gcr.io/p/ltx-jax launch/xpk.sh CONFIG [key=value ...]
set -euo pipefail
: "${CLUSTER:?}" "${WORKLOAD:?}" "${TPU_TYPE:?}" "${IMAGE:?}"
exec xpk workload create --cluster "${CLUSTER}" --workload "${WORKLOAD}" --tpu-type "${TPU_TYPE}" \
  --num-slices "${NUM_SLICES:-1}" --docker-image "${IMAGE}" \
  --command "LTX_JAX_DISTRIBUTED=on python -m ltx_jax train $(printf '%q ' "$@")"
