"""LTXPipeline (semantics="official") against the original ltx_video `LTXVideoPipeline`, float32 CPU.

A tiny random Lightricks single file (transformer, VAE, scheduler metadata) and a T5 folder are
written (tests/pipeline/official.py); the original pipeline loads them as its inference script
does and `ltx_jax.LTXPipeline.from_pretrained(file, text_encoder=folder)` loads the same files.
The original's random draws are replaced by ours (initial noise, the extra tokens' noise, the
per-step image-conditioning noise from `sampler.step_keys`, the decode noise), so frames must
agree within 1e-3 max absolute error (issue 4): text-to-video with CFG, with STG
(attention_values), CFG-star and rescaling, image-to-video through a conditioning item at frame
0, and conditioning items at later frames (extra tokens with their own positions).
"""

import shutil

import jax
import numpy as np
import pytest
import torch
from ltx_video.utils.skip_layer_strategy import SkipLayerStrategy

import ltx_jax
from ltx_jax.convert.safetensors_io import CheckpointError
from ltx_jax.diffusion.sampler import step_keys
from ltx_jax.diffusion.schedules import schedule_from_config
from ltx_jax.pipeline import seed_keys
from ltx_jax.pipeline_inputs import ConditioningItem
from tests.pipeline.official import official_pipeline, run_official, torch_media, write_checkpoint

pytestmark = pytest.mark.parity

FRAMES_ATOL = 1e-3
C = 8
# One prompt ends in U+001C, which the official pipeline strips and T5's normaliser keeps.
PROMPTS = ["a red cat walking in the city\x1c", "a blue car at night"]
NEGATIVE = "blurry"
SEED = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="module")
def pair(files):
    ours = ltx_jax.LTXPipeline.from_pretrained(files["checkpoint"], text_encoder=files["text_encoder"])
    return official_pipeline(files), ours


