"""The `ltx-jax` entry point: every verb's --help, convert, bench JSON, generate, errors."""

import json

import numpy as np
import pytest

import ltx_jax
from ltx_jax.cli import build_parser, main
from tests.pipeline.tiny import random_pipeline
from tests.dit.test_parity_diffusers import CASES, build_diffusers


def _verbs(parser):
    action = next(a for a in parser._actions if a.dest == "verb")
    return action.choices


def test_every_verb_has_help(capsys):
    verbs = _verbs(build_parser())
    assert {"generate", "bench", "convert", "config"} <= set(verbs)
    for verb, sub in verbs.items():
        help_text = sub.format_help()
        for action in sub._actions:  # every option is listed
            for flag in action.option_strings:
                assert flag in help_text, (verb, flag)
    with pytest.raises(SystemExit) as e:
        main(["bench", "dit", "--help"])
    assert e.value.code == 0
    assert "--frames" in capsys.readouterr().out


def test_convert_round_trip(tmp_path):
    build_diffusers(tmp_path, CASES[0])
    assert main(["convert", str(tmp_path / "transformer"), str(tmp_path / "x.safetensors"), "--to", "lightricks"]) == 0
    assert main(["convert", str(tmp_path / "x.safetensors"), str(tmp_path / "back")]) == 0
    a = ltx_jax.load_transformer(tmp_path / "transformer")
    b = ltx_jax.load_transformer(tmp_path / "back")
    x = (np.ones((1, 2, 2, 2, 8), np.float32), np.array([0.5], np.float32), np.ones((1, 3, 24), np.float32), None)
    np.testing.assert_array_equal(a(*x), b(*x))


def test_convert_missing_source_is_one_clear_error(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "no such checkpoint file or folder" in capsys.readouterr().err


def test_bench_dit_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = ["bench", "dit", "--variant", "tiny", "--frames", "9", "--height", "32", "--width", "64",
            "--dtype", "float32", "--iters", "2", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["shape"]["latent"] == [2, 1, 2]
    assert result["hardware"]["platform"] == "cpu"
    runs = result["runs"]
    assert len(runs) == 2 and runs[1]["attention_impl"] == "xla"
    for r in runs:
        assert r["compile_s"] > 0 and r["step_ms_median"] > 0 and r["tflops_per_s"] > 0
    assert result["speedup_vs_baseline"] > 0
    assert json.loads(capsys.readouterr().out) == result


def test_bench_rejects_bad_sizes(capsys):
    assert main(["bench", "dit", "--variant", "tiny", "--frames", "20"]) == 2
    assert "frames=20 is not 8k+1; nearest valid: 17, 25" in capsys.readouterr().err
    assert main(["bench", "dit", "--variant", "tiny", "--height", "500"]) == 2
    assert "height=500 is not a positive multiple of 32; nearest valid: 480, 512" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


def test_generation_is_deterministic_per_seed(pipe):
    kw = dict(num_frames=9, height=32, width=64, num_inference_steps=3, decode_timestep=0.05)
    a = pipe("a red cat", seed=1, **kw)
    b = pipe("a red cat", seed=1, **kw)
    c = pipe("a red cat", seed=2, **kw)
    assert a.shape == (1, 9, 32, 64, 3) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_generate_verb_writes_clip(tmp_path, capsys):
    argv = ["generate", "--random-tiny", "--prompt", "a blue car", "--frames", "9", "--height", "32",
            "--width", "32", "--steps", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    frames = np.load(tmp_path / "frames.npy")
    assert frames.shape == (9, 32, 32, 3)
    sidecar = json.loads((tmp_path / "clip.json").read_text())
    assert sidecar["prompt"] == "a blue car" and sidecar["settings"]["num_inference_steps"] == 2
    assert (tmp_path / "clip.mp4").stat().st_size > 0
    err = capsys.readouterr().err
    assert "[encode]" in err and "[denoise]" in err and "[decode]" in err
    assert main(["generate", "--frames", "9"]) == 2  # neither a folder nor --random-tiny
    assert "--random-tiny" in capsys.readouterr().err
