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

import jax
import numpy as np
import pytest
import torch
from ltx_video.utils.skip_layer_strategy import SkipLayerStrategy

import ltx_jax
from ltx_jax.diffusion.sampler import step_keys
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
def pair(tmp_path_factory):
    paths = write_checkpoint(tmp_path_factory.mktemp("official"))
    ours = ltx_jax.LTXPipeline.from_pretrained(paths["checkpoint"], text_encoder=paths["text_encoder"])
    return official_pipeline(paths), ours


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
