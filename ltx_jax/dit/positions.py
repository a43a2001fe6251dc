"""Token order and RoPE positions of latent video tokens.

Latents [B, F, H, W, C] become tokens [B, L, C] in (f, h, w) row-major order (patch size 1: the DiT
never patchifies; ltx_spec.md 3.2). Each token's position is the pixel-space corner of the region
it decodes to: spatially 32 * index, in time 8 * index frames (0.9.0/0.9.1 and diffusers), or with
the causal fix of 0.9.5+ max(0, 8 * index + 1 - 8), since latent frame 0 encodes pixel frame 0 alone.
Time is then divided by the frame rate (seconds), and all three by the model's max extent
(20 s, 2048 px, 2048 px) to give fractional coordinates.

The two reference code bases round these float32 products in different orders; we follow
diffusers for the plain layout and the original repository for the causal one, so each agrees
with its reference to the last bit (the RoPE angles amplify rounding by up to 1.6e4).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def to_tokens(latents: jax.Array) -> jax.Array:
    """[B, F, H, W, C] -> [B, L, C] in (f, h, w) order."""
    b, f, h, w, c = latents.shape
    return latents.reshape(b, f * h * w, c)  # [B, F, H, W, C] -> [B, L, C]


def from_tokens(tokens: jax.Array, shape: Sequence[int]) -> jax.Array:
    """[B, L, C] -> [B, F, H, W, C] for latent `shape` (F, H, W)."""
    f, h, w = shape
    return tokens.reshape(tokens.shape[0], f, h, w, tokens.shape[-1])  # [B, L, C] -> [B, F, H, W, C]


def fractional_positions(
    num_frames: int,
    height: int,
    width: int,
    *,
    frame_rate: float | jax.Array,
    vae_scale: Sequence[int] = (8, 32, 32),
    max_pos: Sequence[float] = (20.0, 2048.0, 2048.0),
    causal: bool = False,
) -> jax.Array:
    """Fractional (time, height, width) coordinates of a latent grid's tokens.

    Args:
      num_frames, height, width: latent grid size (F, H, W).
      frame_rate: pixel frames per second of the video.
      vae_scale: VAE compression (time, height, width).
      max_pos: extent (seconds, pixels, pixels) that maps to 1.0.
      causal: 0.9.5+ causal time positions.

    Returns:
      [L, 3] float32 with L = F * H * W.
    """
    f, h, w = jnp.meshgrid(
        jnp.arange(num_frames, dtype=jnp.float32),
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    f, h, w = f.reshape(-1), h.reshape(-1), w.reshape(-1)  # [F, H, W] -> [L]
    st, sh, sw = vae_scale
    fps = jnp.asarray(frame_rate, jnp.float32)
    if causal:
        # Original repository: pixel frame index, then * (1 / fps), then / max.
        t = jnp.maximum(f * st + 1.0 - st, 0.0) * (1.0 / fps) / max_pos[0]
    else:
        # diffusers: index * (vae_t / fps), then / max.
        t = f * (st / fps) / max_pos[0]
    y = h * sh / max_pos[1]
    x = w * sw / max_pos[2]
    return jnp.stack([t, y, x], axis=-1)


def positions_to_fractional(positions: jax.Array, max_pos: Sequence[float]) -> jax.Array:
    """Explicit positions [..., L, 3] in (seconds, pixels, pixels) -> fractional coordinates."""
    return positions.astype(jnp.float32) / jnp.asarray(max_pos, jnp.float32)
