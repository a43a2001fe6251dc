"""The official pipeline's token sequence: conditioning items at any frame, explicit positions.

`LTXVideoPipeline.prepare_conditioning` (ltx_video) turns the latent grid and its conditioning
items into one token sequence:
- items at pixel frame 0 are lerped into the grid's first latent frames (strength s) and mark
  those tokens' conditioning mask with s;
- an item at a later frame becomes extra tokens, prepended in item order: its latents are lerped
  from fresh noise with strength s, carry the mask s and their own positions (the latent grid's
  pixel coordinates shifted by the item's frame). For a clip (more than one frame, at a multiple of
  8), latent frames from the third on are lerped into the grid instead, at latent frame
  frame // 8 + 2, and only the first two (the "prefix") become extra tokens.
Positions are pixel coordinates (time in frames, with the causal fix of 0.9.5+ where the
transformer uses it), time then scaled by 1 / frame_rate into seconds, all in float32 as the
original computes them. After denoising the extra tokens are dropped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

# The official `_handle_non_first_conditioning_sequence` defaults ("concat" prefix mode).
NUM_PREFIX_LATENT_FRAMES = 2


def lerp(a: jax.Array, b: jax.Array, weight: float) -> jax.Array:
    """torch.lerp(a, b, w) with torch's formula (exact endpoints): the reference's rounding."""
    w = float(weight)
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1.0 - w)


def pixel_coords(f: int, h: int, w: int, vae_scale, *, causal: bool, frame_offset: int = 0) -> np.ndarray:
    """Pixel coordinates [L, 3] (frame, y, x) of a latent grid's tokens, (f, h, w) row-major.

    As `latent_to_pixel_coords`: latent index x VAE scale; with the causal fix the time becomes
    max(0, 8 f + 1 - 8) (latent frame 0 encodes pixel frame 0 alone); then `frame_offset` is added
    to the time (an item's `media_frame_number`).
    """
    grid = np.stack(np.meshgrid(np.arange(f), np.arange(h), np.arange(w), indexing="ij"), axis=-1)
    coords = grid.reshape(-1, 3).astype(np.float32) * np.asarray(vae_scale, np.float32)  # [F, H, W, 3] -> [L, 3]
    if causal:
        coords[:, 0] = np.maximum(coords[:, 0] + 1.0 - float(vae_scale[0]), 0.0)
    coords[:, 0] += frame_offset
    return coords


def seconds(coords: np.ndarray, frame_rate: float) -> np.ndarray:
    """Pixel coordinates -> the transformer's positions: time x float32(1 / frame_rate), as the original."""
    out = np.array(coords, np.float32)
    out[..., 0] = out[..., 0] * np.float32(1.0 / float(frame_rate))
    return out


@dataclasses.dataclass
class Tokens:
    """The sequence the official sampler runs on.

    Attributes:
      latents: [B, L, C] extra conditioning tokens then the grid's tokens.
      mask: [B, L] conditioning strength per token (None when there are no conditioning items).
      positions: [B, L, 3] (seconds, pixels, pixels).
      num_extra: how many leading tokens to drop after denoising.
    """

    latents: jax.Array
    mask: jax.Array | None
    positions: np.ndarray
    num_extra: int


def check_item_frames(index: int, frame: int, n_frames: int, num_frames: int, vae_t: int) -> None:
    """The official pipeline's rules for where an item may start (its assertions, as errors)."""
    if (n_frames - 1) % vae_t:
        lo = (n_frames - 1) // vae_t * vae_t + 1
        raise ValueError(f"conditioning_items[{index}] has {n_frames} frames, not {vae_t}k+1; nearest valid: "
                         f"{lo}, {lo + vae_t}")
    if frame < 0 or frame + n_frames > num_frames:
        last = num_frames - n_frames
        raise ValueError(f"conditioning_items[{index}].media_frame_number={frame} with {n_frames} frame(s) does not fit "
                         f"in {num_frames} frames; valid: 0..{last}")
    if n_frames > 1 and frame % vae_t:
        lo = frame // vae_t * vae_t
        raise ValueError(f"conditioning_items[{index}].media_frame_number={frame}: a clip must start at a multiple of "
                         f"{vae_t}; nearest valid: {lo}, {lo + vae_t}")


def assemble(grid: jax.Array, items, *, key: jax.Array, vae_scale, causal: bool,
             frame_rate: float) -> Tokens:
    """Grid latents plus encoded conditioning items -> the official token sequence.

    Args:
      grid: [B, F, H, W, C] starting latents (noise, or noised video for video-to-video).
      items: (latents [B, f_l, H, W, C], media_frame_number, strength) per item, in order.
      key: PRNG key of the extra tokens' noise (one fold per item).
      vae_scale: the VAE's (time, height, width) compression.
      causal: the transformer's `causal_temporal_positioning`.
      frame_rate: frames per second.
    """
    b, f, h, w, c = grid.shape
    mask = jnp.zeros((b, f, h, w), jnp.float32) if items else None
    extra_lat, extra_pos, extra_mask = [], [], []
    for i, (z, frame, strength) in enumerate(items):
        s = float(strength)
        f_l = z.shape[1]
        if frame == 0:
            grid = grid.at[:, :f_l].set(lerp(grid[:, :f_l], z, s))
            mask = mask.at[:, :f_l].set(s)
            continue
        if f_l > 1:  # a clip: frames after the prefix go into the grid
            start = frame // vae_scale[0] + NUM_PREFIX_LATENT_FRAMES
            rest = z[:, NUM_PREFIX_LATENT_FRAMES:]
            if rest.shape[1]:
                grid = grid.at[:, start:start + rest.shape[1]].set(lerp(grid[:, start:start + rest.shape[1]], rest, s))
                mask = mask.at[:, start:start + rest.shape[1]].set(s)
            z = z[:, :NUM_PREFIX_LATENT_FRAMES]
        noise = jax.random.normal(jax.random.fold_in(key, i), z.shape, jnp.float32)
        tokens = lerp(noise, z, s).reshape(b, -1, c)  # [B, f_p, H, W, C] -> [B, L_i, C]
        extra_lat.append(tokens)
        extra_pos.append(pixel_coords(z.shape[1], h, w, vae_scale, causal=causal, frame_offset=frame))
        extra_mask.append(jnp.full(tokens.shape[:2], s, jnp.float32))
    grid_tokens = grid.reshape(b, f * h * w, c)  # [B, F, H, W, C] -> [B, L, C]
    latents = jnp.concatenate(extra_lat + [grid_tokens], axis=1)
    pos = np.concatenate(extra_pos + [pixel_coords(f, h, w, vae_scale, causal=causal)], axis=0)  # [L_total, 3]
    positions = np.broadcast_to(seconds(pos, frame_rate), (b,) + pos.shape)
    if mask is not None:
        mask = jnp.concatenate(extra_mask + [mask.reshape(b, f * h * w)], axis=1)  # -> [B, L_total]
    return Tokens(latents, mask, positions, sum(t.shape[1] for t in extra_lat))


def grid_of(tokens: jax.Array, num_extra: int, shape) -> jax.Array:
    """Drops the extra tokens: [B, L_total, C] -> [B, F, H, W, C]."""
    f, h, w = shape
    x = tokens[:, num_extra:]
    return x.reshape(x.shape[0], f, h, w, x.shape[-1])  # [B, L, C] -> [B, F, H, W, C]
