"""Issue 6's correctness matrix: every single-device implementation against float64 numpy, forward
and gradients, at odd lengths, with a key mask that empties one batch row, for head dims 64 and
128, in float32 (relative L2 <= 1e-5) and bfloat16 (<= 1e-2). The kernels run in interpret mode;
`cudnn` is its wrapper (masking, empty rows) around jax's XLA path, the fused cuDNN kernel itself
needing an NVIDIA GPU. Sequence-parallel impls: test_seq_parallel.py, test_ring_backward.py."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn import attention as attention_mod
from tests.nn.attention_reference import BF16_RTOL, check, inputs, random_keep
from tests.oracle import LAYER_RTOL

IMPLS = {
    "xla": lambda q, k, v, keep: attention_mod.attention(q, k, v, mask=keep, impl="xla"),
    "pallas": lambda q, k, v, keep: attention_mod.attention(q, k, v, mask=keep, impl="pallas"),
    "splash": lambda q, k, v, keep: attention_mod.attention(q, k, v, mask=keep, impl="splash"),
    "cudnn": functools.partial(attention_mod._cudnn, implementation="xla"),
}
DTYPES = {"float32": (jnp.float32, LAYER_RTOL), "bfloat16": (jnp.bfloat16, BF16_RTOL)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kd", [64, 128])
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_float64_reference(impl, kd, dtype):
    if impl == "cudnn" and dtype == "float32":
        with pytest.raises(ValueError, match="needs bfloat16 or float16"):  # as cuDNN itself
            IMPLS[impl](*inputs(1, 3, 3, 1, kd)[:3], None)
        return
    dt, rtol = DTYPES[dtype]
    q, k, v, dout = inputs(2, 37, 29, 2, kd, dtype=dt, seed=kd)  # no block multiple anywhere
    keep = random_keep(2, 29, seed=kd, empty_row=1)
    out, grads, errs = check(lambda q, k, v: IMPLS[impl](q, k, v, keep), q, k, v, dout, keep, dt, rtol, jit=True)
    print(f"{impl} K={kd} {dtype}: rel errors (out, dq, dk, dv) {errs}")
    assert np.all(np.asarray(out, np.float32)[1] == 0)
    assert all(np.all(np.asarray(g, np.float32)[1] == 0) for g in grads)
