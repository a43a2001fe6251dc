"""`LTXPipeline`: text (and image) to video with the JAX components (api.md "LTXPipeline").

Two reference behaviours, chosen per call with `semantics=`:
- `"diffusers"` (default): diffusers' `LTXPipeline`, and `LTXImageToVideoPipeline` when `image`
  is given. T5 runs without its mask (the mask is used in cross-attention only); the image is
  resized nearest-neighbour, encoded, normalised without the scaling factor and written into
  latent frame 0, which is then held fixed with per-token timestep 0; decode noise is mixed into
  the de-normalised latents.
- `"official"`: the original `ltx_video` `LTXVideoPipeline`: prompts stripped, T5 with its mask,
  STG / rescale / CFG-star / per-interval guidance with the official names, conditioning items
  with strengths at any frame (later frames become extra tokens with their own positions, see
  `pipeline_tokens`), image-conditioning noise, video-to-video from `media_items`, decode noise
  mixed into the normalised latents, and the official inference defaults. The sampler runs on
  the token sequence with the original's explicit positions.

Whatever the settings, the denoising loop is one jitted program per shape (`denoise`): the
schedule, guidance scales, conditioning strengths and the seed are traced values.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.diffusion.guidance import diffusers_guidance, official_guidance
from ltx_jax.diffusion.sampler import Conditioning, denoise, transformer_model_fn
from ltx_jax.diffusion.schedules import explicit_schedule, is_stochastic, schedule_from_config, skip_steps
from ltx_jax.pipeline_inputs import (DEFAULT, ConditioningItem, broadcast_batch, check_items, image_array,
                                     latent_grid, media_clip, negative_list, prompt_list, resize_crop_bilinear,
                                     resize_nearest, resolve)
from ltx_jax.pipeline_tokens import assemble, check_item_frames, grid_of
from ltx_jax.text.tokenizer import encode_prompts

Progress = Callable[[str, dict], None]


@functools.partial(jax.jit, static_argnums=0)
def _encode_text(graphdef, state, ids, mask):
    return nnx.merge(graphdef, state)(ids, mask)


class LTXPipeline:
    """Tokenizer + T5 + Transformer3D + VAE + the checkpoint's scheduler config.

    Attributes:
      tokenizer: a transformers T5 tokenizer.
      text_encoder: `T5Encoder`.
      transformer: `Transformer3D`.
      vae: `CausalVideoAutoencoder`.
      scheduler_config: the checkpoint's scheduler config dict (diffusers or official).
      timings: seconds per stage of the last call ("encode", "denoise", "decode").
    """

    def __init__(self, *, tokenizer, text_encoder, transformer, vae, scheduler_config: dict):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.vae = vae
        self.scheduler_config = dict(scheduler_config)
        self.timings: dict[str, float] = {}
        self._text_graph, self._text_state = nnx.split(text_encoder)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, text_encoder: str | os.PathLike | None = None,
                        dtype=jnp.float32, param_dtype=jnp.float32, text_encoder_dtype=None) -> "LTXPipeline":
        """Loads a diffusers pipeline folder, or a Lightricks single file plus a text encoder folder.

        Args:
          path: a diffusers folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/), or a
            Lightricks single `.safetensors` (transformer "model.diffusion_model." and "vae." tensors,
            the metadata "config" with "transformer", "vae" and "scheduler" sections). Local only.
          text_encoder: for a single file (required there): a folder holding text_encoder/ and
            tokenizer/ (the layout the official repository loads T5 from), or one T5 folder with
            the tokenizer files beside the weights. For a diffusers folder it replaces the folder's
            own text encoder and tokenizer.
          dtype, param_dtype: compute and storage dtypes of the transformer and the VAE.
          text_encoder_dtype: T5's dtypes (default: `dtype` / `param_dtype`).
        """
        from ltx_jax.convert.safetensors_io import CheckpointError
        from ltx_jax.convert.t5 import load_text_encoder
        from ltx_jax.convert.transformer import load_transformer
        from ltx_jax.convert.vae import load_vae
        from ltx_jax.diffusion.schedules import load_scheduler_config
        from ltx_jax.text.tokenizer import load_tokenizer

        root = Path(path)
        if root.is_file():
            if text_encoder is None:
                raise CheckpointError(f"{root} is a single-file checkpoint: pass text_encoder=FOLDER (a folder with "
                                      f"text_encoder/ and tokenizer/, or a T5 folder with its tokenizer files)")
            model_paths = (root, root, root)
        elif root.is_dir():
            text_parts = ("text_encoder", "tokenizer") if text_encoder is None else ()
            need = [d for d in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
                    if d not in ("text_encoder", "tokenizer") or d in text_parts]
            missing = [d for d in need if not (root / d).is_dir()]
            if missing:
                raise CheckpointError(
                    f"{root} is not a diffusers LTX-Video pipeline folder: missing sub-folder(s) {', '.join(missing)} "
                    f"(expected transformer/, vae/, text_encoder/, tokenizer/, scheduler/)"
                )
            model_paths = (root / "transformer", root / "vae", root)
        else:
            raise CheckpointError(f"pipeline folder not found: {root}")
        t5_dir, tok_dir = _text_encoder_dirs(root if text_encoder is None else Path(text_encoder))
        t_dtype = dtype if text_encoder_dtype is None else text_encoder_dtype
        t_param = param_dtype if text_encoder_dtype is None else text_encoder_dtype
        return cls(
            tokenizer=load_tokenizer(tok_dir),
            text_encoder=load_text_encoder(t5_dir, dtype=t_dtype, param_dtype=t_param),
            transformer=load_transformer(model_paths[0], dtype=dtype, param_dtype=param_dtype),
            vae=load_vae(model_paths[1], dtype=dtype, param_dtype=param_dtype),
            scheduler_config=load_scheduler_config(model_paths[2]),
        )

    # ------------------------------------------------------------------------------ pieces

    @property
    def vae_scale(self) -> tuple[int, int, int]:
        s = self.vae.spatial_compression
        return (self.vae.temporal_compression, s, s)

    def encode_prompt(self, prompts: Sequence[str], max_sequence_length: int, *, use_mask: bool,
                      strip: bool = True):
        """T5 embeddings [B, S, D] and the token mask [B, S].

        T5 attends with the mask iff `use_mask`; `strip` strips the prompts first. The official
        pipeline does both, diffusers neither.
        """
        ids, mask = encode_prompts(self.tokenizer, list(prompts), max_sequence_length, strip=strip)
        ids, mask = jnp.asarray(ids), jnp.asarray(mask)
        enc_mask = mask if use_mask else jnp.ones_like(mask)
        return _encode_text(self._text_graph, self._text_state, ids, enc_mask), mask

    def _normalize(self, z, *, scaling: bool):
        mean, std = self.vae.latents_mean[...], self.vae.latents_std[...]
        sf = self.vae.cfg.scaling_factor if scaling else 1.0
        return (z - mean) * sf / std

    def _denormalize(self, x, *, scaling: bool):
        mean, std = self.vae.latents_mean[...], self.vae.latents_std[...]
        sf = self.vae.cfg.scaling_factor if scaling else 1.0
        return x * std / sf + mean

    def encode_media(self, clip: np.ndarray, height: int, width: int, *, semantics: str) -> jax.Array:
        """[B, F, h, w, 3] in [0, 1] -> normalised latents [B, F', H', W', C] at (height, width).

        diffusers resizes nearest-neighbour and normalises without the scaling factor
        (`LTXImageToVideoPipeline`); the official pipeline center-crops, resizes bilinearly and
        normalises per channel (`vae_encode(vae_per_channel_normalize=True)`, no scaling factor).
        """
        b, f = clip.shape[:2]
        frames = clip.reshape((b * f,) + clip.shape[2:])  # [B, F, h, w, 3] -> [B*F, h, w, 3]
        resize = resize_nearest if semantics == "diffusers" else resize_crop_bilinear
        frames = resize(frames, height, width).reshape(b, f, height, width, 3)  # -> [B, F, H, W, 3]
        z = self.vae.encode(jnp.asarray(frames * 2.0 - 1.0))
        return self._normalize(z, scaling=False)

    # ------------------------------------------------------------------------------ call

    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] = "",
        *,
        height: int = 512,
        width: int = 704,
        num_frames: int = 161,
        frame_rate: float = 25,
        num_inference_steps: int = DEFAULT,
        guidance_scale: float | Sequence[float] = DEFAULT,
        image=None,
        latents=None,
        seed: int = 0,
        decode_timestep: float = DEFAULT,
        decode_noise_scale: float | None = DEFAULT,
        max_sequence_length: int = DEFAULT,
        output_type: str = "np",
        semantics: str = "diffusers",
        guidance_rescale: float = DEFAULT,
        stg_scale: float | Sequence[float] = DEFAULT,
        skip_block_list: Sequence[int] | Sequence[Sequence[int]] | None = DEFAULT,
        rescaling_scale: float | Sequence[float] = DEFAULT,
        cfg_star_rescale: bool = DEFAULT,
        guidance_timesteps: Sequence[float] | None = None,
        timesteps: Sequence[float] | None = None,
        skip_initial_inference_steps: int = 0,
        skip_final_inference_steps: int = 0,
        stochastic_sampling: bool | None = None,
        image_cond_noise_scale: float = DEFAULT,
        conditioning_items: Sequence[ConditioningItem] | None = None,
        media_items=None,
        skip_layer_strategy: str = "attention_values",
        decode_noise=None,
        progress: Progress | None = None,
    ):
        """Generates videos; see api.md "LTXPipeline".

        Arguments marked with a per-semantics default take diffusers' value under
        `semantics="diffusers"` (api.md's signature: 50 steps, guidance 3, decode timestep 0,
        128 tokens; STG, rescale, CFG-star and image noise off) and the official inference
        defaults under `semantics="official"` (40 steps, guidance 3, STG 1.0 on block 19,
        rescaling 0.7, decode timestep 0.05 / noise 0.025, image noise 0.15, 256 tokens).

        Args:
          prompt: a string or a non-empty list of strings (the batch B).
          negative_prompt: one string or one per prompt (used where CFG is on).
          height, width: pixels, multiples of 32; num_frames: 8k+1.
          frame_rate: frames per second (RoPE time coordinate).
          num_inference_steps: steps of the checkpoint's schedule (ignored with `timesteps`).
          guidance_scale: CFG scale; official semantics also take one value per guidance interval.
          image: conditions latent frame 0 (see `image_array`; also a file path).
          latents: initial noise [B, F', H', W', C] in the normalised latent space.
          seed: the PRNG seed of the noise, image-conditioning noise and decode noise.
          decode_timestep: timestep of the timestep-conditioned VAE decoder.
          decode_noise_scale: None means equal to decode_timestep; 0 adds no decode noise.
          max_sequence_length: T5 tokens.
          output_type: "np" ([B, F, H, W, 3] float32 in [0, 1]) or "latent" (normalised latents).
          semantics: "diffusers" or "official".
          guidance_rescale: diffusers' `rescale_noise_cfg` amount.
          stg_scale, skip_block_list, rescaling_scale, cfg_star_rescale, guidance_timesteps,
            timesteps, skip_initial_inference_steps, skip_final_inference_steps,
            stochastic_sampling, image_cond_noise_scale, conditioning_items, media_items,
            skip_layer_strategy: the official pipeline's arguments of the same names.
          decode_noise: optional decode noise [B, F', H', W', C] (instead of drawing it).
          progress: optional callback `progress(stage, info)` for "encode", "denoise", "decode".

        Returns:
          float32 [B, num_frames, height, width, 3] in [0, 1] (or latents for "latent").
        """
        s = resolve(semantics, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                    decode_timestep=decode_timestep, decode_noise_scale=decode_noise_scale,
                    max_sequence_length=max_sequence_length, guidance_rescale=guidance_rescale,
                    stg_scale=stg_scale, skip_block_list=skip_block_list, rescaling_scale=rescaling_scale,
                    cfg_star_rescale=cfg_star_rescale, image_cond_noise_scale=image_cond_noise_scale)
        official = semantics == "official"
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type={output_type!r} is not one of ('np', 'latent')")
        prompts = prompt_list(prompt)
        b = len(prompts)
        f, h, w = latent_grid(num_frames, height, width, self.vae_scale)
        c = self.transformer.config.in_channels
        if not official and (conditioning_items or media_items is not None):
            raise ValueError("conditioning_items and media_items belong to semantics='official'; "
                             "under 'diffusers' use image=")
        items = check_items(conditioning_items)
        report = progress or (lambda stage, info: None)
        timings: dict[str, float] = {}

        # Schedule: the checkpoint's, or explicit official `timesteps`, minus skipped steps.
        if timesteps is not None:
            sigmas = explicit_schedule(timesteps)
        else:
            sigmas = schedule_from_config(self.scheduler_config, s["num_inference_steps"], f * h * w)
        sigmas = skip_steps(sigmas, initial=skip_initial_inference_steps, final=skip_final_inference_steps)
        stochastic = is_stochastic(self.scheduler_config) if stochastic_sampling is None else bool(stochastic_sampling)

        # Guidance.
        if official:
            guidance = official_guidance(
                sigmas, guidance_scale=s["guidance_scale"], stg_scale=s["stg_scale"],
                rescaling_scale=s["rescaling_scale"], skip_block_list=s["skip_block_list"],
                guidance_timesteps=guidance_timesteps, cfg_star_rescale=s["cfg_star_rescale"],
                num_layers=self.transformer.config.num_layers)
        else:
            if not isinstance(s["guidance_scale"], (int, float)):
                raise ValueError(f"guidance_scale={s['guidance_scale']!r}: diffusers semantics take one number")
            for name in ("stg_scale", "cfg_star_rescale", "skip_block_list"):
                if s[name] not in (0.0, False, None):
                    raise ValueError(f"{name}={s[name]!r} is an official-pipeline option; pass semantics='official'")
            guidance = diffusers_guidance(len(sigmas), float(s["guidance_scale"]), float(s["guidance_rescale"]))

        # Text.
        t0 = time.perf_counter()
        report("encode", {"prompts": b})
        text, text_mask = self.encode_prompt(prompts, s["max_sequence_length"], use_mask=official, strip=official)
        neg_text = neg_mask = None
        if guidance.use_cfg:
            neg_text, neg_mask = self.encode_prompt(negative_list(negative_prompt, b), s["max_sequence_length"],
                                                    use_mask=official, strip=official)

        # Initial latents (normalised space) and conditioning.
        keys = seed_keys(seed)
        noise_key, sample_key, decode_key, items_key = keys["noise"], keys["sample"], keys["decode"], keys["items"]
        shape = (b, f, h, w, c)
        if latents is None:
            noise = jax.random.normal(noise_key, shape, jnp.float32)
        else:
            noise = jnp.asarray(latents, jnp.float32)
            if noise.shape != shape:
                raise ValueError(f"latents must be [B, F', H', W', C] = {list(shape)} for these sizes, got {list(noise.shape)}")
        x = noise
        mask = None
        if media_items is not None:
            clip = broadcast_batch(media_clip(media_items), b, "media_items")
            if clip.shape[1] != num_frames:
                raise ValueError(f"media_items has {clip.shape[1]} frames; num_frames is {num_frames}")
            t_start = float(sigmas[0])  # video-to-video: noise the encoded clip to the first step time
            x = t_start * noise + (1.0 - t_start) * self.encode_media(clip, height, width, semantics=semantics)
        if image is not None:
            if official:
                items = [ConditioningItem(image, 0, 1.0)] + items
            else:
                img = broadcast_batch(image_array(image), b, "image")
                z0 = self.encode_media(img[:, None], height, width, semantics=semantics)  # [B, 1, H', W', C]
                x = x.at[:, :1].set(z0)
                mask = jnp.zeros((b, f, h, w), jnp.float32).at[:, 0].set(1.0)
        num_extra, positions = 0, None
        if official:  # the original's token sequence: items at any frame, explicit positions
            encoded = []
            for i, it in enumerate(items):
                clip = broadcast_batch(media_clip(it.media), b, "conditioning media")
                check_item_frames(i, int(it.media_frame_number), clip.shape[1], num_frames, self.vae_scale[0])
                z = self.encode_media(clip, height, width, semantics=semantics)  # [B, f_l, H', W', C]
                encoded.append((z, int(it.media_frame_number), float(it.conditioning_strength)))
            tokens = assemble(x, encoded, key=items_key, vae_scale=self.vae_scale, frame_rate=frame_rate,
                              causal=self.transformer.config.causal_temporal_positioning)
            x, mask, num_extra = tokens.latents, tokens.mask, tokens.num_extra
            positions = jnp.asarray(tokens.positions)
        cond = Conditioning(text_embeds=text, text_mask=text_mask, neg_text_embeds=neg_text, neg_text_mask=neg_mask,
                            conditioning_mask=mask, init_latents=x if mask is not None else None,
                            image_cond_noise_scale=jnp.asarray(s["image_cond_noise_scale"] if mask is not None else 0.0,
                                                               jnp.float32),
                            positions=positions)
        jax.block_until_ready((text, x))
        timings["encode"] = time.perf_counter() - t0

        # Denoise: one compiled loop.
        t0 = time.perf_counter()
        report("denoise", {"steps": len(sigmas), "branches": guidance.num_branches, "tokens": f * h * w + num_extra})
        model_fn, params = transformer_model_fn(self.transformer, frame_rate=frame_rate,
                                                skip_layer_strategy=skip_layer_strategy, vae_scale=self.vae_scale)
        x = denoise(model_fn, params, x, jnp.asarray(sigmas), cond, guidance, key=sample_key, stochastic=stochastic)
        if official:
            x = grid_of(x, num_extra, (f, h, w))
        x = jax.block_until_ready(x)
        timings["denoise"] = time.perf_counter() - t0
        if output_type == "latent":
            self.timings = timings
            return x

        # Decode.
        t0 = time.perf_counter()
        report("decode", {"frames": num_frames})
        video = self._decode(x, s["decode_timestep"], s["decode_noise_scale"], decode_noise, decode_key,
                             official=official)
        out = np.asarray(jnp.clip(video / 2.0 + 0.5, 0.0, 1.0), np.float32)
        timings["decode"] = time.perf_counter() - t0
        self.timings = timings
        return out

    def _decode(self, x, decode_timestep, decode_noise_scale, decode_noise, key, *, official: bool):
        """Normalised latents -> pixels in [-1, 1] (not clipped), with decode noise where the reference adds it."""
        b = x.shape[0]
        tcond = self.vae.cfg.timestep_conditioning
        if not tcond:
            return self.vae.decode(self._denormalize(x, scaling=not official))
        t = jnp.broadcast_to(jnp.asarray(decode_timestep, jnp.float32), (b,))
        scale = t if decode_noise_scale is None else jnp.broadcast_to(jnp.asarray(decode_noise_scale, jnp.float32), (b,))
        scale = scale[:, None, None, None, None]  # [B] -> [B, 1, 1, 1, 1]
        if decode_noise is None:
            noise = jax.random.normal(key, x.shape, jnp.float32)
        else:
            noise = jnp.asarray(decode_noise, jnp.float32)
            if noise.shape != x.shape:
                raise ValueError(f"decode_noise must have the latents' shape {list(x.shape)}, got {list(noise.shape)}")
        if official:  # noise in the normalised space, then per-channel de-normalisation
            z = self._denormalize((1.0 - scale) * x + scale * noise, scaling=False)
        else:  # diffusers: de-normalise first, then mix the noise in
            z = (1.0 - scale) * self._denormalize(x, scaling=True) + scale * noise
        return self.vae.decode(z, t)


def seed_keys(seed: int) -> dict[str, jax.Array]:
    """The PRNG keys a call with `seed` draws from.

    "noise": the initial latents; "items": the extra conditioning tokens' noise (folded with the
    item index); "sample": the loop (`sampler.step_keys`: image-conditioning and stochastic
    noise); "decode": the decode noise.
    """
    noise, sample, decode = jax.random.split(jax.random.key(seed), 3)
    return dict(noise=noise, sample=sample, decode=decode, items=jax.random.fold_in(noise, 1))


def _text_encoder_dirs(folder: Path) -> tuple[Path, Path]:
    """(T5 folder, tokenizer folder) of a folder with text_encoder/ + tokenizer/, or of one T5 folder."""
    from ltx_jax.convert.safetensors_io import CheckpointError

    if not folder.is_dir():
        raise CheckpointError(f"text encoder folder not found: {folder}")
    if (folder / "text_encoder").is_dir():
        return folder / "text_encoder", folder / "tokenizer"
    if (folder / "config.json").is_file():
        return folder, folder
    raise CheckpointError(f"{folder}: neither text_encoder/ (+ tokenizer/) nor a T5 config.json in this folder")


def settings_record(**kwargs) -> dict[str, Any]:
    """JSON-able copy of call settings (arrays summarised by shape)."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, (np.ndarray, jax.Array)):
            out[k] = f"array{list(v.shape)}"
        elif v is DEFAULT:
            out[k] = "default"
        else:
            out[k] = v
    return out
