"""Flash attention for NVIDIA GPUs, written in Pallas (Triton lowering), forward and backward.

`flash_attention(q, k, v, mask)` computes softmax(q k^T / sqrt(K)) v without materialising the
[Lq, Lk] score matrix: the forward streams key/value blocks through an online softmax (running
max `m`, running sum `l`) and saves only the log-sum-exp per query; the backward recomputes the
probabilities block by block (FlashAttention-2, arXiv 2307.08691, algorithms 1 and 2), in one of
two ways (`BlockSizes.bwd`):
- "fused": one program per key block loops over the query blocks, accumulating dk and dv in
  registers and adding each block's dq share into a float32 buffer with atomic adds. Five matmuls
  per tile (q k^T, dO v^T, dv, dk, dq): the backward costs ~2.5 forwards. The order of the atomic
  adds varies from run to run, so dq may differ in its last bits between runs.
- "split": that kernel for dk and dv and a second kernel, one program per query block, for dq.
  Both recompute q k^T and dO v^T, seven matmuls per tile (~3.5 forwards), but every result is
  bit-reproducible.

Layout is attention()'s: q [B, Lq, N, K], k and v [B, Lk, N, K], mask a [B, Lk] key mask (nonzero
keeps a key). Lengths are padded up to the block size inside and the padded keys masked; the
head dim is zero-padded to a power of two >= 16 (Triton's dot minimum), which changes no logit.
A query whose keys are all masked returns zeros with zero gradients: its log-sum-exp is set to
+inf so every recomputed probability is exactly 0.

Logits are kept in the base-2 domain (scaled by log2(e)) so the kernels use exp2. Softmax
statistics and all accumulators are float32 whatever the input dtype; bf16 inputs feed the
tensor cores with float32 accumulation. Off a GPU the kernels run in Pallas interpret mode.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ltx_jax.nn.kernels.flash_blocks import (  # noqa: F401 - BLOCK_TABLE etc. re-exported
    BLOCK_TABLE,
    BWD_MODES,
    INTERPRET_BLOCKS,
    MIN_BLOCK,
    BlockSizes,
    default_block_sizes,
)

# Finite "minus infinity" for masked logits: exp2(_MASK - m) is exactly 0, never NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
_LOG2E = math.log2(math.e)
_LN2 = math.log(2.0)
# A squeezed (size-1, dropped) block dimension; newer jax spells it pl.squeezed.
_SQ = getattr(pl, "squeezed", None)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    """Static description of one padded problem (hashable: a custom_vjp nondiff argument)."""

    blocks: BlockSizes
    scale: float
    kv_len: int  # true Lk; keys at or beyond it are padding
    kv_pad: int  # padded Lk
    interpret: bool


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None = None,
    *,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
    with_lse: bool = False,
) -> jax.Array:
    """softmax(q k^T / sqrt(K)) v, fused; differentiable in q, k and v.

    Args:
      q: [B, Lq, N, K] queries (float32, bfloat16 or float16).
      k: [B, Lk, N, K] keys, same dtype.
      v: [B, Lk, N, K] values, same dtype.
      mask: optional [B, Lk] key mask, nonzero keeps a key (any dtype, any pattern).
      block_sizes: tiling; default from BLOCK_TABLE for the device and head dim.
      interpret: run the Pallas interpreter; default True off a GPU.
      with_lse: also return the log-sum-exp (see flash_attention_lse).

    Returns:
      [B, Lq, N, K] in q's dtype; zeros for batch rows whose keys are all masked.
    """
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[::2] != k.shape[::2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"flash_attention wants q [B, Lq, N, K], k = v [B, Lk, N, K]; got q{q.shape} k{k.shape} v{v.shape}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
        raise ValueError(f"flash_attention wants one dtype of float32, bfloat16, float16; got {q.dtype}, {k.dtype}, {v.dtype}")
    b, lq, _, kd = q.shape
    lk = k.shape[1]
    if mask is not None and mask.shape != (b, lk):
        raise ValueError(f"flash_attention mask must be [B, Lk] = {[b, lk]}, got {list(mask.shape)}")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    blocks = _fit_blocks(block_sizes or default_block_sizes(kd), lq, lk)
    lq_pad = _round_up(lq, max(blocks.block_q, blocks.block_q_dkv, blocks.block_q_dq))
    lk_pad = _round_up(lk, max(blocks.block_k, blocks.block_k_dkv, blocks.block_k_dq))
    kp = max(MIN_BLOCK, pl.next_power_of_2(kd))

    # [B, L, N, K] -> [B, L_pad, N, K_pad]: zero rows are harmless queries / masked keys, zero
    # head-dim columns add nothing to q.k and give zero output columns that are cut off below.
    q_p = _pad(q, ((0, 0), (0, lq_pad - lq), (0, 0), (0, kp - kd)))
    k_p = _pad(k, ((0, 0), (0, lk_pad - lk), (0, 0), (0, kp - kd)))
    v_p = _pad(v, ((0, 0), (0, lk_pad - lk), (0, 0), (0, kp - kd)))
    keep = None
    if mask is not None:
        keep = _pad((mask != 0).astype(jnp.int32), ((0, 0), (0, lk_pad - lk)))  # [B, Lk_pad]
    cfg = _Cfg(blocks, 1.0 / math.sqrt(kd), lk, lk_pad, bool(interpret))
    if with_lse:
        out, lse = _flash_lse(q_p, k_p, v_p, keep, cfg)
        # Base 2 -> natural log; [B, N, Lq_pad] -> [B, N, Lq]
        return out[:, :lq, :, :kd], lse[:, :, :lq] * _LN2
    out = _flash(q_p, k_p, v_p, keep, cfg)
    return out if out.shape == q.shape else out[:, :lq, :, :kd]


def flash_attention_lse(q, k, v, mask=None, *, block_sizes=None, interpret=None):
    """flash_attention's output and the natural log-sum-exp of each query's logits, both
    differentiable: (out [B, Lq, N, K], lse [B, N, Lq] float32). Rows with no kept key get
    lse = +inf. Ring attention merges blocks with it.
    """
    return flash_attention(q, k, v, mask, block_sizes=block_sizes, interpret=interpret, with_lse=True)


def flash_block_backward(q, k, v, mask, out, lse, do, *, block_sizes=None, interpret=None, grad_dtype=None):
    """One key block's share of the attention gradients, given softmax statistics over ALL keys.

    Ring attention (seq_parallel.py) holds the keys in blocks on different devices. The backward
    kernel only reads out and do through delta_i = sum_k out_ik do_ik, and the log-sum-exp for
    the probabilities p_ij = exp(s_ij - lse_i); given the global output and lse it computes
    exactly this block's terms of dq and its own dk, dv (FlashAttention-2's backward, arXiv
    2307.08691). Inputs are padded as in flash_attention.

    Args:
      q: [B, Lq, N, K] queries; k, v: [B, Lk, N, K] this block's keys and values; one dtype.
      mask: optional [B, Lk] key mask of this block (nonzero keeps a key).
      out: [B, Lq, N, K] the attention output over all keys; do: [B, Lq, N, K] its cotangent
        (q's dtype).
      lse: [B, N, Lq] float32 natural log-sum-exp of each query's logits over all keys; +inf for
        a query with no kept key anywhere (its probabilities, hence gradients, are then 0).
      block_sizes, interpret: as flash_attention.
      grad_dtype: the gradients' dtype (float32 for accumulation); default q's, k's and v's.

    Returns:
      (dq [B, Lq, N, K], dk, dv [B, Lk, N, K]).
    """
    b, lq, _, kd = q.shape
    lk = k.shape[1]
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    blocks = _fit_blocks(block_sizes or default_block_sizes(kd), lq, lk)
    lq_pad = _round_up(lq, max(blocks.block_q_dkv, blocks.block_q_dq))
    lk_pad = _round_up(lk, max(blocks.block_k_dkv, blocks.block_k_dq))
    kp = max(MIN_BLOCK, pl.next_power_of_2(kd))
    q_w = ((0, 0), (0, lq_pad - lq), (0, 0), (0, kp - kd))  # [B, Lq, N, K] -> [B, Lq_pad, N, K_pad]
    k_w = ((0, 0), (0, lk_pad - lk), (0, 0), (0, kp - kd))  # [B, Lk, N, K] -> [B, Lk_pad, N, K_pad]
    keep = None if mask is None else _pad((mask != 0).astype(jnp.int32), ((0, 0), (0, lk_pad - lk)))
    # Natural -> base 2 (+inf stays); padded queries get +inf too: p = 0, they add nothing.
    lse2 = jnp.pad(lse.astype(jnp.float32) * _LOG2E, ((0, 0), (0, 0), (0, lq_pad - lq)), constant_values=jnp.inf)
    cfg = _Cfg(blocks, 1.0 / math.sqrt(kd), lk, lk_pad, bool(interpret))
    dq, dk, dv = _backward(_pad(q, q_w), _pad(k, k_w), _pad(v, k_w), keep, _pad(out, q_w), lse2, _pad(do, q_w), cfg,
                           grad_dtype=grad_dtype)
    return dq[:, :lq, :, :kd], dk[:, :lk, :, :kd], dv[:, :lk, :, :kd]


def _pad(x, widths):
    """jnp.pad, skipped when there is nothing to pad (no copy of a block-aligned input)."""
    return x if not any(hi for _, hi in widths) else jnp.pad(x, widths)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _fit_blocks(blocks: BlockSizes, lq: int, lk: int) -> BlockSizes:
    """Shrinks blocks larger than the (power-of-two rounded) lengths, so short inputs pad little."""
    cq = max(MIN_BLOCK, pl.next_power_of_2(lq))
    ck = max(MIN_BLOCK, pl.next_power_of_2(lk))
    return dataclasses.replace(
        blocks,
        block_q=min(blocks.block_q, cq), block_k=min(blocks.block_k, ck),
        block_q_dkv=min(blocks.block_q_dkv, cq), block_k_dkv=min(blocks.block_k_dkv, ck),
        block_q_dq=min(blocks.block_q_dq, cq), block_k_dq=min(blocks.block_k_dq, ck),
    )


# ------------------------------------------------------------------------------------------------
# Kernels. Each program sees one (batch, head) slice: refs are [L, K] (or [L] for per-row stats).


def _dot_nt(a, b):
    """a @ b.T with float32 accumulation: [M, K] x [N, K] -> [M, N]."""
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _dot_tn(a, b):
    """a.T @ b with float32 accumulation: [M, N] x [M, K] -> [N, K]."""
    return lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _dot(a, b):
    """a @ b with float32 accumulation: [M, N] x [N, K] -> [M, K]."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _key_valid(keep, start, block, cfg: _Cfg):
    """[1, block] bool of kept keys in [start, start + block), or None when all are kept.

    `keep` is the [block] slice of the key mask (its padded tail is already 0) or None.
    """
    if keep is not None:
        return (keep != 0)[None, :]
    if cfg.kv_len == cfg.kv_pad:
        return None
    return (start + lax.broadcasted_iota(jnp.int32, (1, block), 1)) < cfg.kv_len


def _logits(q, k, valid, qk_scale):
    """Base-2 logits of a [bq, K] x [bk, K] tile with masked keys at _MASK_VALUE: [bq, bk]."""
    s = _dot_nt(q, k) * qk_scale
    return s if valid is None else jnp.where(valid, s, _MASK_VALUE)


def _fwd_kernel(*refs, cfg: _Cfg, has_mask: bool):
    q_ref, k_ref, v_ref, *rest = refs
    keep_ref = rest.pop(0) if has_mask else None
    o_ref, lse_ref = rest
    bk = cfg.blocks.block_k
    q = q_ref[...]  # [bq, K]
    bq, kp = q.shape

    def body(j, carry):
        acc, m, l = carry
        start = pl.multiple_of(j * bk, bk)
        k = k_ref[pl.ds(start, bk), :]  # [bk, K]
        v = v_ref[pl.ds(start, bk), :]
        keep = None if keep_ref is None else keep_ref[pl.ds(start, bk)]
        s = _logits(q, k, _key_valid(keep, start, bk, cfg), cfg.scale * _LOG2E)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))  # [bq]
        alpha = jnp.exp2(m - m_new)  # rescales what was accumulated under the old max
        p = jnp.exp2(s - m_new[:, None])  # [bq, bk]
        l = alpha * l + jnp.sum(p, axis=1)
        acc = acc * alpha[:, None] + _dot(p.astype(v.dtype), v)
        return acc, m_new, l

    init = (jnp.zeros((bq, kp), jnp.float32), jnp.full((bq,), _MASK_VALUE, jnp.float32), jnp.zeros((bq,), jnp.float32))
    acc, m, l = lax.fori_loop(0, cfg.kv_pad // bk, body, init)
    out = acc / l[:, None]
    lse = m + jnp.log2(l)
    if has_mask:
        # A row that saw only masked keys has m == _MASK_VALUE: output 0, lse +inf (so p == 0).
        empty = m <= 0.5 * _MASK_VALUE
        out = jnp.where(empty[:, None], 0.0, out)
        lse = jnp.where(empty, jnp.inf, lse)
    o_ref[...] = out.astype(o_ref.dtype)
    lse_ref[...] = lse


def _dkdv_kernel(*refs, cfg: _Cfg, has_mask: bool):
    q_ref, k_ref, v_ref, *rest = refs
    keep_ref = rest.pop(0) if has_mask else None
    fused = cfg.blocks.bwd == "fused"
    if fused:
        # The zero-filled dq input aliases the dq output: only the output ref is used.
        do_ref, lse_ref, delta_ref, _, dk_ref, dv_ref, dq_ref = rest
    else:
        do_ref, lse_ref, delta_ref, dk_ref, dv_ref = rest
    bq, bk = cfg.blocks.block_q_dkv, cfg.blocks.block_k_dkv
    k = k_ref[...]  # [bk, K] (this program's key block)
    v = v_ref[...]
    key_block = pl.program_id(0)  # read here: the interpreter substitutes it only at top level
    valid = _key_valid(None if keep_ref is None else keep_ref[...], key_block * bk, bk, cfg)
    n_q = q_ref.shape[0] // bq

    def body(i, carry):
        dk, dv = carry
        # Each key block starts at a different query block, so that concurrent programs of one
        # (batch, head) add into different dq rows instead of queueing on the same ones.
        start = pl.multiple_of(lax.rem(i + key_block, n_q) * bq, bq)
        q = q_ref[pl.ds(start, bq), :]  # [bq, K]
        do = do_ref[pl.ds(start, bq), :]
        lse = lse_ref[pl.ds(start, bq)]  # [bq]
        delta = delta_ref[pl.ds(start, bq)]
        p = jnp.exp2(_logits(q, k, valid, cfg.scale * _LOG2E) - lse[:, None])  # [bq, bk]
        dv = dv + _dot_tn(p.astype(do.dtype), do)
        dp = _dot_nt(do, v)  # [bq, bk]
        ds = p * (dp - delta[:, None])
        dk = dk + _dot_tn(ds.astype(q.dtype), q)
        if fused:
            # This key block's share of dq for these queries; the scale is applied after the call.
            plgpu.atomic_add(dq_ref, (pl.ds(start, bq), slice(None)), _dot(ds.astype(k.dtype), k))
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(0, n_q, body, (zeros, zeros))
    dk_ref[...] = (dk * cfg.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(*refs, cfg: _Cfg, has_mask: bool):
    q_ref, k_ref, v_ref, *rest = refs
    keep_ref = rest.pop(0) if has_mask else None
    do_ref, lse_ref, delta_ref, dq_ref = rest
    bk = cfg.blocks.block_k_dq
    q = q_ref[...]  # [bq, K]
    do = do_ref[...]
    lse = lse_ref[...]  # [bq]
    delta = delta_ref[...]

    def body(j, dq):
        start = pl.multiple_of(j * bk, bk)
        k = k_ref[pl.ds(start, bk), :]  # [bk, K]
        v = v_ref[pl.ds(start, bk), :]
        valid = _key_valid(None if keep_ref is None else keep_ref[pl.ds(start, bk)], start, bk, cfg)
        p = jnp.exp2(_logits(q, k, valid, cfg.scale * _LOG2E) - lse[:, None])  # [bq, bk]
        ds = p * (_dot_nt(do, v) - delta[:, None])
        return dq + _dot(ds.astype(k.dtype), k)

    dq = lax.fori_loop(0, cfg.kv_pad // bk, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * cfg.scale).astype(dq_ref.dtype)


# ------------------------------------------------------------------------------------------------
# pallas_calls and the custom VJP. Grids are (blocks along L, B, N): consecutive programs share a
# (batch, head) and so the same key/value (or query) slice, which stays in L2.


def _seq_spec(block, kp, by_block):
    """[B, L, N, K] -> one program's [block, K]: its own block, or the whole L when block is L."""
    if by_block:
        return pl.BlockSpec((_SQ, block, _SQ, kp), lambda i, b, h: (b, i, h, 0))
    return pl.BlockSpec((_SQ, block, _SQ, kp), lambda i, b, h: (b, 0, h, 0))


def _stat_spec(block, by_block):
    """[B, N, Lq] float32 row statistics -> one program's [block]."""
    if by_block:
        return pl.BlockSpec((_SQ, _SQ, block), lambda i, b, h: (b, h, i))
    return pl.BlockSpec((_SQ, _SQ, block), lambda i, b, h: (b, h, 0))


def _keep_spec(block, by_block):
    """[B, Lk_pad] int32 key mask -> one program's [block]."""
    if by_block:
        return pl.BlockSpec((_SQ, block), lambda i, b, h: (b, i))
    return pl.BlockSpec((_SQ, block), lambda i, b, h: (b, 0))


def _call(kernel, name, cfg, grid, in_specs, out_specs, out_shape, warps, stages, keep, args, aliases=None):
    """pallas_call with the key mask spliced in after (q, k, v) when there is one.

    `aliases` maps an index of `args` (counted without the mask) to the output it is donated to.
    """
    if keep is not None:
        args = (*args[:3], keep, *args[3:])
        aliases = {(i + 1 if i >= 3 else i): o for i, o in (aliases or {}).items()}
    return pl.pallas_call(
        functools.partial(kernel, cfg=cfg, has_mask=keep is not None),
        grid=grid,
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        compiler_params=plgpu.CompilerParams(num_warps=warps, num_stages=stages),
        interpret=cfg.interpret,
        input_output_aliases=aliases or {},
        name=name,
    )(*args)


def _forward(q, k, v, keep, cfg: _Cfg):
    """Padded forward: out [B, Lq, N, K] and base-2 log-sum-exp [B, N, Lq] float32."""
    b, lq, n, kp = q.shape
    lk, bq = k.shape[1], cfg.blocks.block_q
    in_specs = [_seq_spec(bq, kp, True), _seq_spec(lk, kp, False), _seq_spec(lk, kp, False)]
    if keep is not None:
        in_specs.append(_keep_spec(lk, False))
    return _call(
        _fwd_kernel, "flash_fwd", cfg, (lq // bq, b, n), in_specs,
        [_seq_spec(bq, kp, True), _stat_spec(bq, True)],
        [jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((b, n, lq), jnp.float32)],
        cfg.blocks.warps_fwd, cfg.blocks.stages_fwd, keep, (q, k, v),
    )


def _backward(q, k, v, keep, out, lse, do, cfg: _Cfg, dlse=None, grad_dtype=None):
    """Padded backward: (dq, dk, dv) from the saved output and log-sum-exp.

    `dlse` is the cotangent of the base-2 lse [B, N, Lq] when it is an output too. The gradients
    are in the input dtypes, or all in `grad_dtype` (ring attention accumulates them in float32).
    """
    b, lq, n, kp = q.shape
    lk, blk = k.shape[1], cfg.blocks
    # delta_i = sum_k o_ik do_ik = sum_j p_ij dp_ij, the softmax-Jacobian term; [B, Lq, N] -> [B, N, Lq]
    delta = jnp.sum(out.astype(jnp.float32) * do.astype(jnp.float32), axis=-1).transpose(0, 2, 1)
    if dlse is not None:
        # d lse2 / d s2_ij = p_ij and s2 = log2(e) * logits, so an lse cotangent g adds
        # log2(e) * g * p_ij to the logits' gradient: exactly a shift of delta.
        delta = delta - _LOG2E * jnp.where(jnp.isinf(lse), 0.0, dlse)

    bq, bk = blk.block_q_dkv, blk.block_k_dkv
    fused = blk.bwd == "fused"
    in_specs = [_seq_spec(lq, kp, False), _seq_spec(bk, kp, True), _seq_spec(bk, kp, True)]
    if keep is not None:
        in_specs.append(_keep_spec(bk, True))
    in_specs += [_seq_spec(lq, kp, False), _stat_spec(lq, False), _stat_spec(lq, False)]
    out_specs = [_seq_spec(bk, kp, True), _seq_spec(bk, kp, True)]
    dq_dtype, dk_dtype, dv_dtype = (grad_dtype or x.dtype for x in (q, k, v))
    out_shape = [jax.ShapeDtypeStruct(k.shape, dk_dtype), jax.ShapeDtypeStruct(v.shape, dv_dtype)]
    args = (q, k, v, do, lse, delta)
    if fused:
        # Every key-block program adds into all of its (batch, head)'s dq rows: a float32
        # accumulator, zero-filled and donated to the output so the adds start from 0.
        in_specs.append(_seq_spec(lq, kp, False))
        out_specs.append(_seq_spec(lq, kp, False))
        out_shape.append(jax.ShapeDtypeStruct(q.shape, jnp.float32))
        args += (jnp.zeros(q.shape, jnp.float32),)
    grads = _call(
        _dkdv_kernel, "flash_bwd_dkdv", cfg, (lk // bk, b, n), in_specs, out_specs, out_shape,
        blk.warps_bwd, blk.stages_bwd, keep, args, aliases={6: 2} if fused else None,
    )
    if fused:
        dk, dv, dq = grads
        return (dq * cfg.scale).astype(dq_dtype), dk, dv
    dk, dv = grads

    bq = blk.block_q_dq
    in_specs = [_seq_spec(bq, kp, True), _seq_spec(lk, kp, False), _seq_spec(lk, kp, False)]
    if keep is not None:
        in_specs.append(_keep_spec(lk, False))
    in_specs += [_seq_spec(bq, kp, True), _stat_spec(bq, True), _stat_spec(bq, True)]
    dq = _call(
        _dq_kernel, "flash_bwd_dq", cfg, (lq // bq, b, n), in_specs,
        _seq_spec(bq, kp, True), jax.ShapeDtypeStruct(q.shape, dq_dtype),
        blk.warps_bwd, blk.stages_bwd, keep, (q, k, v, do, lse, delta),
    )
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, keep, cfg: _Cfg):
    return _forward(q, k, v, keep, cfg)[0]


def _flash_fwd(q, k, v, keep, cfg: _Cfg):
    out, lse = _forward(q, k, v, keep, cfg)
    return out, (q, k, v, keep, out, lse)


def _flash_bwd(cfg: _Cfg, res, do):
    q, k, v, keep, out, lse = res
    return (*_backward(q, k, v, keep, out, lse, do, cfg), None)


_flash.defvjp(_flash_fwd, _flash_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash_lse(q, k, v, keep, cfg: _Cfg):
    return _forward(q, k, v, keep, cfg)


def _flash_lse_fwd(q, k, v, keep, cfg: _Cfg):
    out, lse = _forward(q, k, v, keep, cfg)
    return (out, lse), (q, k, v, keep, out, lse)


def _flash_lse_bwd(cfg: _Cfg, res, cts):
    q, k, v, keep, out, lse = res
    do, dlse = cts
    return (*_backward(q, k, v, keep, out, lse, do, cfg, dlse), None)


_flash_lse.defvjp(_flash_lse_fwd, _flash_lse_bwd)
