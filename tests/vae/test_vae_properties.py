"""Properties of the Video-VAE that need no oracle: causality, noise injection statistics, input
validation, compression factors and full-size parameter counts (abstract shapes only)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.convert.vae import abstract_vae
from ltx_jax.vae.autoencoder import count_params
from ltx_jax.vae.blocks import ResBlock3d
from ltx_jax.vae.config import VARIANTS
from tests.oracle import LAYER_RTOL, rel_l2
from tests.vae.helpers import random_vae

FAMILIES = ["0.9.0", "0.9.1", "0.9.5"]


@pytest.fixture(scope="module", params=FAMILIES)
def vae(request):
    return random_vae("tiny-" + request.param)


def test_encoder_is_causal(vae):
    # Encoding the first 1 + 8k frames gives the first k + 1 latent frames of the whole clip.
    video = np.random.default_rng(0).uniform(-1, 1, (2, 25, 32, 64, 3)).astype(np.float32)
    full = np.asarray(vae.encode(video))
    assert full.shape == (2, 4, 1, 2, 8)
    for k in range(3):
        part = np.asarray(vae.encode(video[:, : 1 + 8 * k]))
        assert part.shape[1] == k + 1
        assert rel_l2(part, full[:, : k + 1]) <= LAYER_RTOL, k  # float32 rounding only


def test_later_frames_do_not_change_earlier_latents(vae):
    video = np.random.default_rng(1).uniform(-1, 1, (1, 17, 32, 32, 3)).astype(np.float32)
    changed = video.copy()
    changed[:, 10:] = -changed[:, 10:]  # frames 10.. belong to latent frame 2 only
    a, b = np.asarray(vae.encode(video)), np.asarray(vae.encode(changed))
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    assert not np.allclose(a[:, 2], b[:, 2])


def test_noise_injection_is_one_spatial_map_scaled_per_channel():
    c, h, w = 6, 64, 48
    block = ResBlock3d(c, c, causal=False, inject_noise=True, rngs=nnx.Rngs(0))
    # Silence conv2 so the block's output minus its input is exactly the second noise injection.
    block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
    block.conv2.bias[...] = jnp.zeros_like(block.conv2.bias[...])
    scale = jnp.arange(1.0, c + 1.0)
    block.per_channel_scale2[...] = scale
    x = jax.random.normal(jax.random.key(1), (3, 4, h, w, c))
    np.testing.assert_array_equal(np.asarray(block(x)), np.asarray(x))  # no key: no noise
    noise = np.asarray(block(x, noise_key=jax.random.key(2)) - x) / np.asarray(scale)
    ref = noise[0, 0, :, :, 0]
    # The same (H, W) map for every batch item, frame and channel.
    np.testing.assert_allclose(noise, np.broadcast_to(ref[None, None, :, :, None], noise.shape),
                               rtol=1e-5, atol=1e-5)
    # Standard normal statistics over H*W = 3072 samples (5 standard errors).
    assert abs(ref.mean()) < 5 / np.sqrt(h * w)
    assert abs(ref.std() - 1.0) < 5 / np.sqrt(2 * h * w)
    other = np.asarray(block(x, noise_key=jax.random.key(3)) - x)[0, 0, :, :, 0] / float(scale[0])
    assert abs(np.corrcoef(ref.ravel(), other.ravel())[0, 1]) < 0.1  # a new map per key


def test_decoder_noise_injection_with_nonzero_scales():
    vae = random_vae("tiny-0.9.1")
    n_scales = 0
    for path, var in nnx.iter_graph(vae):
        if path and str(path[-1]).startswith("per_channel_scale"):
            var[...] = jnp.full(var[...].shape, 0.5)
            n_scales += 1
    assert n_scales == 2 * 3  # tiny 0.9.1: one resnet in each of the three noisy groups
    z = np.random.default_rng(2).normal(size=(1, 2, 2, 2, 8)).astype(np.float32)
    clean = np.asarray(vae.decode(z, 0.05))
    a = np.asarray(vae.decode(z, 0.05, rng=jax.random.key(0)))
    b = np.asarray(vae.decode(z, 0.05, rng=jax.random.key(0)))
    c = np.asarray(vae.decode(z, 0.05, rng=jax.random.key(1)))
    np.testing.assert_array_equal(a, b)
    assert rel_l2(a, clean) > 1e-3 and rel_l2(a, c) > 1e-3


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 16, 64, 64, 3), "^frames=16 is not 8k\\+1; nearest valid: 9, 17$"),
        ((1, 0, 64, 64, 3), "^frames=0 is not 8k\\+1; nearest valid: 1$"),
        ((1, 9, 70, 64, 3), "^height=70 is not a positive multiple of 32; nearest valid: 64, 96$"),
        ((1, 9, 64, 16, 3), "^width=16 is not a positive multiple of 32; nearest valid: 32$"),
        ((1, 9, 64, 64, 4), "4 channels.*takes 3"),
        ((1, 3, 9, 64, 64), "channels-first"),
        ((9, 64, 64, 3), "\\[B, F, H, W, C\\]"),
    ],
)
def test_encode_rejects_bad_shapes(shape, message):
    vae = abstract_vae(VARIANTS["tiny-0.9.0"])  # validation runs before any compute
    with pytest.raises(ValueError, match=message):
        vae.encode(jnp.zeros(shape))


def test_encode_checks_the_range_of_host_pixels_only():
    vae = random_vae("tiny-0.9.0")
    video = np.full((1, 1, 32, 32, 3), 255.0, np.float32)
    video[0, 0, 0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="\\[0, 255\\].*\\[-1, 1\\]"):
        vae.encode(video)
    # A jax array is trusted to be normalised: checking it would sync the device on every call.
    assert vae.encode(jnp.asarray(video)).shape == (1, 1, 1, 1, 8)


def test_decode_checks_latents_and_timestep():
    v091 = abstract_vae(VARIANTS["tiny-0.9.1"])
    v090 = abstract_vae(VARIANTS["tiny-0.9.0"])
    with pytest.raises(ValueError, match="\\[B, F', H', W', 8\\].*\\(1, 2, 2, 2, 128\\)"):
        v091.decode(jnp.zeros((1, 2, 2, 2, 128)), 0.05)
    with pytest.raises(ValueError, match="timestep-conditioned.*pass timestep"):
        v091.decode(jnp.zeros((1, 2, 2, 2, 8)))
    with pytest.raises(ValueError, match="scalar or \\[B\\] = \\[2\\]"):
        v091.decode(jnp.zeros((2, 2, 2, 2, 8)), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="not timestep-conditioned"):
        v090.decode(jnp.zeros((1, 2, 2, 2, 8)), 0.05)


def test_compression_factors_come_from_strides():
    for name in FAMILIES:
        cfg = VARIANTS[name]
        assert (cfg.temporal_compression, cfg.spatial_compression) == (8, 32), name
    # A configuration without temporal downsampling compresses time by 1.
    spatial_only = dataclasses.replace(VARIANTS["tiny-0.9.5"], downsample_type=("spatial",) * 4)
    assert (spatial_only.temporal_compression, spatial_only.spatial_compression) == (1, 64)
    vae = random_vae(
        dataclasses.replace(VARIANTS["tiny-0.9.0"], spatio_temporal_scaling=(True, False, False, False))
    )
    assert vae.latent_shape((1, 5, 8, 16, 3)) == (1, 3, 1, 2, 8)
    assert vae.encode(jnp.zeros((1, 5, 8, 16, 3))).shape == (1, 3, 1, 2, 8)


@pytest.mark.parametrize(
    "name, encoder_m, decoder_m",
    [("0.9.0", 180.4, 238.8), ("0.9.1", 180.4, 754.6), ("0.9.5", 694.1, 552.8)],
)
def test_full_size_parameter_counts(name, encoder_m, decoder_m):
    vae = abstract_vae(VARIANTS[name])  # ShapeDtypeStructs only: nothing is allocated
    leaves = jax.tree.leaves(nnx.state(vae))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert round(count_params(nnx.state(vae.encoder, nnx.Param)) / 1e6, 1) == encoder_m
    assert round(count_params(nnx.state(vae.decoder, nnx.Param)) / 1e6, 1) == decoder_m
