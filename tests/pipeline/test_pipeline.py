"""LTXPipeline behaviour: one compile per shape, determinism, official-semantics conditioning,
input validation, and the `generate` verb on a pipeline folder."""

import json
import re

import jax
import numpy as np
import pytest

import ltx_jax
from ltx_jax.cli import main
from ltx_jax.convert.safetensors_io import CheckpointError
from ltx_jax.diffusion.sampler import _denoise_jit
from ltx_jax.pipeline_inputs import ConditioningItem
from tests.pipeline.tiny import random_pipeline, save_pipeline

SMALL = dict(num_frames=17, height=32, width=32, max_sequence_length=8)


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(3)


def test_one_compile_for_new_scales_seeds_schedules_and_frame_rates(pipe):
    size0 = _denoise_jit._cache_size()
    outs = [
        pipe("a red cat", num_inference_steps=4, guidance_scale=3.0, seed=0, output_type="latent", **SMALL),
        pipe("a dog", num_inference_steps=4, guidance_scale=7.5, guidance_rescale=0.7, seed=1, frame_rate=30,
             output_type="latent", **SMALL),
        pipe("a red cat", timesteps=[1.0, 0.8, 0.5, 0.2], guidance_scale=2.0, seed=2, output_type="latent", **SMALL),
    ]
    assert _denoise_jit._cache_size() - size0 == 1  # three settings, one compiled sampling loop
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[0], outs[2])


def test_same_seed_same_video_different_seeds_differ(pipe):
    kw = dict(SMALL, num_inference_steps=3, guidance_scale=3.0, decode_timestep=0.05, decode_noise_scale=0.025)
    a, b, c = pipe("a cat", seed=5, **kw), pipe("a cat", seed=5, **kw), pipe("a cat", seed=6, **kw)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2
    assert a.shape == (1, 17, 32, 32, 3) and 0.0 <= a.min() and a.max() <= 1.0


def test_official_conditioning_strength_and_image_noise(pipe):
    image = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    z0 = np.asarray(pipe.encode_media(image[None, None], 32, 32, semantics="official"))[:, 0]
    kw = dict(SMALL, num_inference_steps=4, guidance_scale=3.0, stg_scale=1.0, skip_block_list=[1],
              rescaling_scale=0.7, cfg_star_rescale=True, semantics="official", output_type="latent", seed=0)
    hard = np.asarray(pipe("a cat", conditioning_items=[ConditioningItem(image, 0, 1.0)], image_cond_noise_scale=0.0,
                           **kw))
    np.testing.assert_allclose(hard[:, 0], z0, atol=1e-6)  # strength 1 with no noise: frame 0 is the image
    noisy = np.asarray(pipe("a cat", image=image, image_cond_noise_scale=0.15, **kw))
    assert 1e-5 < np.abs(noisy[:, 0] - z0).max() < 0.15  # image noise: init + s eps t^2 at the last step
    soft = np.asarray(pipe("a cat", conditioning_items=[ConditioningItem(image, 0, 0.5)], **kw))
    assert np.abs(soft[:, 0] - z0).max() > 1e-3  # strength 0.5 enters denoising once t < 0.5


def test_official_video_to_video_keeps_structure_at_low_strength(pipe):
    clip = np.random.default_rng(1).uniform(0, 1, (17, 32, 32, 3)).astype(np.float32)
    z = np.asarray(pipe.encode_media(clip[None], 32, 32, semantics="official"))
    kw = dict(SMALL, guidance_scale=1.0, stg_scale=0.0, semantics="official", output_type="latent", seed=0)
    light = np.asarray(pipe("a cat", media_items=clip, num_inference_steps=8, skip_initial_inference_steps=6, **kw))
    full = np.asarray(pipe("a cat", num_inference_steps=8, **kw))
    assert np.abs(light - z).mean() < np.abs(full - z).mean()


@pytest.mark.parametrize("kwargs, message", [
    (dict(height=500), "height=500 is not a positive multiple of 32; nearest valid: 480, 512"),
    (dict(num_frames=20), "frames=20 is not 8k+1; nearest valid: 17, 25"),
    (dict(prompt=[]), "prompt must be a string or a non-empty list of strings"),
    (dict(image=np.zeros((32, 32, 4), np.uint8)), "image has 4 channels in its last axis; 3 (RGB) are needed"),
    (dict(image=np.zeros((1, 3, 32, 32), np.float32)), "channels-first"),
    (dict(latents=np.zeros((1, 2, 1, 1, 8), np.float32)), "latents must be [B, F', H', W', C] = [1, 3, 1, 1, 8]"),
    (dict(stg_scale=1.0), "official-pipeline option; pass semantics='official'"),
    (dict(semantics="comfy"), "semantics='comfy' is not one of"),
])
def test_bad_input_is_refused_with_the_rule(pipe, kwargs, message):
    kw = dict(SMALL, num_inference_steps=2, prompt="a cat")
    kw.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        pipe(kw.pop("prompt"), **kw)


def test_image_files(pipe, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read image file"):
        pipe("a cat", image=str(bad), num_inference_steps=2, **SMALL)
    with pytest.raises(ValueError, match="image file not found"):
        pipe("a cat", image=str(tmp_path / "missing.png"), num_inference_steps=2, **SMALL)


def test_missing_weights_folder(tmp_path):
    with pytest.raises(CheckpointError, match="pipeline folder not found"):
        ltx_jax.LTXPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "transformer").mkdir()
    with pytest.raises(CheckpointError, match="missing sub-folder.s. vae, text_encoder, tokenizer, scheduler"):
        ltx_jax.LTXPipeline.from_pretrained(tmp_path)


