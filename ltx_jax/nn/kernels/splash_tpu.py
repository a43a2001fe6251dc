"""TPU attention through the Pallas splash-attention kernel (`jax.experimental.pallas.ops.tpu`).

`splash_attention(q, k, v, keep)` adapts attention()'s contract to `make_splash_mha`:
- layout: ours is q [B, Lq, N, K]; splash wants [N, L, K] per example, so the batch is vmapped
  and heads moved in front ([B, L, N, K] -> [B, N, L, K]);
- scale: splash applies none, so q is scaled by 1/sqrt(K) (in float32, then cast back) first;
- lengths: splash tiles by multiples of 128 (the TPU lane width), so Lq and Lk are zero-padded up
  to the block sizes; padded keys are dropped through the key segment ids and padded query rows
  are cut off afterwards;
- key masks: segment ids. Every query has segment 1; a kept key has segment 1, a dropped (or
  padded) key segment 0, so a query sees exactly the kept keys;
- fully masked rows: a batch row whose keys are all dropped is given all its real keys (so the
  kernel never sees an empty softmax), then its output is replaced by zeros with `jnp.where`,
  which also makes its gradients exactly zero.

Off a TPU the kernel runs in Pallas interpret mode (slow; tests use tiny shapes). The splash
mask is a full (non-causal) mask for every head; the kernel objects are cached per padded shape.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash

LANES = 128  # splash's block_q and block_kv must be multiples of the TPU lane width.


def splash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    keep: jax.Array | None = None,
    *,
    block: int = LANES,
    interpret: bool | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(K)) v with the splash kernel; differentiable in q, k and v.

    Args:
      q: [B, Lq, N, K] queries.
      k: [B, Lk, N, K] keys, same dtype.
      v: [B, Lk, N, K] values, same dtype.
      keep: optional [B, Lk] key mask, nonzero keeps a key.
      block: the kernel's q and kv tile (a multiple of 128); lengths are padded to it.
      interpret: run the Pallas interpreter; default True off a TPU.

    Returns:
      [B, Lq, N, K] in q's dtype; zeros (with zero gradients) for batch rows with no kept key.
    """
    if block % LANES:
        lo = max(LANES, block // LANES * LANES)
        raise ValueError(f"splash block={block} must be a multiple of {LANES}; nearest: {lo}, {lo + LANES}")
    b, lq, n, kd = q.shape
    lk = k.shape[1]
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    lq_pad, lk_pad = _round_up(lq, block), _round_up(lk, block)

    keep = jnp.ones((b, lk), bool) if keep is None else keep != 0  # [B, Lk]
    any_key = jnp.any(keep, axis=-1)  # [B]
    keep_fed = keep | ~any_key[:, None]  # empty rows attend to all real keys, zeroed below
    kv_ids = jnp.pad(keep_fed.astype(jnp.int32), ((0, 0), (0, lk_pad - lk)))  # [B, Lk_pad], pads 0
    q_ids = jnp.ones((b, lq_pad), jnp.int32)

    scale = 1.0 / math.sqrt(kd)
    q_s = (q.astype(jnp.float32) * scale).astype(q.dtype)
    # [B, L, N, K] -> [B, N, L_pad, K]
    to_heads = lambda x, pad: jnp.pad(x, ((0, 0), (0, pad - x.shape[1]), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # noqa: E731
    kernel = _kernel(n, lq_pad, lk_pad, block, bool(interpret))

    def one(qb, kb, vb, qi, ki):
        return kernel(qb, kb, vb, segment_ids=splash.SegmentIds(q=qi, kv=ki))

    out = jax.vmap(one)(to_heads(q_s, lq_pad), to_heads(k, lk_pad), to_heads(v, lk_pad), q_ids, kv_ids)
    out = out.transpose(0, 2, 1, 3)[:, :lq].astype(q.dtype)  # [B, N, Lq_pad, K] -> [B, Lq, N, K]
    return jnp.where(any_key[:, None, None, None], out, jnp.zeros((), out.dtype))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


@functools.lru_cache(maxsize=64)
def _kernel(heads: int, lq: int, lk: int, block: int, interpret: bool):
    """A splash kernel with a full mask over [heads, lq, lk], forward and backward tiles `block`."""
    sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                              block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = splash.MultiHeadMask([splash.FullMask((lq, lk)) for _ in range(heads)])
    # The kernel holds its block-sparsity tables as arrays: build them as constants even when
    # the first call happens inside a trace, and keep them as numpy so the cached kernel carries
    # no tracer and no mesh (a first call inside shard_map would bake in its manual mesh).
    with jax.ensure_compile_time_eval():
        kernel = splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
    return jax.tree.map(np.asarray, kernel)

