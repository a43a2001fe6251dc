"""Typed, frozen configuration dataclasses and the model variants table.

Model sizes are rows of `DIT_VARIANTS`; a config picks one with `variant:` and may override any
field. Layers never see these classes: only top-level models take a model config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiTConfig:
    """Hyperparameters of `Transformer3D` (ltx_spec.md section 3.1)."""

    # Row of DIT_VARIANTS this config started from (informational once resolved).
    variant: str = "ltxv-2b"
    # Latent channels in and out (patch size 1x1x1: the DiT never patchifies).
    in_channels: int = 128
    out_channels: int = 128
    # Depth, heads and head dim; the width D is num_heads * head_dim.
    num_layers: int = 28
    num_heads: int = 32
    head_dim: int = 64
    # Width of the raw text features (T5-XXL: 4096) entering the caption projection.
    caption_channels: int = 4096
    # FFN hidden width as a multiple of D.
    mlp_ratio: int = 4
    # Epsilon of the non-affine block norms and the final LayerNorm.
    norm_eps: float = 1e-6
    # Epsilon of the full-width QK RMSNorm.
    qk_norm_eps: float = 1e-5
    # Biases on q/k/v projections and on the attention output projection.
    attention_bias: bool = True
    attention_out_bias: bool = True
    # 3D RoPE: theta and the (seconds, pixels, pixels) extent that maps to fractional 1.0.
    rope_theta: float = 10000.0
    rope_max_pos: tuple[float, float, float] = (20.0, 2048.0, 2048.0)
    # Diffusion time t in [0, 1] is multiplied by this before the sinusoidal embedding.
    timestep_scale_multiplier: float = 1000.0
    # Width of the sinusoidal timestep features.
    timestep_embed_dim: int = 256
    # 0.9.5+: latent frame k sits at pixel frame max(0, 8k - 7) instead of 8k.
    causal_temporal_positioning: bool = False
    # Compute and storage dtypes ("float32", "bfloat16", "float16").
    dtype: str = "float32"
    param_dtype: str = "float32"
    # Attention implementation, see ltx_jax.nn.attention.
    attention_impl: str = "xla"
    # Apply the block stack with lax.scan (True) or an unrolled Python loop (False).
    scan_layers: bool = True
    # Rematerialisation policy by name, see ltx_jax.dit.transformer.REMAT_POLICIES.
    remat_policy: str = "none"

    @property
    def width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def mlp_dim(self) -> int:
        return self.mlp_ratio * self.width


# Released shapes (ltx_spec.md 3.1) and small ones for tests and sweeps. The 2B row covers
# 0.9.0/0.9.1 and 0.9.5+ (they differ only in causal_temporal_positioning, read from the checkpoint).
DIT_VARIANTS: dict[str, dict[str, Any]] = {
    "ltxv-2b": dict(num_layers=28, num_heads=32, head_dim=64),
    "ltxv-2b-0.9.5": dict(num_layers=28, num_heads=32, head_dim=64, causal_temporal_positioning=True),
    "ltxv-13b": dict(num_layers=48, num_heads=32, head_dim=128, causal_temporal_positioning=True),
    # Scaling-law ladder (caption width stays T5-XXL's 4096).
    "ltxv-s": dict(num_layers=12, num_heads=8, head_dim=64),
    "ltxv-m": dict(num_layers=16, num_heads=16, head_dim=64),
    "ltxv-l": dict(num_layers=24, num_heads=24, head_dim=64),
    # Tiny models for tests and CPU smoke runs.
    "tiny": dict(num_layers=2, num_heads=2, head_dim=16, in_channels=8, out_channels=8, caption_channels=24),
    "small": dict(num_layers=4, num_heads=4, head_dim=32, in_channels=16, out_channels=16, caption_channels=64),
}


def dit_config(variant: str = "ltxv-2b", **overrides: Any) -> DiTConfig:
    """The DiTConfig for a variant row, with field overrides on top."""
    if variant not in DIT_VARIANTS:
        import difflib

        close = difflib.get_close_matches(variant, DIT_VARIANTS, n=3, cutoff=0.0)
        raise ValueError(f"unknown DiT variant {variant!r}; closest: {close}; all: {sorted(DIT_VARIANTS)}")
    return DiTConfig(**{"variant": variant, **DIT_VARIANTS[variant], **overrides})


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def to_dtype(name: str):
    """'bfloat16' -> jnp.bfloat16, with an error naming the valid names."""
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {sorted(_DTYPES)}")
    return _DTYPES[name]
