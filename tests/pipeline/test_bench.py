"""`ltx-jax bench sample` on a CPU with tiny shapes: the JSON has every figure the GPU run reports."""

import json

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
