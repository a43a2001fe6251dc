"""Benchmarks that write JSON: compile time vs steady state, memory, throughput, and a baseline ratio.

`bench_dit` times one Transformer3D forward pass (a denoising step without guidance) with random
weights, so it needs no download. It compiles ahead of time (`lower().compile()`), reports the
compiled program's memory analysis, then times steady-state runs. The baseline is the same model
with the reference `xla` attention, run in the same process, so the ratio isolates the attention
implementation. Timed tests do not exist: speed is measured here.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.config import dit_config
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.flops import dit_forward_flops
from ltx_jax.nn.layers import jit_init
from ltx_jax.sample import add_video_size_arguments, latent_grid


def hardware() -> dict[str, Any]:
    """What ran the benchmark."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform, "device_kind": dev.device_kind, "device_count": jax.device_count(),
        "jax": jax.__version__, "python": platform.python_version(), "host": platform.node(),
    }


def _timed(fn, args, iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


def _memory(compiled) -> dict[str, int] | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "generated_code_size_in_bytes")
    return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def _run_dit(cfg, inputs, iters, seed):
    # Random weights made on the device directly (no host copy of a 2B/13B model).
    graphdef, state = nnx.split(jit_init(lambda rngs: Transformer3D(cfg, rngs=rngs), seed))

    def forward(state, latents, t, text, mask):
        return nnx.merge(graphdef, state)(latents, t, text, mask)

    t0 = time.perf_counter()
    lowered = jax.jit(forward).lower(state, *inputs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(state, *inputs))  # warm-up
    times = _timed(compiled, (state, *inputs), iters)
    del state
    return {
        "attention_impl": cfg.attention_impl, "trace_lower_s": t1 - t0, "compile_s": t2 - t1,
        "step_ms_median": 1e3 * float(np.median(times)), "step_ms_min": 1e3 * float(np.min(times)),
        "iters": iters, "memory": _memory(compiled),
    }


def bench_dit(
    variant: str = "ltxv-2b", *, frames: int = 121, height: int = 512, width: int = 768,
    batch: int = 1, text_len: int = 128, dtype: str = "bfloat16", attention: str = "auto",
    baseline: str | None = "xla", iters: int = 10, seed: int = 0, remat_policy: str = "none",
) -> dict[str, Any]:
    """One DiT forward pass at a video size, against a baseline attention implementation."""
    f, h, w = latent_grid(frames, height, width)
    cfg = dit_config(variant, dtype=dtype, param_dtype=dtype, attention_impl=attention, remat_policy=remat_policy)
    rng = np.random.default_rng(seed)
    inputs = (
        jnp.asarray(rng.standard_normal((batch, f, h, w, cfg.in_channels)), cfg.dtype),
        jnp.full((batch,), 0.5, jnp.float32),
        jnp.asarray(rng.standard_normal((batch, text_len, cfg.caption_channels)), cfg.dtype),
        jnp.ones((batch, text_len), jnp.int32),
    )
    tokens = f * h * w
    flops = dit_forward_flops(cfg, batch=batch, video_tokens=tokens, text_tokens=text_len)
    result = {
        "bench": "dit_forward", "hardware": hardware(), "variant": variant,
        "shape": {"batch": batch, "frames": frames, "height": height, "width": width,
                  "latent": [f, h, w], "video_tokens": tokens, "text_tokens": text_len},
        "dtype": dtype, "flops_per_step": flops,
    }
    runs = [_run_dit(cfg, inputs, iters, seed)]
    if baseline is not None and baseline != attention:
        import dataclasses

        runs.append(_run_dit(dataclasses.replace(cfg, attention_impl=baseline), inputs, iters, seed))
    for r in runs:
        r["tflops_per_s"] = flops / (r["step_ms_median"] * 1e-3) / 1e12
    result["runs"] = runs
    if len(runs) == 2:
        result["speedup_vs_baseline"] = runs[1]["step_ms_median"] / runs[0]["step_ms_median"]
    return result


# `ltx-jax bench WHAT`: WHAT -> module providing `add_bench_arguments(p)` and
# `run_bench(args) -> dict`. A bench appears once its module exists.
BENCHES = {
    "dit": "ltx_jax.bench",
    "attention": "ltx_jax.nn.kernels.bench_attention",
    "vae": "ltx_jax.vae.bench",
    "sample": "ltx_jax.pipeline_bench",
    "train": "ltx_jax.train_bench",
}


def add_bench_arguments(p) -> None:
    p.add_argument("--variant", default="ltxv-2b", help="DiT variant row")
    add_video_size_arguments(p, 121, 512, 768)
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--text-len", type=int, default=128, help="text tokens")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"), help="compute and storage dtype")
    p.add_argument("--attention", default="auto", help="attention impl under test")
    p.add_argument("--baseline", default="xla", help="baseline attention impl, or 'none'")
    p.add_argument("--remat", default="none", help="remat policy name")
    p.add_argument("--iters", type=int, default=10, help="timed iterations")


def run_bench(args) -> dict[str, Any]:
    return bench_dit(
        args.variant, frames=args.frames, height=args.height, width=args.width, batch=args.batch,
        text_len=args.text_len, dtype=args.dtype, attention=args.attention,
        baseline=None if args.baseline == "none" else args.baseline, iters=args.iters,
        remat_policy=args.remat,
    )


def add_arguments(p) -> None:
    import argparse
    import importlib

    from ltx_jax.cli import _exists

    whats = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what, module in BENCHES.items():
        if not _exists(module):
            continue
        mod = importlib.import_module(module)
        q = whats.add_parser(what, help=f"{what} benchmark", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                             description=(mod.__doc__ or what).strip().split("\n\n")[0])
        mod.add_bench_arguments(q)
        q.add_argument("--out", default=None, help="also write the JSON to this file")
        q.set_defaults(bench=mod.run_bench)


def main(args) -> int:
    print(write_json(args.bench(args), args.out))
    return 0


def write_json(result: dict[str, Any], path: str | None) -> str:
    text = json.dumps(result, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    return text
