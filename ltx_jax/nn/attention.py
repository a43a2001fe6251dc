"""Multi-head attention core: one function, several implementations.

`attention(q, k, v, mask=..., impl=...)` is the single entry point used by every model. `xla` is
the reference (float32 logits and softmax, einsum); `cudnn` uses `jax.nn.dot_product_attention`
with cuDNN's fused kernel on NVIDIA GPUs; `pallas` is our flash-attention kernel
(`ltx_jax.nn.kernels.flash_gpu`, Triton lowering on GPU, Pallas interpret mode elsewhere). Later
kernels (TPU splash, sequence-parallel) plug in here and are tested against `xla`.

Masking convention (api.md): `mask` is a [B, Lk] key mask, nonzero keeps a key. A query whose keys
are all dropped returns zeros with zero gradients (a softmax over nothing is undefined; zeros are
what a padded-out batch row should contribute).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

IMPLS = ("xla", "cudnn", "pallas", "auto")
# Implementations that later issues add; named here so the error for them is precise.
PLANNED_IMPLS = ("splash", "ring")

# Finite "minus infinity": keeps fully masked rows NaN-free in float32 and bfloat16 logits.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    impl: str = "xla",
) -> jax.Array:
    """softmax(q k^T / sqrt(K)) v over heads.

    Args:
      q: [B, Lq, N, K] queries.
      k: [B, Lk, N, K] keys.
      v: [B, Lk, N, K] values.
      mask: optional [B, Lk] key mask (bool, integer or float; nonzero keeps the key).
      impl: "xla" (reference), "cudnn" (GPU, bfloat16/float16 inputs), "pallas" (our flash
        kernel; interpret mode off a GPU, slow), or "auto" (on a GPU cudnn where it applies, else
        pallas; xla elsewhere).

    Returns:
      [B, Lq, N, K] in the dtype of `q`.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention wants [B, L, N, K] arrays; got q{q.shape} k{k.shape} v{v.shape}")
    b, _, n, kd = q.shape
    if k.shape[0] != b or k.shape[2:] != (n, kd) or v.shape != k.shape:
        raise ValueError(f"attention shapes disagree: q{q.shape} k{k.shape} v{v.shape}")
    keep = None
    if mask is not None:
        if mask.shape != (b, k.shape[1]):
            raise ValueError(f"attention mask must be [B, Lk] = {[b, k.shape[1]]}, got {list(mask.shape)}")
        keep = mask != 0  # [B, Lk] bool

    if impl == "auto":
        impl = _auto_impl(q)
    if impl == "xla":
        return _xla(q, k, v, keep)
    if impl == "cudnn":
        return _cudnn(q, k, v, keep)
    if impl == "pallas":
        return _pallas(q, k, v, keep)
    if impl in PLANNED_IMPLS:
        raise ValueError(f"attention impl {impl!r} is not built yet; available: {IMPLS}")
    raise ValueError(f"unknown attention impl {impl!r}; valid: {IMPLS}")


def _auto_impl(q: jax.Array) -> str:
    if jax.default_backend() != "gpu":
        return "xla"
    if q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] % 8 == 0:
        return "cudnn"
    return "pallas"  # never unfused XLA on a GPU: it materialises the [Lq, Lk] scores


def _xla(q, k, v, keep):
    scale = 1.0 / math.sqrt(q.shape[-1])
    # Logits and softmax in float32 whatever the compute dtype.
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k, preferred_element_type=jnp.float32) * scale
    if keep is not None:
        logits = jnp.where(keep[:, None, None, :], logits, _MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bnqs,bsnk->bqnk", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return _zero_empty_rows(out.astype(q.dtype), keep)


def _cudnn(q, k, v, keep):
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(
            f"attention impl 'cudnn' needs bfloat16 or float16 inputs, got {q.dtype}; "
            "use impl='xla' for float32 or set the model dtype to bfloat16"
        )
    mask4 = None
    if keep is not None:
        # Rows with no key at all get every key (so cuDNN never sees an empty row), then zeros.
        any_key = jnp.any(keep, axis=-1, keepdims=True)
        mask4 = (keep | ~any_key)[:, None, None, :]  # [B, 1, 1, Lk]
    out = jax.nn.dot_product_attention(q, k, v, mask=mask4, implementation="cudnn")
    return _zero_empty_rows(out, keep)


def _pallas(q, k, v, keep):
    # Imported here: the kernel module pulls in Pallas, which plain CPU users never need.
    from ltx_jax.nn.kernels.flash_gpu import flash_attention

    return flash_attention(q, k, v, keep)  # zeros (and zero gradients) for empty rows inside


def _zero_empty_rows(out, keep):
    if keep is None:
        return out
    any_key = jnp.any(keep, axis=-1)  # [B]
    return jnp.where(any_key[:, None, None, None], out, jnp.zeros((), out.dtype))
