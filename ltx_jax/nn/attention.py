"""Multi-head attention core: one function, several implementations.

`attention(q, k, v, mask=..., impl=...)` is the single entry point used by every model:

| impl      | what                                                                            |
|-----------|---------------------------------------------------------------------------------|
| `xla`     | the reference: einsum, float32 logits and softmax (materialises [Lq, Lk])       |
| `cudnn`   | `jax.nn.dot_product_attention(implementation="cudnn")`, NVIDIA, bf16/fp16 only   |
| `pallas`  | our flash kernel, `kernels/flash_gpu.py` (Triton on GPU, interpret mode elsewhere) |
| `splash`  | the TPU splash kernel, `kernels/splash_tpu.py` (interpret mode off a TPU)        |
| `ulysses` | sequence parallel over the mesh's `seq` axis by all-to-all (`kernels/seq_parallel.py`); runs `inner_impl` per device |
| `ring`    | sequence parallel by a ring of key/value blocks; `inner_impl` xla or pallas      |
| `auto`    | per platform and shape, below                                                   |

`auto` (the table below follows published figures: cuDNN ~410 TFLOP/s on an H100 at LTX's shape,
splash the TPU reference kernel; on a GPU with an autotune record, `bench attention --autotune`'s
measured pallas-vs-cudnn choice replaces the cudnn cell):

| platform | short cross-attention (Lq != Lk, Lk <= SHORT_KV) | bf16/fp16, K % 8 == 0, K <= 128 | otherwise |
|----------|-----------------------------------------------|---------------------------------|-----------|
| GPU      | xla (the plain path; [Lq, Lk<=512] is small)   | cudnn                           | pallas    |
| TPU      | xla                                            | splash                          | splash    |
| CPU      | xla                                            | xla                             | xla       |

So self-attention on a GPU never takes unfused XLA by default (`DiTConfig.attention_impl` defaults
to `auto`). `auto` does not choose sequence parallelism: that is a decision about the mesh, taken
by config (`ulysses` / `ring`).

Under a mesh (`jax.set_mesh`), `pallas` and `splash` run per shard (`kernels/shard_local.py`):
XLA cannot partition a Pallas custom call and would otherwise gather every input to every device.

Masking convention (api.md): `mask` is a [B, Lk] key mask, nonzero keeps a key. A query whose keys
are all dropped returns zeros with zero gradients (a softmax over nothing is undefined; zeros are
what a padded-out batch row should contribute).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

IMPLS = ("xla", "cudnn", "pallas", "splash", "ulysses", "ring", "auto")
SEQ_PARALLEL_IMPLS = ("ulysses", "ring")
# Pallas kernels: opaque to XLA's partitioner, so run per shard of the mesh (kernels/shard_local.py).
PALLAS_IMPLS = ("pallas", "splash")
# Cross-attention to at most this many keys takes the plain XLA path under impl="auto".
SHORT_KV = 512

# Finite "minus infinity": keeps fully masked rows NaN-free in float32 and bfloat16 logits.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    impl: str = "xla",
    inner_impl: str = "auto",
) -> jax.Array:
    """softmax(q k^T / sqrt(K)) v over heads.

    Args:
      q: [B, Lq, N, K] queries.
      k: [B, Lk, N, K] keys.
      v: [B, Lk, N, K] values.
      mask: optional [B, Lk] key mask (bool, integer or float; nonzero keeps the key).
      impl: "xla" (reference), "cudnn" (GPU, bfloat16/float16 inputs), "pallas" (our flash
        kernel; interpret mode off a GPU, slow), "splash" (TPU kernel; interpret mode off a TPU),
        "ulysses" / "ring" (sequence parallel over the mesh's `seq` axis), or "auto" (the table
        in the module docstring).
      inner_impl: the per-device implementation of "ulysses" (any single-device impl) and
        "ring" ("xla", "pallas" or "auto"); ignored otherwise.

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

    check_impls(impl, inner_impl)
    if impl == "auto":
        impl = auto_impl(q, k)
    if impl == "xla":
        return _xla(q, k, v, keep)
    if impl == "cudnn":
        return _cudnn(q, k, v, keep)
    if impl in PALLAS_IMPLS:
        # Imported here: the kernel modules pull in Pallas, which plain CPU users never need.
        from ltx_jax.nn.kernels.shard_local import shard_attention

        return shard_attention(_pallas if impl == "pallas" else _splash, q, k, v, keep)
    from ltx_jax.nn.kernels.seq_parallel import seq_parallel_attention

    return seq_parallel_attention(q, k, v, keep, mode=impl, inner_impl=inner_impl, attention_fn=attention)


def check_impls(impl: str, inner_impl: str = "auto") -> None:
    """Raises a ValueError naming the valid choices unless `impl` is one of IMPLS and
    `inner_impl` a single-device one (the models call it at construction, before any tracing)."""
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; valid: {IMPLS}")
    if inner_impl in SEQ_PARALLEL_IMPLS or inner_impl not in IMPLS:
        single = tuple(i for i in IMPLS if i not in SEQ_PARALLEL_IMPLS)
        raise ValueError(f"attention inner_impl {inner_impl!r} must be a single-device impl: one of {single}")


def auto_impl(q: jax.Array, k: jax.Array, platform: str | None = None, device=None) -> str:
    """The implementation impl="auto" picks for these shapes (the module docstring's table).

    On a GPU where both would do, a measured choice wins over the table: the autotune record
    ($LTX_JAX_FLASH_BLOCKS, kernels/flash_blocks.py) for this GPU generation and head dim.
    """
    platform = platform or jax.default_backend()
    platform = "gpu" if platform in ("cuda", "rocm") else platform
    lq, lk, kd = q.shape[1], k.shape[1], q.shape[-1]
    if platform not in ("gpu", "tpu") or (lq != lk and lk <= SHORT_KV):
        return "xla"
    if platform == "tpu":
        return "splash"
    if q.dtype in (jnp.bfloat16, jnp.float16) and kd % 8 == 0 and kd <= 128:
        from ltx_jax.nn.kernels.flash_blocks import measured_fastest

        return measured_fastest(kd, device) or "cudnn"
    return "pallas"  # never unfused XLA for self-attention on a GPU: it materialises [Lq, Lk]


def _xla(q, k, v, keep):
    scale = 1.0 / math.sqrt(q.shape[-1])
    # Logits and softmax in float32 whatever the compute dtype.
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k, preferred_element_type=jnp.float32) * scale
    if keep is not None:
        logits = jnp.where(keep[:, None, None, :], logits, _MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bnqs,bsnk->bqnk", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return _zero_empty_rows(out.astype(q.dtype), keep)


def _cudnn(q, k, v, keep, implementation: str = "cudnn"):
    # `implementation` exists for the CPU test of this wrapper's masking (with "xla"): the
    # fused cuDNN kernel itself only runs on an NVIDIA GPU.
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
    out = jax.nn.dot_product_attention(q, k, v, mask=mask4, implementation=implementation)
    return _zero_empty_rows(out, keep)


def _pallas(q, k, v, keep):
    from ltx_jax.nn.kernels.flash_gpu import flash_attention

    return flash_attention(q, k, v, keep)  # zeros (and zero gradients) for empty rows inside


def _splash(q, k, v, keep):
    from ltx_jax.nn.kernels.splash_tpu import splash_attention

    return splash_attention(q, k, v, keep)


def _zero_empty_rows(out, keep):
    if keep is None:
        return out
    any_key = jnp.any(keep, axis=-1)  # [B]
    return jnp.where(any_key[:, None, None, None], out, jnp.zeros((), out.dtype))
