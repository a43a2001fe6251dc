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


class _TwoLayerMLP(nnx.Module):
    """Linear(in, D) -> activation -> Linear(D, D); parameters `linear_1`, `linear_2` as in the
    checkpoints."""

    def __init__(self, in_dim: int, dim: int, activation, in_axis: str, *, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.activation = activation
        self.linear_1 = Dense(in_dim, dim, axes=(in_axis, "embed"), **kw)
        self.linear_2 = Dense(dim, dim, axes=("embed", None), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., in_dim] -> [..., dim]."""
        return self.linear_2(self.activation(self.linear_1(x)))


class TimestepEmbedding(_TwoLayerMLP):
    """Linear -> SiLU -> Linear on sinusoidal features (diffusers `TimestepEmbedding`)."""

    def __init__(self, in_dim: int, dim: int, **kw):
        super().__init__(in_dim, dim, jax.nn.silu, "time_embed", **kw)


class CaptionProjection(_TwoLayerMLP):
    """Linear -> GELU(tanh) -> Linear from text-encoder width to model width (PixArt-alpha);
    [B, S, in_dim] -> [B, S, dim]."""

    def __init__(self, in_dim: int, dim: int, **kw):
        super().__init__(in_dim, dim, gelu_tanh, "caption", **kw)
