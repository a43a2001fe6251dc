"""`ltx-jax bench sample`: the whole sampling loop and the VAE decode at full size, random weights.

Defaults: `ltxv-2b` at 768x512x121, 20 steps with CFG (two batched branches), bfloat16, a 0.9.1
VAE (timestep-conditioned decoder). Weights are random (`jit_init`, made on the device, nothing is
downloaded) and the T5 output is random too (prompt embeddings are cached per prompt in real runs,
so T5 is not part of the per-video cost). Reported: compile time of the one-program denoising
loop, steady-state denoise time per video and per step, VAE decode time (compile and steady),
effective TFLOP/s from `ltx_jax.flops.dit_forward_flops`, peak device memory, and the ratio
against a baseline run in the same process: the same steps dispatched one jitted step at a time
from Python (what a step-by-step PyTorch-style loop does), which isolates the one-program loop.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.bench import _memory, hardware
from ltx_jax.config import dit_config
from ltx_jax.diffusion.guidance import diffusers_guidance
from ltx_jax.diffusion.sampler import Conditioning, _denoise_jit, transformer_model_fn
from ltx_jax.diffusion.schedules import schedule_from_config
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.flops import dit_forward_flops
from ltx_jax.nn.layers import jit_init
from ltx_jax.pipeline_inputs import latent_grid
from ltx_jax.sample import DIFFUSERS_SCHEDULER, add_video_size_arguments
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import VARIANTS as VAE_VARIANTS


def _peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def _median_time(fn, iters: int) -> float:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_sample(
    variant: str = "ltxv-2b", *, vae: str = "0.9.1", frames: int = 121, height: int = 512, width: int = 768,
    steps: int = 20, guidance_scale: float = 3.0, text_len: int = 128, dtype: str = "bfloat16",
    attention: str = "auto", iters: int = 2, baseline: bool = True, decode: bool = True, seed: int = 0,
) -> dict[str, Any]:
    """Times one video: denoising (one jitted loop) and decoding, at a video size with random weights."""
    f, h, w = latent_grid(frames, height, width)
    cfg = dit_config(variant, dtype=dtype, param_dtype=dtype, attention_impl=attention)
    dit = jit_init(lambda rngs: Transformer3D(cfg, rngs=rngs), seed)
    key = jax.random.key(seed)
    k_lat, k_text, k_neg, k_loop = jax.random.split(key, 4)
    latents = jax.random.normal(k_lat, (1, f, h, w, cfg.in_channels), jnp.float32)
    text = jax.random.normal(k_text, (1, text_len, cfg.caption_channels), jnp.float32)
    neg = jax.random.normal(k_neg, (1, text_len, cfg.caption_channels), jnp.float32)
    mask = jnp.ones((1, text_len), jnp.float32)
    cond = Conditioning(text_embeds=text, text_mask=mask, neg_text_embeds=neg, neg_text_mask=mask)
    sigmas = jnp.asarray(schedule_from_config(DIFFUSERS_SCHEDULER, steps, f * h * w))
    guidance = diffusers_guidance(steps, guidance_scale)
    model_fn, params = transformer_model_fn(dit, frame_rate=25.0)

    t0 = time.perf_counter()
    lowered = _denoise_jit.lower(model_fn, params, latents, sigmas, cond, guidance, k_loop, False)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    run = lambda: compiled(params, latents, sigmas, cond, guidance, k_loop)  # noqa: E731
    jax.block_until_ready(run())  # warm-up
    denoise_s = _median_time(run, iters)

    branches = guidance.num_branches
    flops_step = dit_forward_flops(cfg, batch=branches, video_tokens=f * h * w, text_tokens=text_len)
    result: dict[str, Any] = {
        "bench": "sample", "hardware": hardware(), "variant": variant, "vae": vae, "dtype": dtype,
        "shape": {"frames": frames, "height": height, "width": width, "latent": [f, h, w],
                  "video_tokens": f * h * w, "text_tokens": text_len},
        "steps": steps, "guidance_scale": guidance_scale, "branches": branches,
        "denoise": {"compile_s": compile_s, "video_s": denoise_s, "step_ms": 1e3 * denoise_s / steps,
                    "flops_per_video": flops_step * steps,
                    "tflops_per_s": flops_step * steps / denoise_s / 1e12, "memory": _memory(compiled)},
    }

    if baseline:
        # Same work, one jitted step per Python call (a one-step schedule per call).
        one = guidance.replace(cfg_scale=guidance.cfg_scale[:1], stg_scale=guidance.stg_scale[:1],
                               rescale=guidance.rescale[:1])

        def stepwise():
            x = latents
            for i in range(steps):
                x = _denoise_jit(model_fn, params, x, sigmas[i:i + 1], cond, one, k_loop, False)
            return x

        t0 = time.perf_counter()
        jax.block_until_ready(stepwise())
        base_first = time.perf_counter() - t0
        base_s = _median_time(stepwise, iters)
        result["baseline"] = {"name": "python_step_loop", "first_call_s": base_first, "video_s": base_s}
        result["speedup_vs_baseline"] = base_s / denoise_s

    if decode:
        vcfg = VAE_VARIANTS[vae]
        model = jit_init(lambda rngs: CausalVideoAutoencoder(vcfg, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype),
                                                        rngs=rngs), seed + 1)
        if vcfg.latent_channels != cfg.in_channels:
            raise ValueError(f"VAE {vae!r} has {vcfg.latent_channels} latent channels, DiT {variant!r} takes {cfg.in_channels}")
        z = jax.block_until_ready(run())
        t = 0.05 if vcfg.timestep_conditioning else None
        t0 = time.perf_counter()
        jax.block_until_ready(model.decode(z, t))
        first = time.perf_counter() - t0
        dec_s = _median_time(lambda: model.decode(z, t), iters)
        result["decode"] = {"first_call_s": first, "compile_s": max(first - dec_s, 0.0), "video_s": dec_s}
        result["video_s"] = denoise_s + dec_s
    result["peak_bytes_in_use"] = _peak_bytes()
    return result


def add_bench_arguments(p) -> None:
    p.add_argument("--variant", default="ltxv-2b", help="DiT variant row")
    p.add_argument("--vae", default="0.9.1", choices=sorted(VAE_VARIANTS), help="VAE variant")
    add_video_size_arguments(p, 121, 512, 768)
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--guidance-scale", type=float, default=3.0, help="CFG scale (> 1 batches two branches)")
    p.add_argument("--text-len", type=int, default=128, help="text tokens")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"), help="compute and storage dtype")
    p.add_argument("--attention", default="auto", help="attention impl")
    p.add_argument("--iters", type=int, default=2, help="timed videos")
    p.add_argument("--no-baseline", action="store_true", help="skip the step-by-step baseline")
    p.add_argument("--no-decode", action="store_true", help="skip the VAE decode")
    p.add_argument("--vs-diffusers", action="store_true", help="also time diffusers (needs torch with CUDA)")


def run_bench(args) -> dict[str, Any]:
    common = dict(vae=args.vae, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
                  guidance_scale=args.guidance_scale, text_len=args.text_len, dtype=args.dtype, iters=args.iters,
                  decode=not args.no_decode)
    theirs = None
    if args.vs_diffusers:
        from ltx_jax.pipeline_bench_diffusers import bench_diffusers, require_cuda

        require_cuda()
        # diffusers first: it frees its memory afterwards, while JAX keeps what it reserved.
        theirs = bench_diffusers(args.variant, **common)
    result = bench_sample(args.variant, attention=args.attention, baseline=not args.no_baseline, **common)
    if theirs is not None:
        result["diffusers"] = theirs
        ratios = {"denoise": theirs["denoise"]["video_s"] / result["denoise"]["video_s"]}
        if "video" in theirs and "video_s" in result:
            ratios["video"] = theirs["video"]["video_s"] / result["video_s"]
        result["speedup_vs_diffusers"] = ratios
        print("speedup vs diffusers: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), file=sys.stderr)
    return result
