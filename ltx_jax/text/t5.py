"""The T5 v1.1 encoder (the text tower of LTX-Video) in Flax NNX.

Matches transformers' `T5EncoderModel` (T5 v1.1 flavour, `feed_forward_proj="gated-gelu"`):
- token embedding without scaling (no sqrt(d) factor, no position embedding);
- a relative position bias, [N, S, S] from bidirectional log-spaced buckets, owned by the first
  layer's self-attention in transformers and shared by every layer (here: computed once, before the
  layer scan);
- pre-norm blocks: T5 LayerNorm (RMS without mean subtraction, learned weight, statistics in
  float32), self-attention with no 1/sqrt(K) scaling and the padding mask as an additive bias,
  then a gated-GELU FFN (gelu_new = tanh approximation);
- a final T5 LayerNorm. Dropout is not implemented (inference and frozen-encoder use only).

The layers are stacked (`nnx.vmap` at construction) and applied with `jax.lax.scan`, so compile time
does not grow with depth (24 layers for T5-XXL).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.layers import Dense, RMSNorm, gelu_tanh, param, prepend_axis, rms_norm


@dataclasses.dataclass(frozen=True, kw_only=True)
class T5Config:
    """The hyperparameters of a T5 v1.1 encoder, with transformers' `config.json` names.

    Defaults are google/t5-v1_1-xxl (the LTX-Video text encoder).
    """

    # Rows of the token embedding table.
    vocab_size: int = 32128
    # Model width D.
    d_model: int = 4096
    # Head dim K.
    d_kv: int = 64
    # FFN hidden width M.
    d_ff: int = 10240
    # Attention heads N.
    num_heads: int = 64
    # Encoder blocks.
    num_layers: int = 24
    # Relative-position buckets (half for keys before the query, half after).
    relative_attention_num_buckets: int = 32
    # Distances at or beyond this share the last bucket.
    relative_attention_max_distance: int = 128
    # T5 LayerNorm epsilon.
    layer_norm_epsilon: float = 1e-6
    # FFN type; only T5 v1.1's "gated-gelu" is supported.
    feed_forward_proj: str = "gated-gelu"

    def __post_init__(self):
        if self.feed_forward_proj != "gated-gelu":
            raise ValueError(
                f"feed_forward_proj={self.feed_forward_proj!r} is not supported: only T5 v1.1's "
                "'gated-gelu' (the LTX-Video text encoder) is implemented"
            )
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.relative_attention_num_buckets < 4 or self.relative_attention_num_buckets % 2:
            raise ValueError(
                f"relative_attention_num_buckets={self.relative_attention_num_buckets} must be an even "
                "number >= 4 (half the buckets per direction, half of those exact); T5 uses 32"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "T5Config":
        """From a transformers T5 config dict; keys the encoder does not use are ignored.

        Raises:
          ValueError: a required key is missing, or the config is not a T5 v1.1 encoder.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        model_type = d.get("model_type", "t5")
        if model_type != "t5":
            raise ValueError(f"model_type={model_type!r} is not a T5 config (expected 't5')")
        # Older configs spell the FFN type only through these two keys.
        if "feed_forward_proj" not in d and d.get("is_gated_act") and d.get("dense_act_fn") == "gelu_new":
            d = {**d, "feed_forward_proj": "gated-gelu"}
        required = [n for n in names if n != "feed_forward_proj"]
        missing = [n for n in required if n not in d]
        if missing:
            raise ValueError(f"T5 config lacks {missing}; it has {sorted(d)}")
        return cls(**{n: d[n] for n in names if n in d})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "T5Config":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no T5 config file: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """A transformers-loadable `config.json` dict for `T5EncoderModel`."""
        return {
            "architectures": ["T5EncoderModel"],
            "model_type": "t5",
            **dataclasses.asdict(self),
            "dense_act_fn": "gelu_new",
            "is_gated_act": True,
            "is_decoder": False,
            "is_encoder_decoder": False,
            "use_cache": False,
            "tie_word_embeddings": True,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "decoder_start_token_id": 0,
            "dropout_rate": 0.0,
        }


def relative_position_buckets(
    query_length: int, key_length: int, *, num_buckets: int, max_distance: int
) -> jax.Array:
    """T5's bidirectional relative-position bucket of every (query, key) pair.

    The relative position is key - query. Half of the buckets hold keys after the query; within a
    half, the first half of the buckets are exact distances, the rest are log-spaced up to
    `max_distance` (beyond which all distances share the last bucket).

    Returns:
      int32 [S, T] (S query positions, T key positions), values in [0, num_buckets).
    """
    rel = jnp.arange(key_length)[None, :] - jnp.arange(query_length)[:, None]  # [S, T]
    half = num_buckets // 2
    buckets = jnp.where(rel > 0, half, 0)
    dist = jnp.abs(rel)
    max_exact = half // 2
    # The log of 0 is -inf for the exact positions; they take the other branch of the `where`.
    large = max_exact + (
        jnp.log(jnp.maximum(dist, 1).astype(jnp.float32) / max_exact)
        / math.log(max_distance / max_exact)
        * (half - max_exact)
    ).astype(jnp.int32)
    large = jnp.minimum(large, half - 1)
    return (buckets + jnp.where(dist < max_exact, dist, large)).astype(jnp.int32)


