"""Memory-bounded Video-VAE: tiled decoding (parity with diffusers' tiled decode, memory falling with
the tile size, automatic choice from a byte budget) and exact time-chunked encoding."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from ltx_jax.convert.vae import load_vae
from ltx_jax.vae.config import VARIANTS
from ltx_jax.vae.tiling import DecodeTiling, auto_tiling, estimate_decode_bytes
from tests.oracle import LAYER_RTOL, MODEL_RTOL, rel_l2
from tests.vae.helpers import cf, cl, diffusers_reference, random_vae
# A last decoder stage of 128 channels as in every release (the tiny variants' 16 would leave the
# decoded video itself as the largest buffer, which no tiling shrinks).
WIDE = dataclasses.replace(VARIANTS["tiny-0.9.0"], decoder_block_out_channels=(128, 32, 32, 32))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = diffusers_reference("0.9.1")
    folder = tmp_path_factory.mktemp("vae_tiling")
    ref.save_pretrained(folder)
    return ref, load_vae(folder)


def _diffusers_tiled(ref, z, t, tiling: DecodeTiling):
    ref.use_tiling = tiling.tile_height is not None
    ref.use_framewise_decoding = tiling.tile_frames is not None
    ref.tile_sample_min_height, ref.tile_sample_min_width = tiling.tile_height or 10**6, tiling.tile_width or 10**6
    ref.tile_sample_stride_height, ref.tile_sample_stride_width = tiling.stride_height, tiling.stride_width
    ref.tile_sample_min_num_frames = tiling.tile_frames or 10**6
    ref.tile_sample_stride_num_frames = tiling.stride_frames
    with torch.no_grad():
        return cl(ref.decode(cf(z), torch.full((z.shape[0],), t)).sample)


@pytest.mark.parametrize("tiling, latent_shape", [
    # Spatial tiles of 2x2 latents at a stride of 1: 32-pixel blends both ways, edge tiles of 1.
    (DecodeTiling(tile_height=64, tile_width=64, stride_height=32, stride_width=32, tile_frames=None), (1, 2, 3, 3, 8)),
    # Temporal tiles of 3 latent frames at a stride of 1: 8-frame blends, shorter last tiles.
    (DecodeTiling(tile_height=None, tile_width=None, tile_frames=16, stride_frames=8), (2, 3, 2, 1, 8)),
])
def test_tiled_decode_matches_diffusers_tiled_decode(pair, tiling, latent_shape):
    ref, vae = pair
    z = np.random.default_rng(0).normal(size=latent_shape).astype(np.float32)
    expected = _diffusers_tiled(ref, z, 0.05, tiling)
    actual = np.asarray(vae.decode(z, 0.05, tiling=tiling))
    assert actual.shape == expected.shape
    err = rel_l2(actual, expected)
    print(f"tiled decode vs diffusers rel_l2 {err:.2e}")
    assert err <= MODEL_RTOL
    # The tiles really changed something (seams blended, not an untiled decode).
    with torch.no_grad():
        untiled = cl(diffusers_reference("0.9.1").decode(cf(z), torch.full((z.shape[0],), 0.05)).sample)
    assert rel_l2(expected, untiled) > 1e-3


def test_tiles_covering_the_input_equal_untiled_decode(pair):
    _, vae = pair
    z = np.random.default_rng(1).normal(size=(1, 2, 2, 3, 8)).astype(np.float32)
    cover = DecodeTiling(tile_height=64, tile_width=96, stride_height=32, stride_width=64, tile_frames=16)
    np.testing.assert_array_equal(np.asarray(vae.decode(z, 0.05, tiling=cover)), np.asarray(vae.decode(z, 0.05)))
    # A budget the whole decode fits in picks no tiles at all.
    assert vae.decode_tiling(z.shape, 10**12) is None


def _temp_bytes(vae, z, tiling):
    graphdef, state = nnx.split(vae)
    fn = jax.jit(lambda st, x: nnx.merge(graphdef, st).decode(x, tiling=tiling))
    return fn.lower(state, z).compile().memory_analysis().temp_size_in_bytes


def test_peak_memory_falls_as_tiles_shrink():
    vae = random_vae(WIDE)
    z = jnp.zeros((1, 2, 8, 8, 8), jnp.float32)
    sizes = [None, 128, 64]  # untiled, 4x4-latent tiles, 2x2-latent tiles (no overlap: one shape each)
    temps = []
    for side in sizes:
        tiling = None if side is None else DecodeTiling(
            tile_height=side, tile_width=side, stride_height=side, stride_width=side, tile_frames=None)
        temps.append(_temp_bytes(vae, z, tiling))
        if tiling is not None:  # the estimate used for budgets bounds the compiled program
            assert temps[-1] <= estimate_decode_bytes(vae.cfg, z.shape, tiling), side
    print("decode temp bytes (untiled, 128 px, 64 px tiles):", temps)
    assert temps[0] > temps[1] > temps[2]
    assert temps[0] <= estimate_decode_bytes(vae.cfg, z.shape, None)


def test_memory_budget_picks_fitting_tiles():
    vae = random_vae(WIDE)
    shape = (1, 5, 8, 8, 8)
    full = estimate_decode_bytes(vae.cfg, shape, None)
    tiling = auto_tiling(vae.cfg, shape, full // 2)
    assert tiling is not None and estimate_decode_bytes(vae.cfg, shape, tiling) <= full // 2
    assert vae.decode_tiling(shape, full // 2) == tiling
    # A looser budget needs no more tiles (less or equal decode work, larger tiles).
    loose = auto_tiling(vae.cfg, shape, full - 1)
    assert (loose.tile_height or 10**9) >= (tiling.tile_height or 10**9)
    with pytest.raises(ValueError, match="memory_budget 10 bytes.*at least"):
        auto_tiling(vae.cfg, shape, 10)
    with pytest.raises(ValueError, match="either tiling= or memory_budget="):
        vae.decode(jnp.zeros(shape), tiling=tiling, memory_budget=full)


@pytest.mark.parametrize("bad, message", [
    (dict(tile_height=100), "tile_height=100 must be a multiple of 32.*96 or 128"),
    (dict(stride_width=608), "stride_width=608 exceeds its tile size 512"),
    (dict(tile_frames=12), "tile_frames=12 must be a multiple of 8.*8 or 16"),
])
def test_bad_tilings_are_refused(bad, message):
    vae = random_vae("tiny-0.9.0")
    with pytest.raises(ValueError, match=message):
        vae.decode(jnp.zeros((1, 2, 20, 20, 8)), tiling=DecodeTiling(**bad))


@pytest.mark.parametrize("family", ["0.9.0", "0.9.5"])  # 0.9.1 shares 0.9.0's encoder
def test_chunked_encode_equals_whole_clip(family):
    vae = random_vae("tiny-" + family)
    video = np.random.default_rng(2).uniform(-1, 1, (2, 41, 32, 32, 3)).astype(np.float32)
    mean, logvar = (np.asarray(x) for x in vae.encode_moments(video))
    # 17 + 16 + 8 frames: a first chunk, a full later chunk and a short last one.
    m, lv = (np.asarray(x) for x in vae.encode_moments(video, chunk_frames=17))
    assert m.shape == mean.shape == (2, 6, 1, 1, 8)
    assert rel_l2(m, mean) <= LAYER_RTOL and rel_l2(lv, logvar) <= LAYER_RTOL


def test_chunk_frames_must_keep_strides_aligned():
    vae = random_vae("tiny-0.9.0")
    with pytest.raises(ValueError, match="chunk_frames=12 must be 1 \\+ 8k.*9 or 17"):
        vae.encode(jnp.zeros((1, 25, 32, 32, 3)), chunk_frames=12)
