"""Transformer3D: the LTX-Video denoising transformer (arXiv 2501.00103; ltx_spec.md section 3).

latents [B, F, H, W, C] -> tokens [B, L, C] -> patchify_proj -> N x TransformerBlock (scanned)
-> LayerNorm -> final (shift, scale) from the embedded timestep -> proj_out -> velocity.

Parameter names follow the Lightricks checkpoints (`patchify_proj`, `adaln_single`,
`caption_projection`, `transformer_blocks`, `scale_shift_table`, `proj_out`), so the converter is
a short table. The blocks are one stacked module whose parameters carry a leading `layers` axis;
they run under `lax.scan` (or an unrolled loop, for the equivalence test) with a named remat policy.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.config import DiTConfig, to_dtype
from ltx_jax.dit.adaln import AdaLNSingle
from ltx_jax.dit.block import SKIP_STRATEGIES, TransformerBlock
from ltx_jax.dit.positions import (
    fractional_positions, from_tokens, positions_to_fractional, to_tokens,
)
from ltx_jax.nn.embeddings import CaptionProjection
from ltx_jax.nn.attention import check_impls
from ltx_jax.nn.layers import Dense, layer_norm, param, prepend_axis
from ltx_jax.nn.rope import rope_tables
from ltx_jax.sharding import constrain

# Logical layout of the token activations [B, L, D] (mapped to mesh axes by ltx_jax.sharding;
# a no-op without a mesh).
_TOKENS = ("batch", "length", "embed")

# Rematerialisation policies by name (jax.checkpoint_policies), applied to each block.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Transformer3D(nnx.Module):
    """The DiT. Construct with a `DiTConfig`; call with latents, timestep and text features."""

    def __init__(self, config: DiTConfig, *, rngs: nnx.Rngs, dtype=None, param_dtype=None):
        if config.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"unknown remat_policy {config.remat_policy!r}; valid: {sorted(REMAT_POLICIES)}")
        check_impls(config.attention_impl, config.attention_inner_impl)
        self.config = config
        dtype = dtype if dtype is not None else to_dtype(config.dtype)
        param_dtype = param_dtype if param_dtype is not None else to_dtype(config.param_dtype)
        self.dtype = dtype
        d = config.width
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patchify_proj = Dense(config.in_channels, d, axes=("channels", "embed"), **kw)
        self.adaln_single = AdaLNSingle(d, features=config.timestep_embed_dim, **kw)
        self.caption_projection = CaptionProjection(config.caption_channels, d, **kw)

        block_kw = dict(
            norm_eps=config.norm_eps, qk_norm_eps=config.qk_norm_eps,
            attention_bias=config.attention_bias, attention_out_bias=config.attention_out_bias,
            attention_impl=config.attention_impl, attention_inner_impl=config.attention_inner_impl,
            dtype=dtype, param_dtype=param_dtype,
        )

        @nnx.split_rngs(splits=config.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(rngs):
            return TransformerBlock(d, config.num_heads, config.head_dim, config.mlp_dim,
                                    rngs=rngs, **block_kw)

        self.transformer_blocks = make_blocks(rngs)
        prepend_axis(self.transformer_blocks, "layers")

        table_init = lambda key, shape, dt: (jax.random.normal(key, shape) / d**0.5).astype(dt)
        self.scale_shift_table = param(rngs, table_init, (2, d), ("modulation", "embed"), param_dtype)
        self.proj_out = Dense(d, config.out_channels, axes=("embed", "channels"), **kw)

    def __call__(
        self,
        latents: jax.Array,
        timestep: jax.Array,
        text_embeds: jax.Array,
        text_mask: jax.Array | None = None,
        *,
        frame_rate: float | jax.Array = 25.0,
        vae_scale: Sequence[int] = (8, 32, 32),
        positions: jax.Array | None = None,
        skip_layer_mask: jax.Array | None = None,
        skip_layer_strategy: str = "attention_values",
    ) -> jax.Array:
        """Predicts the velocity eps - x0.

        Latents come as a grid [B, F, H, W, C], or as tokens [B, L, C] with explicit `positions`
        (the official pipeline appends conditioning tokens at other frames this way); the output
        has the input's form.

        Args:
          latents: [B, F, H, W, C] normalised latents, or tokens [B, L, C].
          timestep: [B] (or scalar) or per token [B, F, H, W] ([B, L] for tokens), in [0, 1].
          text_embeds: [B, S, caption_channels] raw text-encoder output.
          text_mask: [B, S], nonzero keeps a text token (bool, int or float); None keeps all.
          frame_rate: frames per second of the pixel video (sets the RoPE time coordinate).
          vae_scale: the VAE's (time, height, width) compression.
          positions: optional explicit [B, L, 3] token positions in (seconds, pixels, pixels),
            overriding the grid; required for token input.
          skip_layer_mask: optional [num_layers, B] STG mask, 1 runs a block normally for a sample,
            0 perturbs it.
          skip_layer_strategy: one of SKIP_STRATEGIES.

        Returns:
          [B, F, H, W, out_channels] (or [B, L, out_channels] for tokens) float32.
        """
        cfg = self.config
        tokens_in = latents.ndim == 3
        if tokens_in:
            if positions is None:
                raise ValueError("token latents [B, L, C] need explicit positions [B, L, 3]")
            latents = latents[:, :, None, None, :]  # [B, L, C] -> [B, L, 1, 1, C]: a 1-wide grid
            if jnp.ndim(timestep) == 2:
                timestep = jnp.asarray(timestep)[:, :, None, None]  # [B, L] -> [B, L, 1, 1]
        b, f, h, w = self._check_inputs(latents, timestep, text_embeds, text_mask, skip_layer_mask,
                                        skip_layer_strategy, positions)
        length = f * h * w

        # Timestep conditioning: per sample -> [B, 1, ...], per token -> [B, L, ...].
        t = jnp.asarray(timestep, jnp.float32)
        t = jnp.broadcast_to(t, (b,)) if t.ndim == 0 else t
        t = t.reshape(b, -1)  # [B] -> [B, 1];  [B, F, H, W] -> [B, L]
        modulation, embedded_t = self.adaln_single(t * cfg.timestep_scale_multiplier)

        # RoPE tables from fractional coordinates.
        if positions is None:
            coords = fractional_positions(
                f, h, w, frame_rate=frame_rate, vae_scale=vae_scale, max_pos=cfg.rope_max_pos,
                causal=cfg.causal_temporal_positioning,
            )[None]  # [1, L, 3]
        else:
            coords = positions_to_fractional(positions, cfg.rope_max_pos)  # [B, L, 3]
        rope = rope_tables(coords, cfg.width, cfg.rope_theta)

        x = constrain(self.patchify_proj(to_tokens(latents)), _TOKENS)  # [B, L, D]
        text = self.caption_projection(text_embeds)  # [B, S, D]
        x = self._run_blocks(x, text, modulation, rope, text_mask, skip_layer_mask, skip_layer_strategy)

        shift_scale = self.scale_shift_table[...].astype(jnp.float32) + embedded_t[:, :, None]  # [B, 1|L, 2, D]
        x = layer_norm(x, cfg.norm_eps) * (1 + shift_scale[:, :, 1]) + shift_scale[:, :, 0]
        out = self.proj_out(x).astype(jnp.float32)  # [B, L, C]
        assert out.shape == (b, length, cfg.out_channels), out.shape
        return out if tokens_in else from_tokens(out, (f, h, w))

    def _run_blocks(self, x, text, modulation, rope, text_mask, skip_layer_mask, strategy):
        """Applies the stacked blocks with scan (or an unrolled loop), remat by policy name."""
        cfg = self.config
        graphdef, stacked = nnx.split(self.transformer_blocks)

        def body(x, layer):
            # The scan carry is pinned to the activation layout (batch over data/fsdp, tokens over
            # seq), so the compiler never replicates sequence-sized activations inside the stack.
            state, skip = layer
            block = nnx.merge(graphdef, state)
            x = block(constrain(x, _TOKENS), text, modulation, rope, text_mask, skip, strategy)
            return constrain(x, _TOKENS), None

        policy = REMAT_POLICIES[cfg.remat_policy]
        if cfg.remat_policy != "none":
            body = jax.checkpoint(body, policy=policy, prevent_cse=not cfg.scan_layers)
        skips = skip_layer_mask  # [num_layers, B] or None
        if cfg.scan_layers:
            x, _ = jax.lax.scan(body, x, (stacked, skips))
            return x
        for i in range(cfg.num_layers):
            layer = jax.tree.map(lambda a: a[i], (stacked, skips))
            x, _ = body(x, layer)
        return x

    def _check_inputs(self, latents, timestep, text_embeds, text_mask, skip_layer_mask, strategy,
                      positions):
        cfg = self.config
        if latents.ndim != 5:
            raise ValueError(
                f"latents must be [B, F, H, W, C] (channels-last) or tokens [B, L, C], "
                f"got shape {tuple(latents.shape)}"
            )
        b, f, h, w, c = latents.shape
        if c != cfg.in_channels:
            raise ValueError(
                f"latents have {c} channels but the model takes {cfg.in_channels} "
                f"(shape {tuple(latents.shape)}; channels are the last axis)"
            )
        if text_embeds.ndim != 3 or text_embeds.shape[0] != b or text_embeds.shape[2] != cfg.caption_channels:
            raise ValueError(
                f"text_embeds must be [B={b}, S, {cfg.caption_channels}], got {tuple(text_embeds.shape)}"
            )
        if text_mask is not None and tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
            raise ValueError(
                f"text_mask must be [B, S] = {list(text_embeds.shape[:2])} like text_embeds, "
                f"got {list(text_mask.shape)}"
            )
        t_shape = tuple(jnp.shape(timestep))
        if t_shape not in ((), (b,), (b, f, h, w)):
            raise ValueError(
                f"timestep must be a scalar, [B] = [{b}] or per token [B, F, H, W] = {[b, f, h, w]}, "
                f"got {list(t_shape)}"
            )
        if skip_layer_mask is not None and tuple(skip_layer_mask.shape) != (cfg.num_layers, b):
            raise ValueError(
                f"skip_layer_mask must be [num_layers, B] = {[cfg.num_layers, b]}, "
                f"got {list(skip_layer_mask.shape)}"
            )
        if strategy not in SKIP_STRATEGIES:
            raise ValueError(f"unknown skip_layer_strategy {strategy!r}; valid: {SKIP_STRATEGIES}")
        if positions is not None and tuple(positions.shape) != (b, f * h * w, 3):
            raise ValueError(f"positions must be [B, L, 3] = {[b, f * h * w, 3]}, got {list(positions.shape)}")
        return b, f, h, w
