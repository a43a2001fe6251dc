"""CausalVideoAutoencoder against diffusers' AutoencoderKLLTXVideo (the oracle), float32.

Each family (0.9.0 strided encoder / plain decoder, 0.9.1 timestep-conditioned decoder with noise
injection, 0.9.5 space-to-depth encoder) is built tiny and random in diffusers, saved with
save_pretrained, loaded with `load_vae` and compared on encode (posterior mean) and decode
(relative L2 <= 1e-4, whole model). diffusers works channels-first; we transpose.
"""

import json

import jax
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo
from safetensors.numpy import load_file

from ltx_jax.convert.vae import WEIGHTS_NAME, load_vae, save_vae
from tests.oracle import MODEL_RTOL, rel_l2, to_numpy
from tests.vae.helpers import cf as _cf
from tests.vae.helpers import cl as _cl
from tests.vae.helpers import diffusers_reference

pytestmark = pytest.mark.parity

FAMILIES = ["0.9.0", "0.9.1", "0.9.5"]


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, tmp_path_factory):
    """(family, diffusers model, our model loaded from the diffusers folder, folder)."""
    family = request.param
    ref = diffusers_reference(family)
    folder = tmp_path_factory.mktemp("vae_" + family.replace(".", "_"))
    ref.save_pretrained(folder)
    return family, ref, load_vae(folder), folder


def _matches_diffusers(label: str, ours, theirs, shape: tuple[int, ...]) -> None:
    """`ours()` (channels-last) has `shape` and is within MODEL_RTOL of `theirs()` (channels-first)."""
    with torch.no_grad():
        expected = _cl(theirs())
    actual = np.asarray(ours())
    assert actual.shape == shape
    err = rel_l2(actual, expected)
    print(f"{label} rel_l2 {err:.2e}")
    assert err <= MODEL_RTOL


def test_encode_matches_diffusers(pair):
    family, ref, vae, _ = pair
    rng = np.random.default_rng(0)
    video = rng.uniform(-1, 1, (2, 17, 64, 96, 3)).astype(np.float32)  # B=2, F=1+2*8
    _matches_diffusers(f"{family} encode", lambda: vae.encode(video),
                       lambda: ref.encode(_cf(video)).latent_dist.mode(), (2, 3, 2, 3, 8))


def test_encode_logvar_matches_diffusers(pair):
    _, ref, vae, _ = pair
    video = np.random.default_rng(1).uniform(-1, 1, (1, 9, 32, 64, 3)).astype(np.float32)
    with torch.no_grad():
        dist = ref.encode(_cf(video)).latent_dist
    mean, logvar = vae.encode_moments(video)
    assert rel_l2(mean, _cl(dist.mean)) <= MODEL_RTOL
    # diffusers repeats the single log-variance channel over all latent channels.
    assert rel_l2(np.broadcast_to(np.asarray(logvar), mean.shape), _cl(dist.logvar)) <= MODEL_RTOL


@pytest.mark.parametrize("timestep", [0.0, 0.05, [0.05, 0.5], [1.0, 0.2]])
def test_decode_matches_diffusers(pair, timestep):
    family, ref, vae, _ = pair
    tcond = vae.cfg.timestep_conditioning
    if not tcond and timestep != 0.0:
        # 0.9.0 has no timestep: one case checks it without one, the others check the refusal.
        with pytest.raises(ValueError, match="not timestep-conditioned"):
            vae.decode(np.zeros((2, 2, 3, 2, 8), np.float32), timestep)
        return
    z = np.random.default_rng(2).normal(size=(2, 2, 3, 2, 8)).astype(np.float32)  # odd F', H', W'
    t = np.broadcast_to(np.asarray(timestep, np.float32), (2,)) if tcond else None
    _matches_diffusers(f"{family} decode t={timestep}", lambda: vae.decode(z, timestep if tcond else None),
                       lambda: ref.decode(_cf(z), None if t is None else torch.from_numpy(t.copy())).sample,
                       (2, 9, 96, 64, 3))


def test_decode_without_noise_scales_ignores_rng(pair):
    # Released weights with zero noise scales decode identically with or without an rng.
    _, _, vae, _ = pair
    z = np.random.default_rng(3).normal(size=(1, 2, 2, 2, 8)).astype(np.float32)
    t = 0.05 if vae.cfg.timestep_conditioning else None
    np.testing.assert_array_equal(
        np.asarray(vae.decode(z, t)), np.asarray(vae.decode(z, t, rng=jax.random.key(0)))
    )


def test_statistics_and_normalize_match_diffusers(pair):
    _, ref, vae, _ = pair
    mean, std = to_numpy(ref.latents_mean), to_numpy(ref.latents_std)
    np.testing.assert_array_equal(np.asarray(vae.latents_mean[...]), mean)
    np.testing.assert_array_equal(np.asarray(vae.latents_std[...]), std)
    z = np.random.default_rng(4).normal(size=(2, 2, 3, 2, 8)).astype(np.float32)
    # diffusers' LTXPipeline._normalize_latents: (z - mean) * scaling_factor / std per channel.
    expected = (z - mean) * ref.config.scaling_factor / std
    zn = np.asarray(vae.normalize(z))
    assert rel_l2(zn, expected) <= 1e-6
    assert rel_l2(np.asarray(vae.denormalize(zn)), z) <= 1e-6


def test_save_round_trip_is_bit_exact(pair, tmp_path):
    _, ref, vae, folder = pair
    save_vae(vae, tmp_path)
    original, saved = load_file(str(folder / WEIGHTS_NAME)), load_file(str(tmp_path / WEIGHTS_NAME))
    assert sorted(original) == sorted(saved)
    for k in original:
        assert original[k].dtype == saved[k].dtype and original[k].shape == saved[k].shape, k
        np.testing.assert_array_equal(original[k], saved[k], err_msg=k)
    # diffusers reads our folder back, with the same configuration.
    back = AutoencoderKLLTXVideo.from_pretrained(tmp_path).eval()
    cfg = json.loads((tmp_path / "config.json").read_text())
    for k, v in ref.config.items():
        if not k.startswith("_") and k in cfg and "compression_ratio" not in k:
            assert list(v) == cfg[k] if isinstance(v, (list, tuple)) else v == cfg[k], k
    for (k, a), (_, b) in zip(ref.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
