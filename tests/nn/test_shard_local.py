"""Pallas kernels under a mesh (8 simulated CPU devices) run per shard: equal to the float64
reference (forward and gradients), and the GPU kernel sees only its shard's shapes."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn.attention import attention
from tests.nn.attention_reference import check, inputs, random_keep
from tests.nn.test_seq_parallel import _mesh
from tests.oracle import LAYER_RTOL


# (data, fsdp, seq, tensor): batch on data, odd query length split on seq (padded), heads on
# tensor; then batch on fsdp with 3 heads that tensor=2 cannot split (replicated).
@pytest.mark.parametrize("impl,mesh_shape,shape", [
    ("pallas", (2, 1, 2, 2), (2, 37, 37, 4, 16)),
    ("pallas", (1, 2, 4, 1), (2, 19, 11, 3, 16)),
    ("splash", (2, 1, 2, 2), (2, 20, 20, 2, 64)),
])
def test_per_shard_matches_float64_reference(impl, mesh_shape, shape):
    b, lq, lk, n, kd = shape
    q, k, v, dout = inputs(b, lq, lk, n, kd, seed=lq)
    keep = random_keep(b, lk, seed=2, empty_row=1)
    fn = lambda q, k, v: attention(q, k, v, mask=keep, impl=impl)  # noqa: E731
    with jax.set_mesh(_mesh(mesh_shape)):
        out, grads, _ = check(fn, q, k, v, dout, keep, jnp.float32, LAYER_RTOL, jit=True)
    assert np.all(np.asarray(out)[1] == 0) and all(np.all(np.asarray(g)[1] == 0) for g in grads)


def test_gpu_kernel_gets_local_shapes(monkeypatch):
    # Cross-lowered for CUDA: without the mesh the Triton calls see the global [2, 256, 4, 64];
    # under a (data 2, seq 2, tensor 2) mesh each device's calls see 1 batch row, 128 queries
    # (dq/dk/dv kernel: all 256 keys) and 2 heads, so XLA has nothing to all-gather around them.
    import ltx_jax.nn.kernels.flash_gpu as flash_gpu

    monkeypatch.setattr(flash_gpu, "flash_attention", functools.partial(flash_gpu.flash_attention, interpret=False))
    x = jax.ShapeDtypeStruct((2, 256, 4, 64), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((2, 256), jnp.bool_)

    def fwd_bwd(q, k, v, do, mask):
        return jax.vjp(lambda q, k, v: attention(q, k, v, mask=mask, impl="pallas"), q, k, v)[1](do)

    def kernel_operands():
        text = jax.jit(fwd_bwd).trace(x, x, x, x, mask).lower(lowering_platforms=("cuda",)).as_text()
        calls = [line for line in text.splitlines() if "xla.gpu.triton" in line]
        return [re.findall(r"tensor<([0-9x]+)x(?:bf16|f32)>", c.split(":")[-1].split("->")[0]) for c in calls]

    assert kernel_operands()[0][0] == "2x256x4x64"
    with jax.set_mesh(_mesh((2, 1, 2, 2))):
        fwd, bwd = kernel_operands()
    assert fwd[:3] == ["1x128x2x64", "1x256x2x64", "1x256x2x64"]  # q, k, v
    assert bwd[:3] == ["1x128x2x64", "1x256x2x64", "1x256x2x64"]
