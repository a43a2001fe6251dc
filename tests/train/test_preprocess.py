"""`ltx-jax preprocess`: tiny mp4s + captions -> VAE latents and T5 embeddings in ArrayRecord
shards, which a training run then reads. Tiny random VAE / T5 / tokenizer saved to tmp."""

import argparse
import json

import numpy as np
import pytest
from flax import nnx

from ltx_jax.config import load_config
from ltx_jax.convert.t5 import save_text_encoder
from ltx_jax.convert.vae import load_vae, save_vae
from ltx_jax.data.preprocess import add_arguments, fit_to_bucket, main
from ltx_jax.data.records import ShardSource
from ltx_jax.metrics import read_metrics
from ltx_jax.nn.layers import jit_init
from ltx_jax.sample import tiny_tokenizer, write_video
from ltx_jax.text.t5 import T5Config, T5Encoder
from ltx_jax.train import train
from tests.train.common import FAST, SMOKE
from tests.vae.helpers import random_vae

CLIPS = 8  # one global batch of the smoke config


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = tiny_tokenizer()
    tok.save_pretrained(root / "tokenizer")
    t5 = jit_init(lambda: T5Encoder(T5Config(vocab_size=len(tok), d_model=24, d_kv=8, d_ff=48, num_heads=3,
                                             num_layers=1), rngs=nnx.Rngs(0)))
    save_text_encoder(t5, root / "text_encoder")
    save_vae(random_vae("tiny-0.9.1", seed=1), root / "vae")  # numpy init: no VAE init compile
    return root


def _args(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_preprocess_manifest_to_shards_then_train(models, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(CLIPS):  # wide and tall clips, longer than the bucket
        h, w = (64, 96) if i % 2 else (80, 48)
        frames = rng.uniform(0, 1, (11, h, w, 3)).astype(np.float32)
        write_video(frames, tmp_path / f"clip{i}.mp4", fps=25)
        rows.append({"video": f"clip{i}.mp4", "caption": f"a {('red', 'green', 'blue')[i % 3]} "
                                                          f"{('cat', 'dog', 'car', 'sky')[i % 4]}"})
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "shards"
    common = ["--vae", str(models / "vae"), "--text-encoder", str(models / "text_encoder"),
              "--tokenizer", str(models / "tokenizer"), "--text-len", "8", "--per-shard", "5"]
    assert main(_args("--manifest", str(tmp_path / "m.jsonl"), "--out", str(out), "--bucket", "9x128x128",
                      "--bucket", "1x64x64", *common)) == 0
    src = ShardSource([out])
    assert len(src) == CLIPS and set(src.grids) == {(2, 4, 4)}  # 9 frames, 128x128 -> 2x4x4 latents
    ex = src[3]
    assert ex["latents"].shape == (2, 4, 4, 8) and ex["text"].shape == (8, 24)
    assert ex["text_mask"].tolist() == [1] * 4 + [0] * 4  # 3 words + </s>
    # The record is the VAE's normalised posterior mean of the decoded, fitted clip.
    from ltx_jax.data.preprocess import load_frames

    vae = load_vae(models / "vae")
    video = fit_to_bucket(load_frames(tmp_path / "clip3.mp4"), [(9, 128, 128)])
    want = np.asarray(vae.normalize(vae.encode(video[None])))[0]
    np.testing.assert_allclose(ex["latents"], want, rtol=1e-4, atol=1e-5)
    null_text, null_mask = src.null_text()
    assert null_mask.tolist() == [1] + [0] * 7 and null_text.shape == (8, 24)

    # The trainer reads the shards (the same compiled step as the synthetic runs).
    run = tmp_path / "run"
    assert train(load_config(SMOKE, [f"run_dir={run}", *FAST, "steps=2", "data.source=arrayrecord",
                                     f"data.paths=[{out}]"])) == 0
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in read_metrics(run))

    # A CSV manifest reads the same rows; errors name the problem.
    (tmp_path / "m.csv").write_text("video,caption\n" + "".join(f"{r['video']},{r['caption']}\n" for r in rows))
    from ltx_jax.data.preprocess import read_manifest

    assert [c for _, c in read_manifest(tmp_path / "m.csv")] == [r["caption"] for r in rows]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"video": "nope.mp4", "caption": "x"}))
    with pytest.raises(ValueError, match="row 1: video file not found"):
        read_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="shorter than every bucket"):
        fit_to_bucket(np.zeros((5, 32, 32, 3), np.uint8), [(9, 64, 64)])


def test_tfds_source_needs_tensorflow_datasets(models, tmp_path):
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs tensorflow-datasets"):
            main(_args("--tfds", "ucf101", "--out", str(tmp_path), "--vae", str(models / "vae"),
                       "--text-encoder", "x", "--tokenizer", "x"))
        return
    from ltx_jax.data.preprocess import tfds_rows

    with pytest.raises(Exception):  # installed: an unprepared dataset is refused, nothing downloads
        tfds_rows("no_such_dataset_xyz", "train", str(tmp_path), "video", "caption")
