"""The pixel-size rule shared by the VAE, the pipeline, `generate` and `preprocess`
(ltx_jax/vae/shapes.py): F = tk+1, H and W positive multiples of s, refusals naming the nearest
valid values, and the same messages from every caller."""

import pytest

from ltx_jax.convert.vae import abstract_vae
from ltx_jax.pipeline_inputs import latent_grid, round_video_size
from ltx_jax.vae.config import VARIANTS
from ltx_jax.vae.shapes import check_video_size, nearest_valid


def test_nearest_valid():
    assert nearest_valid(20, 1, 8) == [17, 25]
    assert nearest_valid(17, 1, 8) == [17]
    assert nearest_valid(0, 1, 8) == [1]  # nothing valid below the first value
    assert nearest_valid(500, 32, 32) == [480, 512]
    assert nearest_valid(-5, 32, 32) == [32]


def test_check_video_size_returns_the_latent_grid():
    assert check_video_size(121, 512, 768) == (16, 16, 24)
    assert check_video_size(1, 32, 32) == (1, 1, 1)
    assert check_video_size(9, 64, 48, (4, 16, 8)) == (3, 4, 6)  # per-axis factors


@pytest.mark.parametrize("size, message", [
    ((20, 64, 64), "frames=20 is not 8k+1; nearest valid: 17, 25"),
    ((0, 64, 64), "frames=0 is not 8k+1; nearest valid: 1"),
    ((9, 500, 64), "height=500 is not a positive multiple of 32; nearest valid: 480, 512"),
    ((9, 64, 16), "width=16 is not a positive multiple of 32; nearest valid: 32"),
])
def test_every_caller_refuses_with_the_same_message(size, message):
    vae = abstract_vae(VARIANTS["tiny-0.9.0"])
    f, h, w = size
    for check in (lambda: check_video_size(f, h, w), lambda: latent_grid(f, h, w),
                  lambda: vae.check_video_shape((1, f, h, w, 3))):
        with pytest.raises(ValueError) as e:
            check()
        assert str(e.value) == message


def test_vae_check_uses_its_strides():
    vae = abstract_vae(VARIANTS["tiny-0.9.0"])
    t, s, c = vae.temporal_compression, vae.spatial_compression, vae.cfg.latent_channels
    assert vae.check_video_shape((2, 2 * t + 1, 3 * s, s, 3)) == (2, 3, 3, 1, c)


def test_round_video_size():
    assert round_video_size(20, 500, 768) == ((17, 512, 768), ["frames 20 -> 17 (8k+1)",
                                                                "height 500 -> 512 (multiple of 32)"])
    assert round_video_size(0, 10, 32) == ((1, 32, 32), ["frames 0 -> 1 (8k+1)", "height 10 -> 32 (multiple of 32)"])
