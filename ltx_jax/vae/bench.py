"""Video-VAE benchmark: compile time, steady-state encode and decode time, peak memory, JSON out.

Random weights (`jit_init`, made on the device) of a released variant's shapes, so no download is
needed. Encode and decode are compiled ahead of time (`lower().compile()`), their compiled memory
analysis is reported, then they are timed in steady state. A baseline run in the same process
gives a ratio: the untiled decode when the run under test is tiled, otherwise float32 when it is
bfloat16/float16 (`--baseline none` skips it).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.bench import _memory, _timed, hardware
from ltx_jax.convert.vae import abstract_vae
from ltx_jax.nn.layers import jit_init
from ltx_jax.sample import add_video_size_arguments
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import VARIANTS
from ltx_jax.vae.tiling import DecodeTiling


@dataclasses.dataclass(frozen=True)
class _Run:
    name: str
    dtype: str
    tiling: DecodeTiling | None


def _compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _bench_one(variant: str, run: _Run, video_shape, iters: int, seed: int, models: dict,
               encode_too: bool = True) -> dict[str, Any]:
    cfg, dtype = VARIANTS[variant], jnp.dtype(run.dtype)
    if run.dtype not in models:  # one random model per dtype, shared by the runs
        models[run.dtype] = nnx.split(jit_init(
            lambda rngs: CausalVideoAutoencoder(cfg, dtype=dtype, param_dtype=dtype, rngs=rngs), seed))
    graphdef, state = models[run.dtype]
    vae = nnx.merge(graphdef, state)
    rng = np.random.default_rng(seed)
    video = jnp.asarray(rng.uniform(-1, 1, video_shape), dtype)
    z = jnp.asarray(rng.standard_normal(vae.latent_shape(video_shape)), dtype)
    t = jnp.full((video_shape[0],), 0.05, jnp.float32) if cfg.timestep_conditioning else None

    def encode(st, x):
        return nnx.merge(graphdef, st).encode(x)

    def decode(st, latents, timestep):
        return nnx.merge(graphdef, st).decode(latents, timestep, tiling=run.tiling)

    dec, dec_compile = _compile(decode, state, z, t)
    out = {"name": run.name, "dtype": run.dtype,
           "tiling": dataclasses.asdict(run.tiling) if run.tiling else None, "decode_compile_s": dec_compile}
    programs = [("decode", dec, (state, z, t))]
    if encode_too:  # tiling only changes the decoder: an untiled baseline skips the same encode
        enc, out["encode_compile_s"] = _compile(encode, state, video)
        programs.insert(0, ("encode", enc, (state, video)))
    for key, fn, args in programs:
        jax.block_until_ready(fn(*args))  # warm-up
        times = _timed(fn, args, iters)
        out[f"{key}_ms_median"] = 1e3 * float(np.median(times))
        out[f"{key}_ms_min"] = 1e3 * float(np.min(times))
        mem = _memory(fn)
        out[f"{key}_memory"] = mem
        out[f"{key}_peak_bytes"] = (
            None if mem is None else sum(mem.get(k, 0) for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"))
        )
    out["iters"] = iters
    return out


def bench_vae(variant: str = "0.9.1", *, frames: int = 121, height: int = 512, width: int = 768,
              batch: int = 1, dtype: str = "bfloat16", tiling: DecodeTiling | None = None,
              memory_budget: int | None = None, baseline: str | None = "auto", iters: int = 5,
              seed: int = 0) -> dict[str, Any]:
    """Encode + decode of one video size; `baseline` "auto" / "untiled" / "float32" / None."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown VAE variant {variant!r}; known: {', '.join(VARIANTS)}")
    shape = (batch, frames, height, width, VARIANTS[variant].in_channels)
    abstract = abstract_vae(VARIANTS[variant])
    latent = abstract.latent_shape(shape)  # validates the size (nearest valid sizes on error)
    if memory_budget is not None:
        if tiling is not None:
            raise ValueError("pass either a tile size or --memory-budget, not both")
        tiling = abstract.decode_tiling(latent, memory_budget, jnp.dtype(dtype))
    runs = [_Run("test", dtype, tiling)]
    if baseline == "auto":
        baseline = "untiled" if tiling is not None else ("float32" if dtype != "float32" else None)
    if baseline == "untiled" and tiling is not None:
        runs.append(_Run("baseline_untiled", dtype, None))
    elif baseline == "float32" and dtype != "float32":
        runs.append(_Run("baseline_float32", "float32", tiling))
    elif baseline not in (None, "none", "untiled", "float32"):
        raise ValueError(f"unknown baseline {baseline!r}; known: auto, untiled, float32, none")
    result = {
        "bench": "vae", "hardware": hardware(), "variant": variant, "dtype": dtype,
        "shape": {"batch": batch, "frames": frames, "height": height, "width": width,
                  "latent": list(latent[1:4]), "latent_channels": latent[4]},
    }
    models: dict = {}
    result["runs"] = [_bench_one(variant, r, shape, iters, seed, models, encode_too=r.name != "baseline_untiled")
                      for r in runs]
    if len(result["runs"]) == 2:
        test, base = result["runs"]
        result["baseline"] = base["name"]
        result["decode_time_ratio_vs_baseline"] = test["decode_ms_median"] / base["decode_ms_median"]
        if "encode_ms_median" in base:
            result["encode_time_ratio_vs_baseline"] = test["encode_ms_median"] / base["encode_ms_median"]
        if test["decode_peak_bytes"] and base["decode_peak_bytes"]:
            result["decode_memory_ratio_vs_baseline"] = test["decode_peak_bytes"] / base["decode_peak_bytes"]
    return result


def add_bench_arguments(p) -> None:
    p.add_argument("--variant", default="0.9.1", help=f"VAE variant: {', '.join(VARIANTS)}")
    add_video_size_arguments(p, 121, 512, 768)
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"), help="compute and storage dtype")
    p.add_argument("--tile", type=int, default=0, help="spatial decode tile size in pixels (0: no spatial tiles)")
    p.add_argument("--tile-stride", type=int, default=0, help="spatial tile stride in pixels (0: tile - tile/8 rounded to 32)")
    p.add_argument("--tile-frames", type=int, default=0, help="temporal decode tile in pixel frames, 8k (0: none)")
    p.add_argument("--tile-frames-stride", type=int, default=8, help="temporal tile stride in pixel frames, 8k")
    p.add_argument("--memory-budget", type=float, default=None, help="decode memory budget in GiB (auto tiling)")
    p.add_argument("--baseline", default="auto", help="auto, untiled, float32 or none")
    p.add_argument("--iters", type=int, default=5, help="timed iterations")


def run_bench(args) -> dict[str, Any]:
    tiling = None
    if args.tile or args.tile_frames:
        stride = args.tile_stride or (args.tile - max(32, args.tile // 8 // 32 * 32) if args.tile > 32 else args.tile)
        tiling = DecodeTiling(
            tile_height=args.tile or None, tile_width=args.tile or None,
            stride_height=stride or 448, stride_width=stride or 448,
            tile_frames=args.tile_frames or None, stride_frames=args.tile_frames_stride,
        )
    budget = None if args.memory_budget is None else int(args.memory_budget * 2**30)
    return bench_vae(
        args.variant, frames=args.frames, height=args.height, width=args.width, batch=args.batch,
        dtype=args.dtype, tiling=tiling, memory_budget=budget,
        baseline=None if args.baseline == "none" else args.baseline, iters=args.iters,
    )
