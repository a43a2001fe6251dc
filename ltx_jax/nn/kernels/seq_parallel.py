"""Sequence-parallel attention over the mesh's `seq` axis: Ulysses (all-to-all) and ring.

Both run under `jax.shard_map` on the mesh set with `jax.set_mesh` (read back with
`jax.sharding.get_abstract_mesh()`), with the batch on ("data", "fsdp"), the sequence on "seq" and
the heads on "tensor" wherever those axes divide the array (else that dimension is replicated),
so they compose with data, FSDP and tensor parallelism. Without a mesh, or with a `seq` axis of
size 1, they are the inner implementation on the whole arrays.

- Ulysses (DeepSpeed-Ulysses, arXiv 2309.14509): each device holds L/s tokens of every head; an
  all-to-all turns that into all L tokens of N/s heads, the inner kernel (any attention() impl)
  runs there with the full key mask, and a second all-to-all returns to the token split. Heads
  are zero-padded to a multiple of s (a zero head attends uniformly to zero values: output 0,
  cut off afterwards).
- Ring (arXiv 2310.01889): queries stay put; key/value blocks (and their mask block) travel
  around the `seq` ring with `ppermute`, s steps. Each step gives a block output and its
  log-sum-exp, merged with the running pair by the online-softmax rule (a `lax.scan` over the
  s - 1 remote blocks, so compile time does not grow with s). The inner block is XLA
  (einsum, float32 softmax) or our Pallas kernel (`flash_gpu.flash_attention_lse`).
  The backward is written by hand (a custom VJP, RingAttention's): the forward saves only the
  local q, k, v, mask, the output and the global log-sum-exp; the backward sends each key/value
  block around the ring again with its float32 dk/dv accumulators (s hops, so they come home)
  while dq accumulates locally, every step recomputing that block's probabilities from the
  global lse (XLA einsums, or the flash kernel's backward `flash_gpu.flash_block_backward`).
  Per-device memory is one step's [b, n, L/s, L/s] scores, where autodiff through the scan kept
  every step's (all the scores of the ring) or, for the Pallas inner, every remote k/v block.

Self-attention (Lq == Lk) is sequence-parallel; cross-attention (Lq != Lk: the video attending to
a short text) keeps the queries split on `seq` and replicates k, v and the mask, the plain path.
Lengths that `seq` does not divide are zero-padded; padded keys are masked, padded queries cut.
Batch rows whose keys are all masked return zeros with zero gradients (attention()'s contract).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ltx_jax.nn.kernels.shard_local import SEQ_AXIS, axis_size, shard_attention
RING_INNER = ("xla", "pallas")
# Finite "minus infinity" (as attention.py): merged log-sum-exps of empty blocks stay NaN-free.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

AttentionFn = Callable[..., jax.Array]  # attention(q, k, v, mask=..., impl=...)


def seq_parallel_attention(q, k, v, keep, *, mode: str, inner_impl: str, attention_fn: AttentionFn):
    """Ulysses or ring attention of [B, L, N, K] arrays over the current mesh's `seq` axis.

    Args:
      q: [B, Lq, N, K]; k, v: [B, Lk, N, K].
      keep: [B, Lk] bool key mask or None.
      mode: "ulysses" or "ring".
      inner_impl: the per-device implementation (an attention() impl for Ulysses and the
        cross-attention path; one of RING_INNER, or "auto", for ring).
      attention_fn: attention() itself (passed in to avoid an import cycle).

    Returns:
      [B, Lq, N, K] in q's dtype.
    """
    s = axis_size(jax.sharding.get_abstract_mesh(), SEQ_AXIS)
    if s == 1:
        return attention_fn(q, k, v, mask=keep, impl=inner_impl)
    if mode == "ring":
        inner_impl = _ring_inner(inner_impl)
    if q.shape[1] != k.shape[1]:  # cross-attention: queries split on seq, all keys everywhere
        return shard_attention(lambda q, k, v, m: attention_fn(q, k, v, mask=m, impl=inner_impl), q, k, v, keep)
    if mode == "ulysses":
        # Every device needs the whole key mask after the all-to-all.
        body = partial(_ulysses, s=s, inner_impl=inner_impl, attention_fn=attention_fn)
        return shard_attention(body, q, k, v, keep, kv_on_seq=True)
    if mode == "ring":
        body = partial(_ring, s=s, inner_impl=inner_impl)
        return shard_attention(body, q, k, v, keep, kv_on_seq=True, mask_on_seq=True)
    raise ValueError(f"sequence-parallel mode must be 'ulysses' or 'ring', got {mode!r}")


def _ring_inner(inner_impl: str) -> str:
    if inner_impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    if inner_impl not in RING_INNER:
        raise ValueError(f"ring attention's inner_impl must be one of {RING_INNER + ('auto',)}, got {inner_impl!r} "
                         "(ring merges block log-sum-exps, which only these return)")
    return inner_impl


# ------------------------------------------------------------------------------------------------
# Per-device bodies (inside shard_map): arrays are the local shards.


def _ulysses(q, k, v, keep, *, s: int, inner_impl: str, attention_fn: AttentionFn):
    """Local [b, L/s, n, K] -> all-to-all -> [b, L, n/s, K] -> attention -> back."""
    n = q.shape[2]
    n_pad = -(-n // s) * s
    pad_heads = lambda x: x if n_pad == n else jnp.pad(x, ((0, 0), (0, 0), (0, n_pad - n), (0, 0)))  # noqa: E731
    # [b, L/s, n_pad, K] -> [b, L, n_pad/s, K]: split heads across the ring, gather the sequence.
    gather = lambda x: lax.all_to_all(pad_heads(x), SEQ_AXIS, split_axis=2, concat_axis=1, tiled=True)  # noqa: E731
    out = attention_fn(gather(q), gather(k), gather(v), mask=keep, impl=inner_impl)
    # [b, L, n_pad/s, K] -> [b, L/s, n_pad, K]
    out = lax.all_to_all(out, SEQ_AXIS, split_axis=1, concat_axis=2, tiled=True)
    return out[:, :, :n]


def _ring(q, k, v, keep, *, s: int, inner_impl: str):
    """Local queries [b, L/s, n, K] against the s key/value blocks passed around the ring."""
    if keep is None:
        keep = jnp.ones(k.shape[:2], bool)  # [b, L/s]; rotates with its block
    return _ring_attention(q, k, v, keep, s, inner_impl)


def _rotate(x, s: int):
    """Sends the local block to the next device on the `seq` ring (device i -> i + 1 mod s)."""
    return lax.ppermute(x, SEQ_AXIS, [(i, (i + 1) % s) for i in range(s)])


def _merge(out, lse, o_blk, lse_blk):
    """Online-softmax merge of two normalised outputs [b, Lq, n, K] with their lse [b, n, Lq]."""
    lse_new = jnp.logaddexp(lse, lse_blk)
    w_old = jnp.exp(lse - lse_new).transpose(0, 2, 1)[..., None]  # [b, n, Lq] -> [b, Lq, n, 1]
    w_blk = jnp.exp(lse_blk - lse_new).transpose(0, 2, 1)[..., None]
    return out * w_old + o_blk * w_blk, lse_new


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _ring_attention(q, k, v, keep, s: int, inner_impl: str):
    return _ring_forward(q, k, v, keep, s, inner_impl)[0]


def _ring_forward(q, k, v, keep, s: int, inner_impl: str):
    """Output [b, Lq, n, K] in q's dtype and the natural lse [b, n, Lq] over all s blocks.

    A query with no kept key anywhere on the ring (a fully masked batch row) gets output 0 and
    lse +inf, so that the backward's probabilities exp(s_ij - lse_i) are exactly 0 for it.
    """
    block = _block_xla if inner_impl == "xla" else _block_pallas

    def step(carry, _):
        # Rotate first, then attend: the s - 1 steps after the local block (scan: one compiled body).
        out, lse, k, v, keep = carry
        k, v, keep = _rotate(k, s), _rotate(v, s), _rotate(keep, s)
        out, lse = _merge(out, lse, *block(q, k, v, keep))
        return (out, lse, k, v, keep), None

    out, lse = block(q, k, v, keep)  # [b, Lq, n, K] f32, [b, n, Lq] f32
    (out, lse, _, _, _), _ = lax.scan(step, (out, lse, k, v, keep), None, length=s - 1)
    # Every block of an empty row weighed in at ~_MASK_VALUE, so its merged lse stays there.
    empty = lse <= 0.5 * _MASK_VALUE  # [b, n, Lq]
    out = jnp.where(empty.transpose(0, 2, 1)[..., None], 0.0, out).astype(q.dtype)
    return out, jnp.where(empty, jnp.inf, lse)


def _ring_fwd(q, k, v, keep, s: int, inner_impl: str):
    out, lse = _ring_forward(q, k, v, keep, s, inner_impl)
    # Only local arrays: no per-step probabilities and no remote blocks (the backward re-sends them).
    return out, (q, k, v, keep, out, lse)


def _ring_bwd(s: int, inner_impl: str, res, dout):
    """RingAttention's backward (arXiv 2310.01889; FlashAttention-2's, arXiv 2307.08691, per block).

    dq accumulates here; each key/value block travels the ring again together with its float32
    dk/dv accumulators, every device adding its queries' share, and a last hop brings the
    accumulators home. Probabilities are recomputed per block from the global lse, so memory is
    one block's scores at a time whatever s is.
    """
    q, k, v, keep, out, lse = res
    if inner_impl == "xla":
        # delta_i = sum_k out_ik dout_ik = sum_j p_ij dp_ij over all keys; [b, Lq, n] -> [b, n, Lq]
        delta = jnp.sum(out.astype(jnp.float32) * dout.astype(jnp.float32), axis=-1).transpose(0, 2, 1)
        block = partial(_block_bwd_xla, q, dout=dout, lse=lse, delta=delta)
    else:
        block = partial(_block_bwd_pallas, q, dout=dout, out=out, lse=lse)

    def accumulate(dq, dk, dv, k, v, keep):
        dq_b, dk_b, dv_b = block(k, v, keep)
        return dq + dq_b, dk + dk_b, dv + dv_b

    def step(carry, _):
        # The k/v hop does not depend on this block's gradients, so it can overlap them.
        dq, dk, dv, k, v, keep = carry
        dq, dk, dv = accumulate(dq, dk, dv, k, v, keep)
        return (dq, _rotate(dk, s), _rotate(dv, s), _rotate(k, s), _rotate(v, s), _rotate(keep, s)), None

    zeros = lambda x: jnp.zeros(x.shape, jnp.float32)  # noqa: E731
    carry = (zeros(q), zeros(k), zeros(v), k, v, keep)
    (dq, dk, dv, k, v, keep), _ = lax.scan(step, carry, None, length=s - 1)
    # The last block (the one that started one device back) needs no further k/v hop.
    dq, dk, dv = accumulate(dq, dk, dv, k, v, keep)
    dk, dv = _rotate(dk, s), _rotate(dv, s)  # s hops in all: each accumulator is home
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_ring_attention.defvjp(_ring_fwd, _ring_bwd)


def _block_xla(q, k, v, keep):
    """One block: normalised output [b, Lq, n, K] float32 and natural log-sum-exp [b, n, Lq].

    A query whose block keys are all masked gets lse ~ _MASK_VALUE, i.e. zero weight in the merge.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(keep[:, None, None, :], logits, _MASK_VALUE)
    lse = jax.nn.logsumexp(logits, axis=-1)  # [b, n, Lq]
    probs = jnp.exp(logits - lse[..., None])
    out = jnp.einsum("bnqs,bsnk->bqnk", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return out, lse


def _block_pallas(q, k, v, keep):
    """As _block_xla with our flash kernel (its lse is differentiable too)."""
    from ltx_jax.nn.kernels.flash_gpu import flash_attention_lse

    out, lse = flash_attention_lse(q, k, v, keep)
    # The kernel marks empty rows with lse = +inf (so its backward sees p = 0); for the merge an
    # empty block must weigh nothing instead.
    return out.astype(jnp.float32), jnp.where(jnp.isinf(lse), _MASK_VALUE, lse)


def _block_bwd_xla(q, k, v, keep, *, dout, lse, delta):
    """One key block's gradients (dq share [b, Lq, n, K], dk, dv [b, Lk, n, K], all float32) from
    the global lse and delta [b, n, Lq]; the [b, n, Lq, Lk] tiles live only inside this call."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(keep[:, None, None, :], logits, _MASK_VALUE)
    probs = jnp.exp(logits - lse[..., None])  # globally normalised; 0 for masked keys and empty rows
    dv = jnp.einsum("bnqs,bqnk->bsnk", probs.astype(dout.dtype), dout, preferred_element_type=jnp.float32)
    dprobs = jnp.einsum("bqnk,bsnk->bnqs", dout, v, preferred_element_type=jnp.float32)
    dlogits = probs * (dprobs - delta[..., None]) * scale  # the softmax Jacobian, times d logits / d (q.k)
    dq = jnp.einsum("bnqs,bsnk->bqnk", dlogits.astype(k.dtype), k, preferred_element_type=jnp.float32)
    dk = jnp.einsum("bnqs,bqnk->bsnk", dlogits.astype(q.dtype), q, preferred_element_type=jnp.float32)
    return dq, dk, dv


def _block_bwd_pallas(q, k, v, keep, *, dout, out, lse):
    """As _block_bwd_xla with our flash kernel's backward (it takes delta from out and dout)."""
    from ltx_jax.nn.kernels.flash_gpu import flash_block_backward

    return flash_block_backward(q, k, v, keep, out, lse, dout, grad_dtype=jnp.float32)