def test_generate_verb_on_a_pipeline_folder_rounds_sizes(tmp_path, capsys):
    save_pipeline(tmp_path / "model", "0.9.1")
    image = tmp_path / "first.png"
    _write_png(image, np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    out = tmp_path / "out"
    argv = ["generate", str(tmp_path / "model"), "--prompt", "a red car", "--frames", "10", "--height", "60",
            "--width", "64", "--steps", "2", "--max-sequence-length", "16", "--image", str(image), "--seed", "3",
            "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "rounded frames 10 -> 9 (8k+1)" in err and "rounded height 60 -> 64 (multiple of 32)" in err
    assert "[encode]" in err and "[denoise] steps 2" in err and "[decode]" in err
    sidecar = json.loads((out / "clip.json").read_text())
    assert sidecar["seed"] == 3 and sidecar["settings"]["num_frames"] == 9 and sidecar["settings"]["image"] == str(image)
    assert sidecar["shape"] == [9, 64, 64, 3] and (out / "clip.mp4").stat().st_size > 0
    assert main(["generate", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "pipeline folder not found" in capsys.readouterr().err


def _write_png(path, array):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("png")
        s.height, s.width, s.pix_fmt = array.shape[0], array.shape[1], "rgb24"
        for packet in s.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
            c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def test_decode_noise_space_differs_between_semantics(pipe):
    # The same final latents decode differently: noise mixed before (official) or after
    # (diffusers) de-normalisation, unless the statistics are the identity.
    x = jax.random.normal(jax.random.key(0), (1, 3, 1, 1, 8))
    noise = jax.random.normal(jax.random.key(1), x.shape)
    pipe.vae.latents_std.set_value(pipe.vae.latents_std[...] * 2.0)
    try:
        a = pipe._decode(x, 0.05, 0.5, noise, None, official=False)
        b = pipe._decode(x, 0.05, 0.5, noise, None, official=True)
    finally:
        pipe.vae.latents_std.set_value(pipe.vae.latents_std[...] / 2.0)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


def test_prompt_stripping_follows_semantics(pipe):
    from ltx_jax.text.tokenizer import encode_prompts

    # U+001C is kept by T5's normaliser (an unknown token) and removed by str.strip.
    kept, _ = encode_prompts(pipe.tokenizer, ["a cat\x1c"], 8, strip=False)
    stripped, _ = encode_prompts(pipe.tokenizer, ["a cat\x1c"], 8, strip=True)
    plain, _ = encode_prompts(pipe.tokenizer, ["a cat"], 8, strip=False)
    np.testing.assert_array_equal(stripped, plain)
    assert pipe.tokenizer.unk_token_id in kept[0] and not np.array_equal(kept, plain)
    kw = dict(SMALL, num_inference_steps=2, guidance_scale=3.0, output_type="latent", seed=0)
    for semantics, same in (("official", True), ("diffusers", False)):
        off = dict(stg_scale=0.0) if semantics == "official" else {}
        a = np.asarray(pipe("a cat\x1c", "blurry\x1c", semantics=semantics, **off, **kw))
        b = np.asarray(pipe("a cat", "blurry", semantics=semantics, **off, **kw))
        assert np.array_equal(a, b) is same, semantics


@pytest.mark.parametrize("item, message", [
    (ConditioningItem(np.zeros((9, 32, 32, 3), np.float32), 3, 1.0),
     "media_frame_number=3: a clip must start at a multiple of 8; nearest valid: 0, 8"),
    (ConditioningItem(np.zeros((9, 32, 32, 3), np.float32), 16, 1.0),
     "media_frame_number=16 with 9 frame(s) does not fit in 17 frames; valid: 0..8"),
    (ConditioningItem(np.zeros((32, 32, 3), np.float32), -1, 1.0), "media_frame_number=-1 is not a non-negative"),
    (ConditioningItem(np.zeros((32, 32, 3), np.float32), 4, 1.5), "conditioning_strength=1.5 is not in [0, 1]"),
])
def test_bad_conditioning_items_are_refused(pipe, item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pipe("a cat", conditioning_items=[item], semantics="official", stg_scale=0.0, num_inference_steps=2, **SMALL)


def test_items_at_later_frames_one_compile_and_effect(pipe):
    # Extra tokens for an image at frame 12: new strengths, seeds and guidance reuse the program.
    image = np.random.default_rng(2).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    kw = dict(SMALL, num_inference_steps=3, semantics="official", output_type="latent", stg_scale=0.0)
    size0 = _denoise_jit._cache_size()
    a = np.asarray(pipe("a cat", conditioning_items=[ConditioningItem(image, 12, 1.0)], seed=0, **kw))
    b = np.asarray(pipe("a cat", conditioning_items=[ConditioningItem(image, 12, 0.6)], seed=1, guidance_scale=5.0,
                        **kw))
    assert _denoise_jit._cache_size() - size0 == 1
    free = np.asarray(pipe("a cat", conditioning_items=[ConditioningItem(1.0 - image, 12, 1.0)], seed=0, **kw))
    assert a.shape == b.shape == (1, 3, 1, 1, 8)  # the extra tokens are dropped
    assert np.abs(a - free).max() > 1e-3 and np.abs(a - b).max() > 1e-3  # the item conditions the video
