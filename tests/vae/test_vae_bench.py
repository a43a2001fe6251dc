"""`ltx-jax bench vae` on tiny shapes: the JSON has compile time, steady-state encode/decode time,
peak memory from the compiled programs, and a ratio against a baseline run in the same process."""

import json

from ltx_jax.cli import main


def test_bench_vae_tiled_vs_untiled_writes_json(tmp_path, capsys):
    out = tmp_path / "vae.json"
    argv = ["bench", "vae", "--variant", "tiny-0.9.0", "--frames", "9", "--height", "32", "--width", "128",
            "--dtype", "float32", "--tile", "64", "--tile-stride", "64", "--iters", "1", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert result["shape"]["latent"] == [2, 1, 4] and result["hardware"]["platform"] == "cpu"
    test, base = result["runs"]
    assert test["tiling"]["tile_width"] == 64 and base["tiling"] is None
    assert result["baseline"] == "baseline_untiled"
    for r, keys in ((test, ("encode", "decode")), (base, ("decode",))):  # tiling leaves encode alone
        for key in keys:
            assert r[f"{key}_compile_s"] > 0 and r[f"{key}_ms_median"] > 0
            assert r[f"{key}_peak_bytes"] > r[f"{key}_memory"]["temp_size_in_bytes"] > 0
    for key in ("decode_time_ratio_vs_baseline", "decode_memory_ratio_vs_baseline"):
        assert result[key] > 0


def test_bench_vae_rejects_bad_sizes(capsys):
    assert main(["bench", "vae", "--variant", "tiny-0.9.0", "--frames", "20"]) == 2
    assert "frames=20 is not 8k+1; nearest valid: 17, 25" in capsys.readouterr().err
    assert main(["bench", "vae", "--variant", "nope"]) == 2
    assert "unknown VAE variant 'nope'" in capsys.readouterr().err
