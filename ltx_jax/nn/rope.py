"""3D rotary position embedding on fractional (time, height, width) coordinates.

LTX-Video (ltx_spec.md 3.6) rotates the full D-wide query and key before the head split. Per axis
there are n = D // 6 frequencies omega_j = (pi / 2) * theta^(j / (n - 1)), geometrically spaced
and increasing. A token at fractional coordinate u (in [0, 1] over the model's max extent) has
angles phi_{j,a} = omega_j * (2 u_a - 1). Pairs of adjacent dims (2i, 2i+1) rotate together
(GPT-J interleaved style); pair p = 3j + a uses phi_{j,a}; the first D % 6 dims are not rotated.

Everything here is float32. The angle reaches ~1.6e4 rad at the highest frequency, so it carries
float32 rounding of about 1e-3 rad; the operations follow the reference order (frequency first,
then the product with 2u - 1) so that the rounding is the reference's rounding too.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def rope_frequencies(dim: int, theta: float) -> np.ndarray:
    """omega_j = (pi / 2) * theta^(j / (n - 1)), j < n = dim // 6, as float32 [n].

    Computed in float64 and rounded once, so each value is the correctly rounded float32.
    """
    n = dim // 6
    if n < 1:
        raise ValueError(f"RoPE needs a width of at least 6, got {dim}")
    lin = np.linspace(0.0, 1.0, n, dtype=np.float64) if n > 1 else np.zeros(1)
    freqs = (theta ** lin.astype(np.float32).astype(np.float64)).astype(np.float32)
    # (x * pi) / 2 in float32, as the reference computes it.
    return (freqs * np.float32(math.pi)) / np.float32(2.0)


def rope_tables(coords: jax.Array, dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin tables for fractional coordinates.

    Args:
      coords: [..., L, 3] fractional (time, height, width) coordinates.
      dim: width D of the rotated vectors.
      theta: frequency base (10000 for LTX-Video).

    Returns:
      (cos, sin), each [..., L, D] float32; the first D % 6 entries are (1, 0).
    """
    freqs = jnp.asarray(rope_frequencies(dim, theta))  # [n]
    u = coords.astype(jnp.float32)
    # [..., L, 3, 1] * [n] -> [..., L, 3, n] -> [..., L, n, 3] -> [..., L, 3n]: index 3j + a.
    angles = freqs * (u[..., None] * 2.0 - 1.0)
    angles = jnp.swapaxes(angles, -1, -2).reshape(*u.shape[:-1], -1)
    cos = jnp.repeat(jnp.cos(angles), 2, axis=-1)  # [..., L, 6n], pairs share an angle
    sin = jnp.repeat(jnp.sin(angles), 2, axis=-1)
    pad = dim % 6
    if pad:
        ones = jnp.ones((*cos.shape[:-1], pad), jnp.float32)
        cos = jnp.concatenate([ones, cos], axis=-1)
        sin = jnp.concatenate([jnp.zeros_like(ones), sin], axis=-1)
    return cos, sin


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates adjacent pairs of x: (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin).

    Args:
      x: [B, L, D] (any float dtype).
      cos, sin: [B or 1, L, D] float32 tables from `rope_tables`.

    Returns:
      [B, L, D] in x's dtype; the rotation itself runs in float32.
    """
    x32 = x.astype(jnp.float32)
    pairs = x32.reshape(*x.shape[:-1], -1, 2)  # [B, L, D] -> [B, L, D/2, 2]
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)  # back to [B, L, D]
    return (x32 * cos + rotated * sin).astype(x.dtype)
