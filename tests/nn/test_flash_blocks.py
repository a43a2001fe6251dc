"""The flash kernel's tilings: autotune on the CPU (interpret mode), the JSON record it writes,
and default_block_sizes reading that record back for a GPU."""

import dataclasses
import json
import types

import pytest

from ltx_jax.nn.kernels.bench_attention import check_accuracy, run_autotune
from ltx_jax.nn.kernels.flash_blocks import BLOCK_TABLE, RECORD_ENV, BlockSizes, default_block_sizes, record_blocks
from tests.oracle import LAYER_RTOL

H100 = types.SimpleNamespace(platform="gpu", compute_capability="9.0", device_kind="NVIDIA H100 80GB HBM3")
A100 = types.SimpleNamespace(platform="gpu", compute_capability="8.0", device_kind="NVIDIA A100")


@pytest.mark.parametrize("bwd", ["fused", "split"])
def test_check_accuracy_reports_both_backwards(bwd):
    report = check_accuracy((2, 40, 2, 16), "float32", bwd=bwd)
    assert report["bwd"] == bwd
    for name in ("out", "dq", "dk", "dv"):
        assert report["rel_l2"][name] <= LAYER_RTOL and report["rel_l2"][f"{name}_finite"]


def test_autotune_records_the_fastest_and_the_kernel_uses_it(tmp_path, monkeypatch):
    record = tmp_path / "blocks.json"
    fwd = ((16, 16, 4, 3), (32, 16, 4, 3))
    bwd = (("fused", 16, 32, 32, 16, 4, 2), ("split", 32, 16, 16, 32, 4, 2))
    report = run_autotune([(1, 64, 1, 16), (1, 32, 1, 32)], "float32", iters=1, budget_s=60.0,
                          record=record, fwd_candidates=fwd, bwd_candidates=bwd)
    # cuDNN cannot run here (float32, and no GPU): its error is recorded in its place.
    impl_ms = report["runs"][0]["impl_ms"]
    assert "needs bfloat16 or float16" in impl_ms["cudnn"] and impl_ms["pallas"] > 0
    assert [r["shape"] for r in report["runs"]] == [[1, 64, 1, 16], [1, 32, 1, 32]]
    run = report["runs"][0]
    assert len(run["fwd"]) == 2 and len(run["fwd_bwd"]) == 2
    fastest = min(run["fwd_bwd"], key=lambda r: r["ms"])
    assert run["best"] == fastest["blocks"]

    saved = json.loads(record.read_text())
    # Both head dims (16 and 32) are <= 64, so the second run's entry replaced the first's.
    assert set(saved) == {"cpu:64"}
    assert saved["cpu:64"]["blocks"] == report["runs"][1]["best"] and saved["cpu:64"]["shape"] == [1, 32, 1, 32]

    # On a GPU, $LTX_JAX_FLASH_BLOCKS entries win over BLOCK_TABLE for their generation only.
    tuned = BlockSizes(block_q=64, block_k=32, bwd="split")
    record_blocks(record, tuned, 64, H100, fwd_bwd_ms=1.0)
    monkeypatch.setenv(RECORD_ENV, str(record))
    assert default_block_sizes(64, H100) == tuned
    assert default_block_sizes(128, H100) == BLOCK_TABLE[("9", 128)]
    assert default_block_sizes(64, A100) == BLOCK_TABLE[("8", 64)]
    assert set(json.loads(record.read_text())) == {"cpu:64", "9:64"}  # earlier entries kept


def test_bad_record_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "blocks.json"
    bad.write_text(json.dumps({"9:64": {"blocks": {"block_q": 48}}}))
    monkeypatch.setenv(RECORD_ENV, str(bad))
    with pytest.raises(ValueError, match=r"blocks.json \(from \$LTX_JAX_FLASH_BLOCKS\) is not a flash-attention "
                                         r"block record: BlockSizes.block_q=48 must be a power of two"):
        default_block_sizes(64, H100)


def test_auto_takes_the_measured_faster_kernel(tmp_path, monkeypatch):
    import jax.numpy as jnp
    import numpy as np

    from ltx_jax.nn.attention import auto_impl

    q = np.zeros((1, 64, 2, 64), jnp.bfloat16)
    assert auto_impl(q, q, "gpu", H100) == "cudnn"  # no record: the table
    record = tmp_path / "blocks.json"
    monkeypatch.setenv(RECORD_ENV, str(record))
    record_blocks(record, BlockSizes(), 64, H100, impl_ms={"pallas": 1.0, "cudnn": "RuntimeError: ..."})
    assert auto_impl(q, q, "gpu", H100) == "cudnn"  # cuDNN not timed: no measured choice
    record_blocks(record, BlockSizes(), 64, H100, impl_ms={"pallas": 1.0, "cudnn": 1.2})
    assert auto_impl(q, q, "gpu", H100) == "pallas"
    assert auto_impl(q, q, "gpu", A100) == "cudnn"  # another generation: not measured
    assert auto_impl(q.astype(np.float32), q.astype(np.float32), "gpu", H100) == "pallas"  # fp32: no cuDNN
    record_blocks(record, BlockSizes(), 64, H100, impl_ms={"pallas": 1.3, "cudnn": 1.2})
    assert auto_impl(q, q, "gpu", H100) == "cudnn"
    assert auto_impl(q, q[:, :8], "gpu", H100) == "xla"  # short cross-attention stays plain


def test_deterministic_xla_flag_selects_the_split_backward(monkeypatch):
    assert default_block_sizes(64, H100).bwd == "fused"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_gpu_deterministic_ops=true")
    assert default_block_sizes(64, H100) == dataclasses.replace(BLOCK_TABLE[("9", 64)], bwd="split")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_exclude_nondeterministic_ops=true")
    assert default_block_sizes(128, A100).bwd == "split"
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    assert default_block_sizes(64, H100).bwd == "fused"


def test_bench_attention_cli_errors(capsys):
    from ltx_jax import cli

    for argv, message in ((["--shapes", "6144"], "'6144' must be BxLxNxK with four positive integers"),
                          (["--shapes", "1x32x1x16", "--record", "x.json"], "only applies with --autotune")):
        assert cli.main(["bench", "attention", *argv]) == 2
        assert message in capsys.readouterr().err
