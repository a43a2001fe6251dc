"""LTXPipeline (semantics="diffusers") against diffusers' LTXPipeline / LTXImageToVideoPipeline.

A tiny random diffusers pipeline is saved with `save_pretrained`; `ltx_jax.LTXPipeline.from_pretrained`
loads the same folder. Both get the same prompts, the same initial latents (diffusers' packed
[B, L, C] normalised latents are ours reshaped) and the same decode noise (diffusers draws it from
the generator it was given; we pass that tensor as `decode_noise`). Frames must agree within 1e-3
max absolute error in float32 (issue 4), for both VAE families (0.9.1 timestep-conditioned decoder,
0.9.0 plain decoder).
"""

import numpy as np
import pytest
import torch
from diffusers import LTXImageToVideoPipeline
from diffusers import LTXPipeline as TorchLTXPipeline

import ltx_jax
from tests.pipeline.tiny import C, channels_last, pack, save_pipeline

pytestmark = pytest.mark.parity

FRAMES_ATOL = 1e-3
SIZE = dict(height=64, width=96, num_frames=9)  # latent grid (2, 2, 3)
GRID = (2, 2, 3)
# U+001C survives T5's normaliser and `str.strip` would remove it: diffusers passes it through.
PROMPTS = ["a red cat walking in the city\x1c", "a blue car at night"]
NEGATIVE = "blurry"


@pytest.fixture(scope="module", params=["0.9.1", "0.9.0"])
def pair(request, tmp_path_factory):
    family = request.param
    folder = tmp_path_factory.mktemp("pipe_" + family.replace(".", "_"))
    parts = save_pipeline(folder, family)
    return family, parts, ltx_jax.LTXPipeline.from_pretrained(folder)


def _settings(guidance_scale):
    return dict(SIZE, frame_rate=25, num_inference_steps=3, guidance_scale=guidance_scale, max_sequence_length=16,
                decode_timestep=0.05, decode_noise_scale=0.025)


def _decode_noise(b, seed=7):
    shape = (b, C) + GRID
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # [B, C, F, H, W]


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0], ids=["no_cfg", "cfg"])
def test_text_to_video_matches_diffusers(pair, guidance_scale):
    family, parts, pipe = pair
    b = len(PROMPTS)
    latents = np.random.default_rng(0).standard_normal((b,) + GRID + (C,)).astype(np.float32)
    kw = _settings(guidance_scale)
    ref = TorchLTXPipeline(**parts)
    with torch.no_grad():
        expected = ref(prompt=PROMPTS, negative_prompt=NEGATIVE, latents=pack(latents), output_type="np",
                       generator=torch.Generator().manual_seed(7), **kw).frames
    ours = pipe(PROMPTS, NEGATIVE, latents=latents, decode_noise=channels_last(_decode_noise(b)), **kw)
    assert ours.shape == (b, 9, 64, 96, 3) and ours.dtype == np.float32
    err = float(np.abs(ours - expected).max())
    print(f"{family} t2v cfg={guidance_scale} max abs err {err:.2e}")
    assert err <= FRAMES_ATOL
    assert ours.std() > 1e-3  # not a constant video


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0], ids=["no_cfg", "cfg"])
def test_image_to_video_matches_diffusers(pair, guidance_scale):
    family, parts, pipe = pair
    b = len(PROMPTS)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # resized to 64x96 as diffusers does
    noise = rng.standard_normal((b,) + GRID + (C,)).astype(np.float32)
    kw = _settings(guidance_scale)
    ref = LTXImageToVideoPipeline(**parts)
    # diffusers takes `latents` as given: its frame 0 must already be the normalised image latent
    # (the posterior mean; diffusers would sample it when drawing its own latents).
    with torch.no_grad():
        pixels = ref.video_processor.preprocess(image.astype(np.float32) / 255.0, height=64, width=96)
        z = parts["vae"].encode(pixels.unsqueeze(2)).latent_dist.mode()  # [1, C, 1, H', W']
        z = ref._normalize_latents(z, parts["vae"].latents_mean, parts["vae"].latents_std)
    start = noise.copy()
    start[:, :1] = channels_last(z)
    with torch.no_grad():
        expected = ref(image=image.astype(np.float32) / 255.0, prompt=PROMPTS, negative_prompt=NEGATIVE,
                       latents=pack(start), output_type="np", generator=torch.Generator().manual_seed(7), **kw).frames
    ours = pipe(PROMPTS, NEGATIVE, image=image, latents=noise, decode_noise=channels_last(_decode_noise(b)), **kw)
    err = float(np.abs(ours - expected).max())
    print(f"{family} i2v cfg={guidance_scale} max abs err {err:.2e}")
    assert err <= FRAMES_ATOL
    # the conditioning frame really conditions: another image changes the video
    other = pipe(PROMPTS, NEGATIVE, image=255 - image, latents=noise, decode_noise=channels_last(_decode_noise(b)), **kw)
    assert np.abs(other - ours).max() > 1e-2
