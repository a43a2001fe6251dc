"""float64 numpy attention (output and gradients) and a checker shared by the kernel tests."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.oracle import rel_l2

BF16_RTOL = 1e-2  # issue 6: bfloat16 inputs against the float64 reference


def reference(q, k, v, keep, dout):
    """float64 attention output and its (dq, dk, dv) for the cotangent `dout`; empty rows give 0."""
    q, k, v, dout = (np.asarray(a, np.float64) for a in (q, k, v, dout))
    scale = 1.0 / np.sqrt(q.shape[-1])
    out, dq, dk, dv = (np.zeros(a.shape) for a in (q, q, k, v))
    for b in range(q.shape[0]):
        if not keep[b].any():
            continue
        s = np.einsum("qnk,snk->nqs", q[b], k[b]) * scale
        s = np.where(keep[b][None, None, :], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)  # [N, Lq, Lk]
        out[b] = np.einsum("nqs,snk->qnk", p, v[b])
        dp = np.einsum("qnk,snk->nqs", dout[b], v[b])
        ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
        dv[b] = np.einsum("nqs,qnk->snk", p, dout[b])
        dq[b] = np.einsum("nqs,snk->qnk", ds, k[b])
        dk[b] = np.einsum("nqs,qnk->snk", ds, q[b])
    return out, (dq, dk, dv)


def inputs(b, lq, lk, n, kd, dtype=jnp.float32, seed=0):
    """Random q [B, Lq, N, K], k, v [B, Lk, N, K] and an output cotangent, rounded to `dtype`."""
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal(s).astype(np.float32) for s in ((b, lq, n, kd), (b, lk, n, kd), (b, lk, n, kd), (b, lq, n, kd))]
    # Round to the input dtype first so the reference sees exactly what the kernel sees.
    return [np.asarray(jnp.asarray(a, dtype).astype(jnp.float32)) for a in arrs]


def check(fn, q, k, v, dout, keep, dtype, rtol, jit=False):
    """fn(q, k, v) forward and VJP at `dout` against the float64 reference.

    Returns (out, grads, errors) with errors the relative L2 of out, dq, dk, dv.
    """
    cast = [jnp.asarray(a, dtype) for a in (q, k, v)]

    def fwd_bwd(q, k, v, do):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(do)

    out, grads = (jax.jit(fwd_bwd) if jit else fwd_bwd)(*cast, jnp.asarray(dout, dtype))
    ref_out, ref_grads = reference(q, k, v, keep, dout)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    errs = [rel_l2(np.asarray(a, np.float32), e) for a, e in zip((out, *grads), (ref_out, *ref_grads))]
    assert max(errs) <= rtol, errs
    return out, grads, errs


def random_keep(b, lk, seed, p_drop=0.4, empty_row=None):
    """A random [B, Lk] bool key mask; `empty_row` (an index) drops every key of that row."""
    keep = np.random.default_rng(seed).uniform(size=(b, lk)) > p_drop
    if empty_row is not None:
        keep[empty_row] = False
    return keep
