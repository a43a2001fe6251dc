"""AdaLN-single timestep conditioning (PixArt-alpha; ltx_spec.md 3.3).

One MLP embeds the diffusion time for the whole network: e = TimestepEmbedding(sinusoid(1000 t))
and m = Linear(SiLU(e)) with 6 D outputs shared by all blocks (each block adds its own [6, D]
table). The final layer uses e itself. Timesteps may be per sample [B] or per token [B, L].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.embeddings import TimestepEmbedding, timestep_sinusoid
from ltx_jax.nn.layers import Dense


class _Emb(nnx.Module):
    # Holds only `timestep_embedder`, so parameter paths read as in the checkpoints
    # (adaln_single.emb.timestep_embedder.linear_1).
    def __init__(self, features: int, dim: int, **kw):
        self.timestep_embedder = TimestepEmbedding(features, dim, **kw)


class AdaLNSingle(nnx.Module):
    """Shared timestep modulation: returns (m [..., 6, D], e [..., D])."""

    def __init__(self, dim: int, *, features: int = 256, num_mod: int = 6, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.features, self.num_mod = features, num_mod
        self.emb = _Emb(features, dim, **kw)
        self.linear = Dense(dim, num_mod * dim, axes=("embed", "mlp"), **kw)

    def __call__(self, t_scaled: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Args:
          t_scaled: [...] timesteps already multiplied by the model's scale (1000).

        Returns:
          m: [..., 6, D] modulation, e: [..., D] embedded timestep.
        """
        e = self.emb.timestep_embedder(timestep_sinusoid(t_scaled, self.features))
        m = self.linear(jax.nn.silu(e))
        return m.reshape(*m.shape[:-1], self.num_mod, -1), e  # [..., 6D] -> [..., 6, D]
