"""The diffusers side of `ltx-jax bench sample --vs-diffusers`: diffusers' `LTXPipeline` timed on
the same random-weight configuration (our DiT variant and VAE variant mapped to diffusers configs),
the same video size, steps, CFG, text length and dtype.

diffusers is timed without its T5 (random prompt embeddings, as our bench does): "denoise" is a
call with `output_type="latent"`, "video" one with `output_type="pt"` (denoise plus the
timestep-conditioned decode at t = 0.05, as our bench decodes). Weights are diffusers' own random
init, made on the device; only timings matter here.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from ltx_jax.config import dit_config
from ltx_jax.convert.transformer import config_to_diffusers
from ltx_jax.pipeline_inputs import latent_grid
from ltx_jax.sample import DIFFUSERS_SCHEDULER
from ltx_jax.vae.config import VARIANTS as VAE_VARIANTS

DECODE_TIMESTEP = 0.05  # what our bench decodes with (timestep-conditioned VAEs)


def diffusers_configs(variant: str, vae: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(LTXVideoTransformer3DModel kwargs, AutoencoderKLLTXVideo kwargs) of our variants."""
    dit = config_to_diffusers(dit_config(variant))
    vcfg = VAE_VARIANTS[vae]
    if vcfg.latent_channels != dit["in_channels"]:
        raise ValueError(f"VAE {vae!r} has {vcfg.latent_channels} latent channels, DiT {variant!r} takes "
                         f"{dit['in_channels']}")
    v = vcfg.to_diffusers()
    for cfg in (dit, v):
        cfg.pop("_class_name")
    return dit, v


def require_cuda() -> None:
    """Refuses clearly where diffusers cannot be timed on a GPU."""
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as e:
        raise ValueError(f"--vs-diffusers needs torch and diffusers ({e}); run without it") from None
    if not torch.cuda.is_available():
        raise ValueError("--vs-diffusers needs torch with CUDA (this machine has none); run without it")


def bench_diffusers(
    variant: str = "ltxv-2b", *, vae: str = "0.9.1", frames: int = 121, height: int = 512, width: int = 768,
    steps: int = 20, guidance_scale: float = 3.0, text_len: int = 128, dtype: str = "bfloat16", iters: int = 2,
    decode: bool = True, seed: int = 0, device: str = "cuda",
) -> dict[str, Any]:
    """Times diffusers' LTXPipeline (first call and median steady state) on `device`."""
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    f, h, w = latent_grid(frames, height, width)
    dit_kw, vae_kw = diffusers_configs(variant, vae)
    tdtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    torch.manual_seed(seed)
    with torch.device(device):
        transformer = LTXVideoTransformer3DModel(**dit_kw).to(tdtype).eval()
        autoencoder = AutoencoderKLLTXVideo(**vae_kw).to(tdtype).eval()
    pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(DIFFUSERS_SCHEDULER), vae=autoencoder,
                       text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator(device).manual_seed(seed)
    c, cap = dit_kw["in_channels"], dit_kw["caption_channels"]
    embeds = torch.randn((1, text_len, cap), generator=g, device=device, dtype=tdtype)
    neg = torch.randn((1, text_len, cap), generator=g, device=device, dtype=tdtype)
    mask = torch.ones((1, text_len), device=device, dtype=torch.long)
    latents = torch.randn((1, f * h * w, c), generator=g, device=device, dtype=tdtype)  # packed [B, L, C]

    def call(output_type: str):
        with torch.no_grad():
            out = pipe(height=height, width=width, num_frames=frames, num_inference_steps=steps,
                       guidance_scale=guidance_scale, prompt_embeds=embeds, prompt_attention_mask=mask,
                       negative_prompt_embeds=neg, negative_prompt_attention_mask=mask, latents=latents.clone(),
                       decode_timestep=DECODE_TIMESTEP, decode_noise_scale=0.0, output_type=output_type,
                       return_dict=False)[0]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    def timed(output_type: str) -> dict[str, float]:
        t0 = time.perf_counter()
        call(output_type)
        first = time.perf_counter() - t0
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            call(output_type)
            times.append(time.perf_counter() - t0)
        times.sort()
        return {"first_call_s": first, "video_s": times[len(times) // 2]}

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result: dict[str, Any] = {
        "name": "diffusers.LTXPipeline", "torch": torch.__version__, "device": device, "dtype": dtype,
        "denoise": timed("latent"),
    }
    result["denoise"]["step_ms"] = 1e3 * result["denoise"]["video_s"] / steps
    if decode:
        result["video"] = timed("pt")
    if device.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name()
        result["peak_bytes_allocated"] = int(torch.cuda.max_memory_allocated())
    del pipe, transformer, autoencoder
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # give the memory back before JAX allocates
    return result
