"""Entry point: text -> video with the JAX components (T5, Transformer3D, VAE, sampler).

`text_to_video` follows diffusers' `LTXPipeline` (the default semantics of api.md): T5 runs without
its attention mask (the mask is used in cross-attention only), latents are sampled in the
normalised space with the token-count-shifted schedule and CFG batched into one model call, the
whole denoising loop is one jitted program, and decode noise is added to de-normalised latents
before the timestep-conditioned decoder runs its last denoising step.

`tiny_random_components` builds a tiny, randomly initialised set of components (nothing is
downloaded), which is what the quickstart runs until trained weights can be loaded.
The full `LTXPipeline` (image conditioning, official semantics, STG) is issue 4's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.config import dit_config
from ltx_jax.diffusion.guidance import diffusers_guidance
from ltx_jax.diffusion.sampler import Conditioning, denoise, transformer_model_fn
from ltx_jax.diffusion.schedules import schedule_from_config
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.nn.layers import jit_init
from ltx_jax.text.t5 import T5Config, T5Encoder
from ltx_jax.text.tokenizer import encode_prompts
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import VARIANTS as VAE_VARIANTS

# diffusers' LTX-Video scheduler_config.json (FlowMatchEulerDiscreteScheduler).
DIFFUSERS_SCHEDULER = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
    "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
    "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1,
    "time_shift_type": "exponential",
}


@dataclasses.dataclass
class Components:
    """Everything text_to_video needs."""

    tokenizer: Any
    text_encoder: T5Encoder
    transformer: Transformer3D
    vae: CausalVideoAutoencoder
    scheduler_config: dict


def latent_grid(frames: int, height: int, width: int, vae_scale=(8, 32, 32)) -> tuple[int, int, int]:
    """Pixel video size -> latent (F', H', W'), refusing sizes the VAE cannot produce."""
    st, ss = vae_scale[0], vae_scale[1]
    if frames < 1 or (frames - 1) % st:
        lo = (frames - 1) // st * st + 1
        raise ValueError(f"frames={frames} is not {st}k+1; nearest valid: {max(lo, 1)}, {lo + st}")
    for name, n in (("height", height), ("width", width)):
        if n < ss or n % ss:
            lo = max(n // ss * ss, ss)
            raise ValueError(f"{name}={n} is not a positive multiple of {ss}; nearest valid: {lo}, {lo + ss}")
    return (frames - 1) // st + 1, height // ss, width // ss


def tiny_tokenizer():
    """A small T5 tokenizer built offline (unigram pieces: letters and common words)."""
    from transformers import T5TokenizerFast

    words = ("a the of and in on with red green blue cat dog car sky sea city street walking running "
             "flying camera slowly fast sunset night day forest mountain river person woman man").split()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -2.0) for w in words] + [("\u2581", -3.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.!?'-"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def tiny_random_components(seed: int = 0) -> Components:
    """Tiny random T5 (width 24), DiT (`tiny` variant) and VAE (`tiny-0.9.1`, t-conditioned)."""
    tokenizer = tiny_tokenizer()
    t5_cfg = T5Config(vocab_size=len(tokenizer), d_model=24, d_kv=8, d_ff=48, num_heads=3, num_layers=2)
    t5 = jit_init(lambda: T5Encoder(t5_cfg, rngs=nnx.Rngs(seed)))
    dit = jit_init(lambda: Transformer3D(dit_config("tiny"), rngs=nnx.Rngs(seed + 1)))
    vae = jit_init(lambda: CausalVideoAutoencoder(VAE_VARIANTS["tiny-0.9.1"], rngs=nnx.Rngs(seed + 2)))
    return Components(tokenizer, t5, dit, vae, dict(DIFFUSERS_SCHEDULER))


def text_to_video(
    c: Components,
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    *,
    num_frames: int = 17,
    height: int = 64,
    width: int = 96,
    frame_rate: float = 25.0,
    num_inference_steps: int = 8,
    guidance_scale: float = 3.0,
    decode_timestep: float = 0.05,
    decode_noise_scale: float | None = None,
    max_sequence_length: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Generates videos, diffusers `LTXPipeline` semantics.

    Returns:
      float32 [B, num_frames, height, width, 3] in [0, 1].
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
    spatial, temporal = c.vae.spatial_compression, c.vae.temporal_compression
    f, h, w = latent_grid(num_frames, height, width, (temporal, spatial, spatial))
    use_cfg = guidance_scale > 1.0

    # Text: diffusers runs T5 without its mask and uses the mask in cross-attention only.
    def embed(texts):
        ids, mask = encode_prompts(c.tokenizer, texts, max_sequence_length)
        return c.text_encoder(jnp.asarray(ids)), jnp.asarray(mask)

    text, text_mask = embed(prompts)
    neg_text, neg_mask = embed(negatives) if use_cfg else (None, None)

    key = jax.random.key(seed)
    noise_key, decode_key = jax.random.split(key)
    b, ch = len(prompts), c.transformer.config.in_channels
    latents = jax.random.normal(noise_key, (b, f, h, w, ch), jnp.float32)
    sigmas = schedule_from_config(c.scheduler_config, num_inference_steps, f * h * w)
    model_fn, params = transformer_model_fn(c.transformer, frame_rate=frame_rate, vae_scale=(temporal, spatial, spatial))
    cond = Conditioning(text_embeds=text, text_mask=text_mask, neg_text_embeds=neg_text, neg_text_mask=neg_mask)
    guidance = diffusers_guidance(len(sigmas), guidance_scale, use_cfg=use_cfg)
    latents = denoise(model_fn, params, latents, jnp.asarray(sigmas), cond, guidance, key=key)

    # Decode: de-normalise, add decode noise there (diffusers), let the decoder finish denoising.
    latents = c.vae.denormalize(latents)
    if c.vae.cfg.timestep_conditioning:
        scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
        noise = jax.random.normal(decode_key, latents.shape, jnp.float32)
        latents = (1.0 - scale) * latents + scale * noise
        video = c.vae.decode(latents, jnp.full((b,), decode_timestep, jnp.float32))
    else:
        video = c.vae.decode(latents)
    return np.asarray(jnp.clip((video + 1.0) / 2.0, 0.0, 1.0), np.float32)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float) -> str | None:
    """Writes [F, H, W, 3] in [0, 1] as H.264 mp4 with PyAV; returns the path, or None without PyAV."""
    try:
        import av
    except ImportError:
        return None
    path = str(path)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in (frames * 255).round().astype(np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def generate_random_tiny(prompt: str, out_dir: str | os.PathLike, *, seed: int = 0, **kwargs) -> dict:
    """The quickstart job: a tiny random model generates a clip into out_dir (frames, mp4, JSON)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    components = tiny_random_components(seed)
    t1 = time.perf_counter()
    video = text_to_video(components, prompt, seed=seed, **kwargs)
    t2 = time.perf_counter()
    np.save(out / "frames.npy", video[0])
    mp4 = write_video(video[0], out / "clip.mp4", kwargs.get("frame_rate", 25.0))
    sidecar = {
        "prompt": prompt, "seed": seed, "weights": "tiny random (no trained weights)",
        "settings": {k: v for k, v in kwargs.items()}, "shape": list(video.shape[1:]),
        "files": ["frames.npy"] + (["clip.mp4"] if mp4 else []),
        "build_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3),
        "hardware": jax.devices()[0].device_kind,
    }
    (out / "clip.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def add_video_size_arguments(p, frames: int, height: int, width: int) -> None:
    """--frames/--height/--width options shared by the verbs that take a video size."""
    p.add_argument("--frames", type=int, default=frames, help="pixel frames, 8k+1")
    p.add_argument("--height", type=int, default=height, help="pixel height, multiple of 32")
    p.add_argument("--width", type=int, default=width, help="pixel width, multiple of 32")


def add_arguments(p) -> None:
    p.add_argument("--prompt", default="a red car driving through the city at night", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="negative prompt for CFG")
    p.add_argument("--random-tiny", action="store_true", help="use a tiny randomly initialised model (no weights needed)")
    add_video_size_arguments(p, 17, 64, 96)
    p.add_argument("--frame-rate", type=float, default=25.0, help="frames per second")
    p.add_argument("--steps", type=int, default=8, help="denoising steps")
    p.add_argument("--guidance-scale", type=float, default=3.0, help="CFG scale; <= 1 turns CFG off")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="runs/generate", help="output folder")


def main(args) -> int:
    if not args.random_tiny:
        raise ValueError(
            "only --random-tiny generation exists so far (loading pipeline folders comes with "
            "LTXPipeline, issue 4); pass --random-tiny"
        )
    result = generate_random_tiny(
        args.prompt, args.out, seed=args.seed, negative_prompt=args.negative_prompt,
        num_frames=args.frames, height=args.height, width=args.width, frame_rate=args.frame_rate,
        num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
    )
    print(f"wrote {', '.join(result['files'])} and clip.json to {args.out} "
          f"({result['shape'][0]} frames {result['shape'][1]}x{result['shape'][2]}, "
          f"{result['generate_s']:.1f} s; {result['weights']})")
    return 0