def test_single_file_with_text_encoder_folder(pair, files, tmp_path):
    ref, pipe = pair
    # The scheduler comes from the file's metadata and gives the original scheduler's times.
    assert pipe.scheduler_config["_class_name"] == "RectifiedFlowScheduler" and pipe.scheduler_config["shifting"] == "SD3"
    ref.scheduler.set_timesteps(5, samples_shape=(1, C, 3, 2, 3))
    np.testing.assert_allclose(schedule_from_config(pipe.scheduler_config, 5, 18), ref.scheduler.timesteps.numpy(),
                               atol=1e-6)
    assert pipe.transformer.config.causal_temporal_positioning is True
    with pytest.raises(CheckpointError, match="single-file checkpoint: pass text_encoder=FOLDER"):
        ltx_jax.LTXPipeline.from_pretrained(files["checkpoint"])
    with pytest.raises(CheckpointError, match="text encoder folder not found"):
        ltx_jax.LTXPipeline.from_pretrained(files["checkpoint"], text_encoder=tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither text_encoder/ .. tokenizer/. nor a T5 config.json"):
        ltx_jax.LTXPipeline.from_pretrained(files["checkpoint"], text_encoder=tmp_path)
    # One T5 folder with the tokenizer files beside the weights works too.
    t5 = tmp_path / "t5"
    shutil.copytree(files["text_encoder"] / "text_encoder", t5)
    for f in (files["text_encoder"] / "tokenizer").iterdir():
        shutil.copy(f, t5)
    other = ltx_jax.LTXPipeline.from_pretrained(files["checkpoint"], text_encoder=t5)
    np.testing.assert_array_equal(np.asarray(other.encode_prompt(["a cat"], 8, use_mask=True)[0]),
                                  np.asarray(pipe.encode_prompt(["a cat"], 8, use_mask=True)[0]))


def _grid(num_frames, height=64, width=96):
    return ((num_frames - 1) // 8 + 1, height // 32, width // 32)


def _draws(b, grid, *, steps=0, extra_tokens=0, item_shapes=()):
    """Our noise for the original: initial latents, extra-token noise per item, per-step eps."""
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((b,) + grid + (C,)).astype(np.float32)
    draws = [torch.from_numpy(latents.reshape(b, -1, C))]  # [B, F, H, W, C] -> [B, L, C]
    keys = seed_keys(SEED)
    for i, shape in item_shapes:  # our [B, f, H, W, C] -> the original's [B, C, f, H, W]
        eps = np.asarray(jax.random.normal(jax.random.fold_in(keys["items"], i), shape))
        draws.append(torch.from_numpy(eps.transpose(0, 4, 1, 2, 3).copy()))
    length = int(np.prod(grid)) + extra_tokens
    for i in range(steps):
        eps = jax.random.normal(step_keys(keys["sample"], i)[0], (b, length, C))
        draws.append(torch.from_numpy(np.asarray(eps)))
    decode = rng.standard_normal((b,) + grid + (C,)).astype(np.float32)
    return latents, draws, decode


def _compare(pair, *, num_frames=9, items=(), guidance, steps=3, extra_tokens=0, item_shapes=(),
             image_noise=0.0, prompts=PROMPTS):
    ref, pipe = pair
    b = len(prompts)
    grid = _grid(num_frames)
    latents, draws, decode = _draws(b, grid, steps=steps if image_noise and items else 0,
                                    extra_tokens=extra_tokens, item_shapes=item_shapes)
    size = dict(height=64, width=96, num_frames=num_frames, frame_rate=25)
    common = dict(num_inference_steps=steps, decode_timestep=0.05, decode_noise_scale=0.025,
                  image_cond_noise_scale=image_noise, **guidance)
    expected = run_official(
        ref, prompts=prompts, negative_prompt=NEGATIVE, draws=draws,
        decode_noise=torch.from_numpy(decode.transpose(0, 4, 1, 2, 3).copy()),
        conditioning_items=[(torch_media(m), f, s) for m, f, s in items], text_encoder_max_tokens=16,
        skip_layer_strategy=SkipLayerStrategy.AttentionValues, **size, **common)
    ours = pipe(prompts, NEGATIVE, semantics="official", latents=latents, decode_noise=decode, seed=SEED,
                max_sequence_length=16, skip_layer_strategy="attention_values",
                conditioning_items=[ConditioningItem(m, f, s) for m, f, s in items], **size, **common)
    assert ours.shape == expected.shape == (b, num_frames, 64, 96, 3)
    err = float(np.abs(ours - expected).max())
    assert ours.std() > 1e-3
    return err, ours


# The original's STG and CFG-star are right for batch 1 only: its skip-layer mask zeroes every
# num_conds-th column of the branch-major batch [uncond x B, cond x B, perturbed x B] (for B = 2 it
# perturbs cond sample 0 and perturbed sample 1), and CFG-star broadcasts alpha [B, 1] against
# [B, L, C]. We perturb the perturbed branch of every sample; these cases compare at batch 1.
CFG = dict(guidance_scale=3.0, stg_scale=0.0, rescaling_scale=1.0)
STG = dict(guidance_scale=3.0, stg_scale=1.0, skip_block_list=[1], rescaling_scale=0.7)
STG_STAR = dict(STG, cfg_star_rescale=True)


@pytest.mark.parametrize("guidance, prompts", [(CFG, PROMPTS), (STG, PROMPTS[:1]), (STG_STAR, PROMPTS[:1])],
                         ids=["cfg", "stg_rescale", "stg_cfgstar_rescale"])
def test_text_to_video_matches_official(pair, guidance, prompts):
    err, _ = _compare(pair, guidance=guidance, prompts=prompts)
    print(f"official t2v {sorted(guidance)} max abs err {err:.2e}")
    assert err <= FRAMES_ATOL


def _media(shape, seed):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


def test_image_to_video_matches_official(pair):
    image = _media((2, 1, 64, 96, 3), 1)  # one image per prompt, at the target size
    err, ours = _compare(pair, items=[(image, 0, 1.0)], guidance=CFG, image_noise=0.15)
    print(f"official i2v max abs err {err:.2e}")
    assert err <= FRAMES_ATOL


def test_items_at_later_frames_match_official(pair):
    # A hard first frame, a soft single image at the last frame (extra tokens, strength 0.8).
    first, last = _media((1, 1, 64, 96, 3), 2), _media((1, 1, 64, 96, 3), 3)
    items = [(first, 0, 1.0), (last, 16, 0.8)]
    err, _ = _compare(pair, num_frames=17, items=items, guidance=STG_STAR, image_noise=0.15, extra_tokens=6,
                      item_shapes=[(1, (1, 1, 2, 3, C))], prompts=PROMPTS[:1])
    print(f"official items at frames 0 and 16 max abs err {err:.2e}")
    assert err <= FRAMES_ATOL


def test_clip_in_the_middle_matches_official(pair):
    # A 17-frame clip at frame 8 of 25: its first two latent frames become extra tokens, the third
    # is written into latent frame 8 // 8 + 2 = 3.
    clip = _media((2, 17, 64, 96, 3), 4)
    err, _ = _compare(pair, num_frames=25, items=[(clip, 8, 0.9)], guidance=CFG, image_noise=0.15,
                      extra_tokens=12, item_shapes=[(0, (2, 2, 2, 3, C))])
    print(f"official clip at frame 8 max abs err {err:.2e}")
    assert err <= FRAMES_ATOL
