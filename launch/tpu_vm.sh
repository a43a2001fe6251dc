#!/usr/bin/env bash
# Runs `ltx-jax train CONFIG [key=value ...]` on every worker of a TPU VM slice at once.
# Usage: TPU_NAME=my-v5p ZONE=us-east5-a launch/tpu_vm.sh configs/ltxv-2b-pretrain.yaml run_dir=gs://bucket/run
# Hyperparameters live in the config; this script only fans the same command out to all workers.
# jax.distributed finds the other workers itself on TPU VMs (ltx_jax.train.init_distributed).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_DIR="${REPO_DIR:-~/ltx_jax}"
CMD="cd ${REPO_DIR} && LTX_JAX_DISTRIBUTED=on .venv/bin/python -m ltx_jax train $(printf '%q ' "$@")"
exec gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" ${PROJECT:+--project "$PROJECT"} \
  --worker=all --command "${CMD}"
