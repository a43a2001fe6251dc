#!/usr/bin/env bash
# Every GPU measurement the README asks for, in three parts that each fit the device tool's
# 10-minute call: bash launch/gpu_session.sh OUTDIR {attention|models|train}
# Runs from the repository root with the machine's own Python (jax, flax, optax, orbax,
# transformers preinstalled); nothing is installed or downloaded. Each command writes JSON into
# OUTDIR and a failure of one does not stop the others.
set -u
out=${1:?usage: launch/gpu_session.sh OUTDIR attention|models|train}
part=${2:?usage: launch/gpu_session.sh OUTDIR attention|models|train}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
run() { echo "== $*"; "$@" || echo "!! failed ($?): $*"; }
case "$part" in
  attention)  # cuDNN numerics; then kernel accuracy, autotune (record), benchmark (~8 min)
    run "$py" launch/gpu_check.py | tee "$out/gpu_check.json"
    LTX_JAX_FLASH_BLOCKS="$out/flash_blocks.json" run "$py" -m ltx_jax.nn.kernels.bench_attention "$out/attention.json" ;;
  models)  # one DiT step, VAE decode at the README's target shape, a 20-step t2v video
    run "$py" -m ltx_jax bench dit --out "$out/dit.json"
    run "$py" -m ltx_jax bench vae --frames 121 --height 512 --width 768 --out "$out/vae.json"
    run "$py" -m ltx_jax bench sample --out "$out/sample.json" ;;
  train)  # the 2B train step's MFU on one GPU (bf16, remat by the config)
    run "$py" -m ltx_jax bench train --config configs/ltxv-2b-pretrain.yaml --iters 5 --out "$out/train.json" ;;
  *) echo "unknown part $part (attention|models|train)"; exit 2 ;;
esac
