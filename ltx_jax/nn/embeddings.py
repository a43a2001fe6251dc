"""Timestep and caption embeddings (PixArt-alpha lineage, shared by the DiT and the VAE decoder)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.layers import Dense, gelu_tanh


def timestep_sinusoid(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal features of (already scaled) timesteps, cos first.

    Matches diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`:
    freq_i = exp(-ln(max_period) * i / (dim / 2)), features [cos(t f), sin(t f)].

    Args:
      t: [...] float timesteps (e.g. 1000 * sigma).
      dim: even feature width.

    Returns:
      [..., dim] float32.
    """
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half
    args = t.astype(jnp.float32)[..., None] * jnp.exp(exponent)
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """Linear -> SiLU -> Linear on sinusoidal features (diffusers `TimestepEmbedding`)."""

    def __init__(self, in_dim: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = Dense(in_dim, dim, axes=("time_embed", "embed"), **kw)
        self.linear_2 = Dense(dim, dim, axes=("embed", None), **kw)

    def __call__(self, features: jax.Array) -> jax.Array:
        """[..., in_dim] -> [..., dim]."""
        return self.linear_2(jax.nn.silu(self.linear_1(features)))


class CaptionProjection(nnx.Module):
    """Linear -> GELU(tanh) -> Linear from text-encoder width to model width (PixArt-alpha)."""

    def __init__(self, in_dim: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = Dense(in_dim, dim, axes=("caption", "embed"), **kw)
        self.linear_2 = Dense(dim, dim, axes=("embed", None), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, S, in_dim] -> [B, S, dim]."""
        return self.linear_2(gelu_tanh(self.linear_1(x)))
