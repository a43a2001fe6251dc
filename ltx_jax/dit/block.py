"""The LTX-Video transformer block: modulated self-attention, plain cross-attention, modulated FFN.

Exact order (ltx_spec.md 3.5; diffusers LTXVideoTransformerBlock):
  1. h = RMSNorm(x) * (1 + scale_msa) + shift_msa
  2. x = x + gate_msa * SelfAttention(h)          (QK-RMSNorm over the full width, then RoPE)
  3. x = x + CrossAttention(x, text)              (no norm, no modulation, no gate; QK-RMSNorm)
  4. h = RMSNorm(x) * (1 + scale_mlp) + shift_mlp; x = x + gate_mlp * FFN(h)

STG hooks (spatio-temporal guidance, ltx_spec.md 3.7) take a per-sample `skip` value in {0, 1}
(1 = run normally): "attention_values" replaces the self-attention output before `to_out` by V,
"attention_skip" by the attention input, "transformer_block" bypasses the whole block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.attention import attention
from ltx_jax.nn.layers import Dense, RMSNorm, gelu_tanh, param, rms_norm
from ltx_jax.nn.rope import apply_rope

SKIP_STRATEGIES = ("attention_values", "attention_skip", "transformer_block")


class Attention(nnx.Module):
    """Multi-head attention with full-width QK RMSNorm and optional RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, qk_norm_eps: float,
                 bias: bool, out_bias: bool, impl: str = "xla", inner_impl: str = "auto",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        inner = num_heads * head_dim
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_heads, self.head_dim, self.impl, self.inner_impl = num_heads, head_dim, impl, inner_impl
        self.to_q = Dense(dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.to_k = Dense(dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.to_v = Dense(dim, inner, axes=("embed", "heads"), use_bias=bias, **kw)
        self.q_norm = RMSNorm(inner, eps=qk_norm_eps, axis_name="heads", param_dtype=param_dtype, rngs=rngs)
        self.k_norm = RMSNorm(inner, eps=qk_norm_eps, axis_name="heads", param_dtype=param_dtype, rngs=rngs)
        self.to_out = Dense(inner, dim, axes=("heads", "embed"), use_bias=out_bias, **kw)

    def __call__(self, x, context=None, *, rope=None, mask=None, skip=None,
                 skip_strategy: str = "attention_values"):
        """Attention of x over context (self-attention when context is None).

        Args:
          x: [B, L, D] queries' input.
          context: [B, S, D] keys' and values' input, or None.
          rope: (cos, sin), each [B or 1, L, D], applied to q and k; self-attention only.
          mask: [B, S] key mask (nonzero keeps).
          skip: [B] STG values (1 normal, 0 perturbed) or None.

        Returns:
          [B, L, D].
        """
        kv_in = x if context is None else context
        q = self.q_norm(self.to_q(x))
        k = self.k_norm(self.to_k(kv_in))
        v = self.to_v(kv_in)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        b, lq, _ = q.shape
        split = lambda t: t.reshape(b, t.shape[1], self.num_heads, self.head_dim)  # [B, L, N*K] -> [B, L, N, K]
        out = attention(split(q), split(k), split(v), mask=mask, impl=self.impl, inner_impl=self.inner_impl)
        out = out.reshape(b, lq, -1)  # [B, L, N, K] -> [B, L, N*K]
        if skip is not None:
            # Perturbed samples take V (identity attention map) or the attention's input.
            replacement = {"attention_values": v, "attention_skip": x}.get(skip_strategy)
            if replacement is not None:
                s = skip.astype(out.dtype)[:, None, None]
                out = out * s + replacement.astype(out.dtype) * (1 - s)
        return self.to_out(out)


class FeedForward(nnx.Module):
    """Linear(D, M) -> GELU(tanh) -> Linear(M, D)."""

    def __init__(self, dim: int, hidden: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.proj_in = Dense(dim, hidden, axes=("embed", "mlp"), **kw)
        self.proj_out = Dense(hidden, dim, axes=("mlp", "embed"), **kw)

    def __call__(self, x):
        return self.proj_out(gelu_tanh(self.proj_in(x)))


class TransformerBlock(nnx.Module):
    """One DiT block; `scale_shift_table` [6, D] holds the block's own modulation offsets."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, *, norm_eps: float,
                 qk_norm_eps: float, attention_bias: bool, attention_out_bias: bool,
                 attention_impl: str = "xla", attention_inner_impl: str = "auto", dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        attn_kw = dict(qk_norm_eps=qk_norm_eps, bias=attention_bias, out_bias=attention_out_bias,
                       impl=attention_impl, inner_impl=attention_inner_impl, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)
        self.norm_eps = norm_eps
        self.attn1 = Attention(dim, num_heads, head_dim, **attn_kw)
        self.attn2 = Attention(dim, num_heads, head_dim, **attn_kw)
        self.ff = FeedForward(dim, mlp_dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # Reference init: randn / sqrt(D).
        table_init = lambda key, shape, dt: (jax.random.normal(key, shape) / dim**0.5).astype(dt)
        self.scale_shift_table = param(rngs, table_init, (6, dim), ("modulation", "embed"), param_dtype)

    def __call__(self, x, text, modulation, rope, text_mask=None, skip=None,
                 skip_strategy: str = "attention_values"):
        """Args:
          x: [B, L, D] tokens.
          text: [B, S, D] projected text features.
          modulation: [B, 1 or L, 6, D] shared AdaLN-single output (before the block's table).
          rope: (cos, sin) tables [B or 1, L, D].
          text_mask: [B, S] key mask for cross-attention.
          skip: [B] STG values for this block (1 normal, 0 perturbed) or None.

        Returns:
          [B, L, D].
        """
        ada = self.scale_shift_table[...].astype(modulation.dtype) + modulation  # [B, 1|L, 6, D]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (ada[:, :, i] for i in range(6))
        h = rms_norm(x, self.norm_eps) * (1 + scale_msa) + shift_msa
        attn_skip = skip if skip_strategy != "transformer_block" else None
        x_in = x
        x = x + self.attn1(h, rope=rope, skip=attn_skip, skip_strategy=skip_strategy) * gate_msa
        x = x + self.attn2(x, text, mask=text_mask)
        h = rms_norm(x, self.norm_eps) * (1 + scale_mlp) + shift_mlp
        x = x + self.ff(h) * gate_mlp
        if skip is not None and skip_strategy == "transformer_block":
            s = skip.astype(x.dtype)[:, None, None]
            x = x * s + x_in * (1 - s)
        return x
