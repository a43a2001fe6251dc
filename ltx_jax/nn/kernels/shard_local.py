"""Runs a single-device attention kernel on each shard of the ambient mesh.

A Pallas kernel (our Triton flash kernel, TPU splash) is an opaque custom call to XLA's SPMD
partitioner, which would all-gather sharded inputs and run the whole attention on every device.
`shard_attention` instead calls the kernel inside `jax.shard_map` on the mesh set with `jax.set_mesh`:
the batch on ("data", "fsdp") and the heads on "tensor" wherever those axes divide the array, and
the queries split along the `seq` axis (zero-padded to a multiple of its size) against the whole
key/value sequence, which each device gathers. Attention is independent per batch row, head and
query, so every device computes exactly its part of the single-device result; the key/value
cotangents of the `seq` split are summed by shard_map's transpose.

Axes already manual (inside an enclosing shard_map, e.g. Ulysses running its inner kernel) are
left alone; without a mesh, or when no axis applies, the kernel runs directly.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ltx_jax.sharding import MESH_AXES, axis_size, divisible_axes

SEQ_AXIS = MESH_AXES[2]  # "seq"
BATCH_AXES = MESH_AXES[:2]  # ("data", "fsdp")
HEAD_AXIS = MESH_AXES[3]  # "tensor"


def head_axis(mesh, heads: int):
    """"tensor" when it splits `heads` evenly, else None (heads replicated)."""
    n = axis_size(mesh, HEAD_AXIS)
    return HEAD_AXIS if n > 1 and heads % n == 0 else None


def pad_len(x, length: int):
    """[B, L, ...] -> [B, length, ...] with zeros."""
    if x.shape[1] == length:
        return x
    return jnp.pad(x, ((0, 0), (0, length - x.shape[1])) + ((0, 0),) * (x.ndim - 2))


def shard_attention(body: Callable, q, k, v, keep, *, kv_on_seq: bool = False, mask_on_seq: bool = False):
    """body(q, k, v, keep) under `jax.shard_map` on the ambient mesh, out [B, Lq, N, K]; called
    directly when no mesh axis applies.

    `body` is a single-device attention of [B, Lq, N, K] queries, [B, Lk, N, K] keys and values
    and a [B, Lk] bool key mask or None.

    The batch goes on ("data", "fsdp") and the heads on "tensor" where they divide; the queries
    on `seq`, zero-padded to a multiple of its size and cut back afterwards. Keys and values are
    whole on every device, unless `kv_on_seq` (self-attention, Lq == Lk: sequence-parallel bodies)
    splits them like the queries, masking the padded keys; `mask_on_seq` splits the key mask too
    (ring: it travels with its key block), else every device gets all of it.
    """
    mesh = jax.sharding.get_abstract_mesh()
    b, lq, n, _ = q.shape
    batch, heads, s = divisible_axes(mesh, BATCH_AXES, b), head_axis(mesh, n), axis_size(mesh, SEQ_AXIS)
    if batch is None and heads is None and s == 1:
        return body(q, k, v, keep)
    seq = SEQ_AXIS if s > 1 else None
    lq_pad = -(-lq // s) * s
    q = pad_len(q, lq_pad)
    if kv_on_seq:
        if keep is None and lq_pad != lq:
            keep = jnp.ones(k.shape[:2], bool)
        k, v = pad_len(k, lq_pad), pad_len(v, lq_pad)
        keep = None if keep is None else pad_len(keep, lq_pad)  # [B, Lk] -> [B, L_pad], pads dropped
    q_spec = P(batch, seq, heads, None)
    kv_spec = q_spec if kv_on_seq else P(batch, None, heads, None)
    if keep is None:
        fn, args, in_specs = (lambda q, k, v: body(q, k, v, None)), (q, k, v), (q_spec, kv_spec, kv_spec)
    else:
        fn, args = body, (q, k, v, keep)
        in_specs = (q_spec, kv_spec, kv_spec, P(batch, seq if mask_on_seq else None))
    out = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=q_spec, check_vma=False)(*args)
    return out[:, :lq]
