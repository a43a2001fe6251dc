"""Lightricks single-file VAE export: bit-exact round trip through `load_vae`, and the original
ltx_video `CausalVideoAutoencoder.from_pretrained` reads the file (strict keys) and decodes like us."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from ltx_video.models.autoencoders.causal_video_autoencoder import CausalVideoAutoencoder
from safetensors import safe_open

from ltx_jax.convert.vae import load_vae, save_vae
from ltx_jax.convert.vae_single_file import config_to_lightricks
from ltx_jax.vae.config import VARIANTS
from tests.oracle import MODEL_RTOL, rel_l2
from tests.vae.helpers import cf, cl, random_vae

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module", params=["0.9.0", "0.9.1", "0.9.5"])
def saved(request, tmp_path_factory):
    vae = random_vae("tiny-" + request.param, seed=3)
    rng = np.random.default_rng(4)
    vae.latents_mean.set_value(jnp.asarray(rng.normal(size=8), jnp.float32))
    vae.latents_std.set_value(jnp.asarray(rng.uniform(0.5, 2, size=8), jnp.float32))
    if vae.cfg.timestep_conditioning:
        vae.decoder.timestep_scale_multiplier.set_value(jnp.asarray(731.0, jnp.float32))
    path = tmp_path_factory.mktemp("export") / "ltxv-vae.safetensors"
    save_vae(vae, path, layout="lightricks")
    return vae, path


def test_round_trip_is_bit_exact(saved):
    vae, path = saved
    back = load_vae(path)
    assert back.cfg == vae.cfg
    a, b = dict(nnx.to_flat_state(nnx.state(vae))), dict(nnx.to_flat_state(nnx.state(back)))
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k].get_value()), np.asarray(b[k].get_value())
        assert x.dtype == y.dtype and x.shape == y.shape, k  # 0-d multiplier stays 0-d
        np.testing.assert_array_equal(x, y, err_msg=str(k))


def test_file_layout(saved):
    vae, path = saved
    with safe_open(str(path), "np") as f:
        keys, meta = list(f.keys()), f.metadata()
        mean = f.get_tensor("vae.per_channel_statistics.mean-of-means")
    assert all(k.startswith("vae.") for k in keys)
    assert any(".res_blocks." in k for k in keys) and not any(".resnets." in k for k in keys)
    np.testing.assert_array_equal(mean, np.asarray(vae.latents_mean[...]))
    assert json.loads(meta["config"])["vae"] == json.loads(json.dumps(config_to_lightricks(vae.cfg)))


def test_ltx_video_reads_the_file_and_decodes_alike(saved):
    vae, path = saved
    ref = CausalVideoAutoencoder.from_pretrained(path).eval()  # strict load_state_dict
    np.testing.assert_array_equal(ref.std_of_means.numpy(), np.asarray(vae.latents_std[...]))
    z = np.random.default_rng(5).normal(size=(1, 2, 2, 1, 8)).astype(np.float32)
    tcond = vae.cfg.timestep_conditioning
    with torch.no_grad():
        expected = cl(ref.decode(cf(z), target_shape=(1, 3, 9, 64, 32),
                                 timestep=torch.full((1,), 0.05) if tcond else None).sample)
    err = rel_l2(np.asarray(vae.decode(z, 0.05 if tcond else None)), expected)
    assert err <= MODEL_RTOL


def test_full_size_variants_have_block_lists():
    for name in ("0.9.0", "0.9.1", "0.9.5"):
        cfg = config_to_lightricks(VARIANTS[name])
        assert cfg["encoder_base_channels"] == 128 and cfg["decoder_base_channels"] == 128, name


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown VAE layout 'onnx'.*'diffusers', 'lightricks'"):
        save_vae(random_vae("tiny-0.9.0"), tmp_path, layout="onnx")
