"""Pallas flash attention (interpret mode on CPU) against float64 numpy: forward and gradients."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.nn.attention import attention
from ltx_jax.nn.kernels.flash_gpu import BLOCK_TABLE, BWD_MODES, INTERPRET_BLOCKS, BlockSizes, default_block_sizes, flash_attention
from tests.nn.attention_reference import BF16_RTOL, check
from tests.nn.attention_reference import inputs as _inputs
from tests.oracle import LAYER_RTOL, rel_l2


def _check(fn, q, k, v, dout, keep, dtype, rtol):
    return check(fn, q, k, v, dout, keep, dtype, rtol)[:2]


@pytest.mark.parametrize("bwd", BWD_MODES)
def test_float32_odd_lengths_mask_and_empty_rows(bwd):
    # Lq=37, Lk=29: neither a multiple of the 16-blocks; head dim 8 is zero-padded to 16.
    q, k, v, dout = _inputs(3, 37, 29, 2, 8)
    keep = np.random.default_rng(1).uniform(size=(3, 29)) > 0.4
    keep[1] = False  # a batch row with every key masked
    keep[2, :20] = False  # a masked run that covers a whole key block
    blocks = dataclasses.replace(INTERPRET_BLOCKS, bwd=bwd)
    fn = lambda q, k, v: flash_attention(q, k, v, keep, block_sizes=blocks)  # noqa: E731
    out, grads = _check(fn, q, k, v, dout, keep, jnp.float32, LAYER_RTOL)
    assert np.all(np.asarray(out)[1] == 0)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(g)[1] == 0)


@pytest.mark.parametrize("kd,lq,lk", [(64, 20, 23), (128, 32, 16)])  # padded; block-aligned
def test_float32_head_dims_without_mask(kd, lq, lk):
    q, k, v, dout = _inputs(1, lq, lk, 2, kd, seed=kd)
    keep = np.ones((1, lk), bool)
    _check(flash_attention, q, k, v, dout, keep, jnp.float32, LAYER_RTOL)


def test_bfloat16_with_mask():
    q, k, v, dout = _inputs(2, 33, 40, 2, 64, dtype=jnp.bfloat16, seed=5)
    keep = np.random.default_rng(2).uniform(size=(2, 40)) > 0.3
    _check(lambda q, k, v: flash_attention(q, k, v, keep), q, k, v, dout, keep, jnp.bfloat16, BF16_RTOL)


@pytest.mark.parametrize("bwd", BWD_MODES)
def test_mixed_block_sizes_pad_to_the_largest(bwd):
    # Forward blocks 16, backward blocks 32: L pads to 64 and the 16-key forward blocks past the
    # true length must be masked without any user mask.
    blocks = BlockSizes(16, 16, 32, 32, 32, 16, bwd=bwd)
    q, k, v, dout = _inputs(1, 35, 40, 1, 16, seed=7)
    keep = np.ones((1, 40), bool)
    fn = lambda q, k, v: flash_attention(q, k, v, block_sizes=blocks)  # noqa: E731
    _check(fn, q, k, v, dout, keep, jnp.float32, LAYER_RTOL)


def test_attention_impl_pallas_matches_xla():
    q, k, v, dout = _inputs(2, 24, 17, 2, 16, seed=9)
    keep = np.random.default_rng(3).uniform(size=(2, 17)) > 0.5
    keep[0] = False
    out, grads = _check(lambda q, k, v: attention(q, k, v, mask=keep.astype(np.float32), impl="pallas"),
                        q, k, v, dout, keep, jnp.float32, LAYER_RTOL)
    ref = attention(q, k, v, mask=keep, impl="xla")
    assert rel_l2(out, ref) <= LAYER_RTOL


@pytest.mark.parametrize("kd,dtype,bwd", [(64, jnp.bfloat16, "fused"), (128, jnp.float32, "split")])
def test_kernels_lower_to_triton_for_cuda(kd, dtype, bwd):
    # Cross-lowering on the CPU runs the Pallas -> Triton lowering rules that a GPU would, so
    # an operation Triton cannot express (the atomic dq adds included) fails here, not first on
    # the GPU.
    x = jax.ShapeDtypeStruct((2, 200, 2, kd), dtype)
    mask = jax.ShapeDtypeStruct((2, 200), jnp.bool_)
    blocks = dataclasses.replace(BLOCK_TABLE[("9", kd)], bwd=bwd)

    def fwd_bwd(q, k, v, do, mask):
        fn = lambda q, k, v: flash_attention(q, k, v, mask, block_sizes=blocks, interpret=False)  # noqa: E731
        return jax.vjp(fn, q, k, v)[1](do)

    text = jax.jit(fwd_bwd).trace(x, x, x, x, mask).lower(lowering_platforms=("cuda",)).as_text()
    # forward, dk/dv(/dq), dq when split
    assert text.count("__gpu$xla.gpu.triton") == (2 if bwd == "fused" else 3)


def test_block_table_and_errors():
    assert default_block_sizes(64) == INTERPRET_BLOCKS  # CPU: interpret-mode blocks
    h100 = types.SimpleNamespace(platform="gpu", compute_capability="9.0")
    assert default_block_sizes(64, h100) == BLOCK_TABLE[("9", 64)]
    assert default_block_sizes(128, h100) == BLOCK_TABLE[("9", 128)]
    unknown = types.SimpleNamespace(platform="gpu", compute_capability="12.0")
    assert default_block_sizes(64, unknown) == BLOCK_TABLE[("9", 64)]
    with pytest.raises(ValueError, match="block_k=48 must be a power of two >= 16; nearest: 32, 64"):
        BlockSizes(block_k=48)
    with pytest.raises(ValueError, match=r"bwd='atomic' must be one of \('fused', 'split'\)"):
        BlockSizes(bwd="atomic")
    q, k, v, _ = _inputs(1, 4, 5, 1, 8)
    with pytest.raises(ValueError, match=r"mask must be \[B, Lk\] = \[1, 5\]"):
        flash_attention(q, k, v, np.ones((1, 4)))
    with pytest.raises(ValueError, match="one dtype of float32, bfloat16, float16"):
        flash_attention(q, k.astype(np.float16), v)
    with pytest.raises(ValueError, match="wants q"):
        flash_attention(q, k[:, :, :, :4], v)


def test_bench_attention_reports_every_impl():
    from ltx_jax.nn.kernels.bench_attention import attention_flops, bench_attention

    assert attention_flops(2, 6144, 6144, 32, 64) == 4 * 2 * 32 * 6144 * 6144 * 64
    assert attention_flops(1, 3, 5, 2, 8, "fwd_bwd") == 3.5 * 4 * 3 * 5 * 2 * 8
    report = bench_attention([(1, 32, 1, 16)], ("pallas", "cudnn"), iters=1)
    rows = {(r["impl"], r["mode"]): r for r in report["results"]}
    for mode in ("fwd", "fwd_bwd"):
        assert rows[("pallas", mode)]["tflops_per_s"] > 0 and rows[("pallas", mode)]["compile_s"] > 0
        assert "cuDNN" in rows[("cudnn", mode)]["error"]  # recorded, not raised, off a GPU
    assert "pallas_bwd_over_fwd" in report["summary"][1]
    assert report["hardware"]["platform"] == "cpu"


def test_lse_output_and_its_gradient():
    # Ring attention merges blocks with the log-sum-exp, so its gradient must be right too:
    # compare with autodiff of the XLA block (float32 logsumexp) at 'highest' precision.
    from ltx_jax.nn.kernels.flash_gpu import flash_attention_lse
    from ltx_jax.nn.kernels.seq_parallel import _block_xla

    q, k, v, dout = _inputs(2, 21, 19, 2, 16, seed=11)
    keep = np.random.default_rng(4).uniform(size=(2, 19)) > 0.5
    w = np.random.default_rng(5).standard_normal((2, 2, 21)).astype(np.float32)  # [B, N, Lq]

    def loss(fn, q, k, v):
        out, lse = fn(q, k, v, keep)
        return jnp.sum(out * dout) + jnp.sum(lse * w)

    got = jax.value_and_grad(lambda *a: loss(flash_attention_lse, *a), argnums=(0, 1, 2))(q, k, v)
    ref = jax.value_and_grad(lambda *a: loss(_block_xla, *a), argnums=(0, 1, 2))(q, k, v)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        assert rel_l2(g, r) <= LAYER_RTOL
    _, lse = flash_attention_lse(q, k, v, np.zeros((2, 19), bool))
    assert np.all(np.isposinf(np.asarray(lse)))  # empty rows: +inf (probabilities exactly 0)
