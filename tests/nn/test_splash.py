"""TPU splash attention (Pallas interpret mode on CPU) against float64 numpy: forward and gradients."""

import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn.attention import attention
from ltx_jax.nn.kernels.splash_tpu import splash_attention
from tests.nn.attention_reference import BF16_RTOL, check, inputs, random_keep
from tests.oracle import LAYER_RTOL, rel_l2


@pytest.mark.parametrize("kd", [64, 128])
def test_float32_odd_lengths_masks_and_empty_rows(kd):
    # Lq=37 and Lk=29 pad to one 128-block; Lq=130 spans two query blocks.
    lq = 37 if kd == 64 else 130
    q, k, v, dout = inputs(3, lq, 29, 2, kd, seed=kd)
    keep = random_keep(3, 29, seed=1, empty_row=1)
    out, grads, errs = check(lambda q, k, v: splash_attention(q, k, v, keep), q, k, v, dout, keep,
                             jnp.float32, LAYER_RTOL)
    print(f"splash float32 K={kd} rel errors (out, dq, dk, dv):", errs)
    assert np.all(np.asarray(out)[1] == 0)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[1] == 0)


def test_bfloat16_two_key_blocks_through_attention():
    # Lk=140 pads to two kv blocks; a float mask through attention(impl="splash").
    q, k, v, dout = inputs(2, 33, 140, 2, 64, dtype=jnp.bfloat16, seed=5)
    keep = random_keep(2, 140, seed=2, p_drop=0.3)
    fn = lambda q, k, v: attention(q, k, v, mask=keep.astype(np.float32), impl="splash")  # noqa: E731
    out, _, errs = check(fn, q, k, v, dout, keep, jnp.bfloat16, BF16_RTOL, jit=True)
    print("splash bfloat16 rel errors (out, dq, dk, dv):", errs)
    ref = attention(q, k, v, mask=keep, impl="xla")
    assert rel_l2(np.asarray(out, np.float32), ref) <= BF16_RTOL


def test_no_mask_and_block_errors():
    q, k, v, dout = inputs(1, 20, 23, 1, 64, seed=9)
    check(splash_attention, q, k, v, dout, np.ones((1, 23), bool), jnp.float32, LAYER_RTOL)
    with pytest.raises(ValueError, match="block=200 must be a multiple of 128; nearest: 128, 256"):
        splash_attention(q, k, v, block=200)
