#!/usr/bin/env bash
# The quickstart's main job: set up .venv, then
#   1. train a tiny DiT on the built-in synthetic dataset (configs/smoke.yaml, CPU, under a minute),
#   2. generate a short clip with a tiny, randomly initialised text-to-video model (T5, DiT, VAE).
# Nothing is downloaded. Extra arguments are config overrides for the training run (steps=300).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/env.sh
echo "== 1/2 train: configs/smoke.yaml -> runs/quickstart/train (rerunning resumes) =="
.venv/bin/ltx-jax train configs/smoke.yaml run_dir=runs/quickstart/train "$@"
echo "== 2/2 generate: tiny random model -> runs/quickstart/clip (structured noise: no trained weights) =="
.venv/bin/ltx-jax generate --random-tiny --prompt "a red car driving through the city at night" \
  --out runs/quickstart/clip
