"""attention(): the xla reference against float64 numpy; masks; empty rows; impl errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn.attention import attention
from tests.oracle import LAYER_RTOL, rel_l2


def _numpy_attention(q, k, v, keep):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqnk,bsnk->bnqs", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(keep[:, None, None, :], logits, -np.inf)
    out = np.zeros(q.shape)
    for b in range(q.shape[0]):
        if keep[b].any():
            p = np.exp(logits[b] - logits[b].max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[b] = np.einsum("nqs,snk->qnk", p, v[b])
    return out


def _qkv(b=3, lq=5, lk=7, n=2, k=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, lq, n, k)).astype(np.float32),
            rng.standard_normal((b, lk, n, k)).astype(np.float32),
            rng.standard_normal((b, lk, n, k)).astype(np.float32))


def test_xla_matches_float64_without_mask():
    q, k, v = _qkv()
    out = attention(q, k, v)
    assert rel_l2(out, _numpy_attention(q, k, v, np.ones((3, 7), bool))) <= LAYER_RTOL


@pytest.mark.parametrize("dtype", [bool, np.int32, np.float32])
def test_any_mask_pattern_and_dtype(dtype):
    q, k, v = _qkv()
    keep = np.array([[1, 0, 1, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1]], bool)
    out = attention(q, k, v, mask=keep.astype(dtype))
    assert rel_l2(out, _numpy_attention(q, k, v, keep)) <= LAYER_RTOL


def test_fully_masked_rows_are_zero_with_zero_gradients():
    q, k, v = _qkv()
    keep = np.ones((3, 7), bool)
    keep[1] = False
    out = attention(q, k, v, mask=keep)
    assert np.all(np.asarray(out)[1] == 0)
    assert np.all(np.isfinite(np.asarray(out)))
    grads = jax.grad(lambda q, k, v: jnp.sum(attention(q, k, v, mask=keep) ** 2), argnums=(0, 1, 2))(q, k, v)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(g)[1] == 0)


def test_matches_jax_dot_product_attention():
    q, k, v = _qkv(seed=3)
    keep = np.random.default_rng(0).uniform(size=(3, 7)) > 0.3
    keep[:, 0] = True
    ref = jax.nn.dot_product_attention(q, k, v, mask=keep[:, None, None, :], implementation="xla")
    assert rel_l2(attention(q, k, v, mask=keep), ref) <= LAYER_RTOL


def test_auto_is_xla_on_cpu():
    q, k, v = _qkv()
    np.testing.assert_array_equal(attention(q, k, v, impl="auto"), attention(q, k, v, impl="xla"))


def test_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="unknown attention impl 'flash'"):
        attention(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="inner_impl 'ring' must be a single-device impl"):
        attention(q, k, v, impl="ulysses", inner_impl="ring")
    with pytest.raises(ValueError, match="needs bfloat16 or float16"):
        attention(q, k, v, impl="cudnn")
    with pytest.raises(ValueError, match=r"mask must be \[B, Lk\] = \[3, 7\]"):
        attention(q, k, v, mask=np.ones((3, 5)))
    with pytest.raises(ValueError, match="shapes disagree"):
        attention(q, k[:, :, :1], v)


def test_auto_table_per_platform_and_shape():
    from ltx_jax.nn.attention import SHORT_KV, auto_impl

    def qk(lq, lk, kd=64, dtype=jnp.bfloat16):
        return jnp.zeros((1, lq, 2, kd), dtype), jnp.zeros((1, lk, 2, kd), dtype)

    assert auto_impl(*qk(4096, 4096), platform="gpu") == "cudnn"
    assert auto_impl(*qk(4096, 4096), platform="cuda") == "cudnn"
    assert auto_impl(*qk(4096, 4096, dtype=jnp.float32), platform="gpu") == "pallas"
    assert auto_impl(*qk(4096, 4096, kd=256), platform="gpu") == "pallas"  # beyond cuDNN's head dims
    assert auto_impl(*qk(4096, 128), platform="gpu") == "xla"  # short cross-attention: plain path
    assert auto_impl(*qk(4096, SHORT_KV + 1), platform="gpu") == "cudnn"
    assert auto_impl(*qk(4096, 4096), platform="tpu") == "splash"
    assert auto_impl(*qk(4096, 128), platform="tpu") == "xla"
    assert auto_impl(*qk(4096, 4096), platform="cpu") == "xla"
    # Never unfused XLA for GPU self-attention, whatever the dtype or head dim.
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        for kd in (8, 60, 64, 128, 256):
            assert auto_impl(*qk(64, 64, kd, dtype), platform="gpu") != "xla"


def test_cudnn_wrapper_masking_on_cpu():
    # The cuDNN kernel needs a GPU; its wrapper (mask layout, empty rows -> zeros with zero
    # gradients) is checked here through the same jax.nn.dot_product_attention call with XLA.
    from ltx_jax.nn.attention import _cudnn

    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(k=16))
    keep = np.array([[1, 0, 1, 1, 0, 0, 1], [0] * 7, [1] * 7], bool)
    out = _cudnn(q, k, v, keep, implementation="xla")
    ref = _numpy_attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), keep)
    assert out.dtype == jnp.bfloat16
    assert rel_l2(np.asarray(out, np.float32), ref) <= 1e-2
    assert np.all(np.asarray(out, np.float32)[1] == 0)
    grads = jax.grad(
        lambda q: jnp.sum(_cudnn(q, k, v, keep, implementation="xla").astype(jnp.float32) ** 2)
    )(q)
    g = np.asarray(grads, np.float32)
    assert np.all(np.isfinite(g)) and np.all(g[1] == 0)
