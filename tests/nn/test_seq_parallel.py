"""Sequence-parallel attention (Ulysses, ring) on 8 simulated CPU devices: equal to the float64
reference and to one device, forward and gradients (the DiT-level test is test_seq_parallel_dit.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn.attention import attention
from ltx_jax.sharding import MESH_AXES
from tests.nn.attention_reference import check, inputs, random_keep
from tests.oracle import LAYER_RTOL, rel_l2


def _mesh(shape):
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 4)


# (mesh data, fsdp, seq, tensor), impl, inner impl, (B, Lq, Lk, N, K). Lq=37 is no multiple of the
# seq size (padded); N=4 heads on seq=8 are zero-padded for Ulysses; Lq != Lk is cross-attention.
CASES = [
    ((1, 1, 8, 1), "ring", "xla", (2, 37, 37, 4, 16)),
    ((1, 1, 8, 1), "ulysses", "xla", (2, 37, 37, 4, 16)),
    ((2, 1, 2, 2), "ring", "pallas", (2, 37, 37, 4, 16)),
    ((2, 1, 2, 2), "ulysses", "splash", (2, 37, 37, 4, 64)),
    ((1, 2, 4, 1), "ring", "auto", (2, 37, 11, 4, 16)),
]


@pytest.mark.parametrize("mesh_shape,impl,inner,shape", CASES, ids=lambda c: str(c))
def test_matches_float64_reference_with_masks_and_empty_rows(mesh_shape, impl, inner, shape):
    b, lq, lk, n, kd = shape
    q, k, v, dout = inputs(b, lq, lk, n, kd, seed=lq + lk)
    keep = random_keep(b, lk, seed=1, empty_row=1)
    fn = lambda q, k, v: attention(q, k, v, mask=keep, impl=impl, inner_impl=inner)  # noqa: E731
    with jax.set_mesh(_mesh(mesh_shape)):
        out, grads, errs = check(fn, q, k, v, dout, keep, jnp.float32, LAYER_RTOL, jit=True)
    print(f"{impl}/{inner} mesh {mesh_shape} rel errors (out, dq, dk, dv):", errs)
    assert np.all(np.asarray(out)[1] == 0)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[1] == 0)
    single = attention(q, k, v, mask=keep, impl="xla")  # the same call on one device
    assert rel_l2(out, single) <= LAYER_RTOL


def test_without_mesh_or_mask_is_the_inner_impl():
    q, k, v, dout = inputs(1, 16, 16, 2, 8, seed=3)
    out = attention(q, k, v, impl="ring", inner_impl="xla")  # no mesh set: one device
    np.testing.assert_array_equal(out, attention(q, k, v, impl="xla"))
    with jax.set_mesh(_mesh((1, 2, 4, 1))):
        check(lambda q, k, v: attention(q, k, v, impl="ring"), q, k, v, dout, np.ones((1, 16), bool),
              jnp.float32, LAYER_RTOL, jit=True)
        with pytest.raises(ValueError, match="inner_impl must be one of"):
            attention(q, k, v, impl="ring", inner_impl="splash")


def test_bench_covers_sequence_parallel_impls():
    from ltx_jax.nn.kernels.bench_attention import baseline_impl, bench_attention, default_impls

    assert default_impls("gpu", 1) == ("pallas", "cudnn", "xla")
    assert default_impls("tpu", 8) == ("splash", "xla", "ring:xla", "ulysses:splash", "ulysses:xla")
    assert "ring:pallas" in default_impls("gpu", 8) and default_impls("cpu", 8)[0] == "xla"
    assert (baseline_impl("gpu"), baseline_impl("tpu"), baseline_impl("cpu")) == ("cudnn", "splash", "xla")
    report = bench_attention([(1, 64, 8, 16)], ("xla", "ring:xla", "ulysses:xla"), dtype="float32",
                             modes=("fwd",), iters=1)
    rows = {r["impl"]: r for r in report["results"]}
    assert all(rows[i]["tflops_per_s"] > 0 for i in ("xla", "ring:xla", "ulysses:xla")), rows
    assert rows["ring:xla"]["devices"] == 8 and report["baseline"] == "xla"
    assert {"ring:xla_vs_xla", "ulysses:xla_vs_xla"} <= set(report["summary"][0])
