"""`ltx-jax bench sample` on a CPU with tiny shapes: the JSON has every figure the GPU run reports."""

import json

import jax

from ltx_jax.cli import main


def test_bench_sample_writes_json(tmp_path, capsys):
    out = tmp_path / "sample.json"
    argv = ["bench", "sample", "--variant", "tiny", "--vae", "tiny-0.9.1", "--frames", "9", "--height", "32",
            "--width", "64", "--steps", "3", "--text-len", "8", "--dtype", "float32", "--iters", "1",
            "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert result["shape"]["latent"] == [2, 1, 2] and result["branches"] == 2 and result["steps"] == 3
    d = result["denoise"]
    assert d["compile_s"] > 0 and d["video_s"] > 0 and d["tflops_per_s"] > 0
    assert abs(d["step_ms"] * 3 - 1e3 * d["video_s"]) < 1e-6 * max(1.0, d["video_s"])
    assert result["decode"]["video_s"] > 0 and result["video_s"] > d["video_s"]
    assert result["baseline"]["name"] == "python_step_loop" and result["speedup_vs_baseline"] > 0
    assert result["hardware"]["platform"] == "cpu"


def test_bench_sample_refuses_bad_sizes(capsys):
    assert main(["bench", "sample", "--variant", "tiny", "--height", "500"]) == 2
    assert "height=500 is not a positive multiple of 32; nearest valid: 480, 512" in capsys.readouterr().err


def test_vs_diffusers_refused_without_cuda(capsys):
    import torch

    assert not torch.cuda.is_available()  # this test is about CPU machines
    assert main(["bench", "sample", "--variant", "tiny", "--vae", "tiny-0.9.1", "--frames", "9", "--height", "32",
                 "--width", "64", "--vs-diffusers"]) == 2
    assert "--vs-diffusers needs torch with CUDA (this machine has none)" in capsys.readouterr().err


def test_diffusers_side_builds_the_same_configuration_on_cpu():
    # The configuration-building and timing code of --vs-diffusers, at tiny size on the CPU.
    import numpy as np
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from flax import nnx

    from ltx_jax.config import dit_config
    from ltx_jax.dit.transformer import Transformer3D
    from ltx_jax.pipeline_bench_diffusers import bench_diffusers, diffusers_configs
    from tests.vae.helpers import random_vae

    dit_kw, vae_kw = diffusers_configs("tiny", "tiny-0.9.1")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    ours = nnx.eval_shape(lambda: Transformer3D(dit_config("tiny"), rngs=nnx.Rngs(0)))
    ours_count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(ours, nnx.Param)))
    assert count(LTXVideoTransformer3DModel(**dit_kw)) == ours_count
    vae_count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(random_vae("tiny-0.9.1"), nnx.Param)))
    assert count(AutoencoderKLLTXVideo(**vae_kw)) == vae_count
    result = bench_diffusers("tiny", vae="tiny-0.9.1", frames=9, height=32, width=64, steps=2, text_len=8,
                             dtype="float32", iters=1, device="cpu")
    assert result["denoise"]["video_s"] > 0 and result["video"]["video_s"] > 0 and result["device"] == "cpu"
    assert torch.__version__ == result["torch"]
