#!/usr/bin/env bash
# The quickstart's main job: set up .venv, then generate a short clip from a prompt.
# Until training lands this uses a tiny, randomly initialised model (T5, DiT and VAE in JAX):
# it shows the text-to-video path end to end on a CPU; the clip is structured noise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/env.sh
exec .venv/bin/ltx-jax generate --random-tiny --prompt "a red car driving through the city at night" \
  --out runs/quickstart "$@"