class T5Block(nnx.Module):
    """One pre-norm encoder block: x + SelfAttention(norm(x)), then x + GatedGeluFFN(norm(x))."""

    def __init__(self, cfg: T5Config, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
        self.num_heads, self.head_dim, self.eps, self.dtype = cfg.num_heads, cfg.d_kv, cfg.layer_norm_epsilon, dtype
        init = nnx.initializers.normal(d**-0.5)

        def dense(i, o, axes, init=init, dtype=dtype):
            return Dense(i, o, axes=axes, use_bias=False, dtype=dtype, param_dtype=param_dtype,
                         kernel_init=init, rngs=rngs)

        self.attn_norm = RMSNorm(d, eps=self.eps, param_dtype=param_dtype, rngs=rngs)
        self.q = dense(d, inner, ("embed", "heads"), nnx.initializers.normal((d * cfg.d_kv) ** -0.5))
        self.k = dense(d, inner, ("embed", "heads"))
        self.v = dense(d, inner, ("embed", "heads"))
        self.o = dense(inner, d, ("heads", "embed"), nnx.initializers.normal(inner**-0.5))
        self.ffn_norm = RMSNorm(d, eps=self.eps, param_dtype=param_dtype, rngs=rngs)
        self.wi_0 = dense(d, cfg.d_ff, ("embed", "mlp"))
        self.wi_1 = dense(d, cfg.d_ff, ("embed", "mlp"))
        # The FFN output projection always computes in float32: T5 v1.1's FFN activations overflow
        # float16 (transformers keeps `wo` in float32 for float16 runs, `_keep_in_fp32_modules`),
        # and in bfloat16 this projection is where most of the error comes from. It is a small
        # share of the cost of a model that runs once per prompt.
        self.wo = dense(cfg.d_ff, d, ("mlp", "embed"), nnx.initializers.normal(cfg.d_ff**-0.5),
                        dtype=jnp.float32)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        """One block.

        Args:
          x: [B, S, D] residual stream (float32).
          bias: float32 [B, N, S, T] (T key positions, T = S) position bias plus padding mask,
            added to the attention logits.

        Returns:
          [B, S, D] float32.
        """
        b, s, _ = x.shape
        h = self.attn_norm(x)
        # [B, S, N*K] -> [B, S, N, K]
        q = self.q(h).reshape(b, s, self.num_heads, self.head_dim)
        k = self.k(h).reshape(b, s, self.num_heads, self.head_dim)
        v = self.v(h).reshape(b, s, self.num_heads, self.head_dim)
        # T5 has no 1/sqrt(K) logit scale (its query initialisation absorbs it).
        logits = jnp.einsum("bsnk,btnk->bnst", q, k).astype(jnp.float32) + bias
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bnst,btnk->bsnk", weights, v)
        # [B, S, N, K] -> [B, S, N*K]
        x = x + self.o(out.reshape(b, s, self.num_heads * self.head_dim)).astype(x.dtype)
        h = self.ffn_norm(x)
        x = x + self.wo(gelu_tanh(self.wi_0(h)) * self.wi_1(h)).astype(x.dtype)
        return x


class T5Encoder(nnx.Module):
    """T5 v1.1 encoder: token ids -> last hidden state.

    Attributes:
      embed: [V, D] token embedding (transformers `shared.weight`).
      rel_bias: [R, N] relative-position bias table, R buckets (transformers keeps it in block 0).
      blocks: `T5Block` stack, every parameter with a leading [num_layers] axis ("layers").
      final_norm: final T5 LayerNorm.
    """

    def __init__(self, cfg: T5Config, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.cfg, self.dtype = cfg, dtype
        self.embed = param(rngs, nnx.initializers.normal(1.0), (cfg.vocab_size, cfg.d_model),
                           ("vocab", "embed"), param_dtype)
        self.rel_bias = param(rngs, nnx.initializers.normal(cfg.d_model**-0.5),
                              (cfg.relative_attention_num_buckets, cfg.num_heads),
                              ("rel_buckets", "heads"), param_dtype)

        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(rngs: nnx.Rngs) -> T5Block:
            return T5Block(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

        self.blocks = make_blocks(rngs)
        prepend_axis(self.blocks, "layers")
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon, param_dtype=param_dtype, rngs=rngs)

    def position_bias(self, length: int) -> jax.Array:
        """float32 [N, S, S] relative position bias shared by all layers."""
        buckets = relative_position_buckets(
            length, length, num_buckets=self.cfg.relative_attention_num_buckets,
            max_distance=self.cfg.relative_attention_max_distance,
        )
        return jnp.einsum("stn->nst", self.rel_bias[...].astype(jnp.float32)[buckets])

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Encodes token ids.

        Args:
          input_ids: int [B, S] token ids in [0, vocab_size).
          attention_mask: [B, S], 1 (or True) keeps a token, 0 is padding (never attended to);
            bool, int or float; None attends to every token.

        Returns:
          float32 [B, S, D] last hidden state (after the final layer norm).
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, S], got shape {tuple(input_ids.shape)}")
        b, s = input_ids.shape
        if attention_mask is not None and tuple(attention_mask.shape) != (b, s):
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} must equal input_ids shape {(b, s)}"
            )
        x = jnp.take(self.embed[...], input_ids, axis=0).astype(jnp.float32)  # [B, S, D]
        bias = self.position_bias(s)[None]  # [1, N, S, S]
        if attention_mask is not None:
            # Padding keys get the most negative float (as transformers does): a zero weight.
            keep = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, T]
            bias = jnp.where(keep, bias, jnp.finfo(jnp.float32).min)
        bias = jnp.broadcast_to(bias, (b, self.cfg.num_heads, s, s))

        graphdef, stacked = nnx.split(self.blocks)

        def body(x, layer_state):
            return nnx.merge(graphdef, layer_state)(x, bias), None

        x, _ = jax.lax.scan(body, x, stacked)
        return rms_norm(x, self.cfg.layer_norm_epsilon, self.final_norm.scale[...]).astype(jnp.float32)
