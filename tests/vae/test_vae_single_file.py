"""Lightricks single-file VAE import against the original ltx_video CausalVideoAutoencoder, float32.

Tiny random models of the three released block-list shapes are built with ltx_video, written as a
single `.safetensors` ("vae." keys, per_channel_statistics, config JSON in the metadata), loaded
with `load_vae(file)` and compared on encode (posterior mean) and decode (rel L2 <= 1e-4).
"""

import json

import numpy as np
import pytest
import torch
from ltx_video.models.autoencoders.causal_video_autoencoder import CausalVideoAutoencoder
from safetensors.torch import save_file

from ltx_jax.convert.vae import load_vae
from ltx_jax.convert.vae_single_file import config_from_lightricks
from ltx_jax.vae.config import VARIANTS
from tests.oracle import MODEL_RTOL, rel_l2
from tests.vae.helpers import cf as _cf
from tests.vae.helpers import cl as _cl

pytestmark = pytest.mark.parity

COMMON = dict(_class_name="CausalVideoAutoencoder", dims=3, latent_channels=8, norm_layer="pixel_norm",
              patch_size=4, latent_log_var="uniform", use_quant_conv=False, causal_decoder=False,
              encoder_base_channels=16, decoder_base_channels=16)
STRIDED_ENC = [["res_x", {"num_layers": 1}], ["compress_all", {}], ["res_x_y", {"multiplier": 2}],
               ["res_x", {"num_layers": 1}], ["compress_all", {}], ["res_x", {"num_layers": 1}],
               ["compress_all", {}], ["res_x", {"num_layers": 1}], ["res_x", {"num_layers": 2}]]
CONFIGS = {
    # 0.9.0: one shared list, mirrored decoder with res_x_y and plain d2s upsampling.
    "0.9.0": dict(COMMON, blocks=STRIDED_ENC, timestep_conditioning=False),
    # 0.9.1: same encoder; t-cond decoder with residual x2 upsampling and noise groups.
    "0.9.1": dict(COMMON, encoder_blocks=STRIDED_ENC, timestep_conditioning=True, decoder_blocks=[
        ["res_x", {"num_layers": 1, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 2, "inject_noise": True}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1, "inject_noise": False}]]),
    # 0.9.5: space-to-depth encoder.
    "0.9.5": dict(COMMON, timestep_conditioning=True, encoder_blocks=[
        ["res_x", {"num_layers": 1}], ["compress_space_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
        ["compress_time_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
        ["compress_all_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
        ["compress_all_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}]], decoder_blocks=[
        ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}], ["compress_all", {"residual": True, "multiplier": 2}],
        ["res_x", {"num_layers": 1}]]),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    torch.manual_seed(0)
    ref = CausalVideoAutoencoder.from_config(json.loads(json.dumps(cfg))).eval()
    g = torch.Generator().manual_seed(1)
    tensors = {}
    with torch.no_grad():
        for name, p in ref.state_dict().items():
            if "per_channel_scale" not in name:  # original noise uses torch's RNG: keep it off
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            tensors["vae." + name] = p.contiguous()
    stats = {"mean-of-means": torch.randn(8, generator=g), "std-of-means": torch.rand(8, generator=g) + 0.5,
             "channel": torch.arange(8.0), "mean-of-stds": torch.rand(8, generator=g),
             "mean-of-stds_over_std-of-means": torch.rand(8, generator=g)}
    tensors.update({f"vae.per_channel_statistics.{k}": v for k, v in stats.items()})
    # A transformer tensor in the same file must be ignored by the VAE loader.
    tensors["model.diffusion_model.proj_out.bias"] = torch.zeros(8)
    path = tmp_path_factory.mktemp("single") / "ltxv.safetensors"
    save_file(tensors, str(path), metadata={"config": json.dumps({"vae": cfg, "transformer": {}})})
    return request.param, ref, load_vae(path), stats


def test_block_lists_map_to_the_diffusers_config(pair):
    family, _, vae, _ = pair
    tiny = VARIANTS["tiny-" + family]
    cfg = vae.cfg
    assert cfg.down_block_types == tiny.down_block_types
    assert cfg.timestep_conditioning == tiny.timestep_conditioning
    assert (cfg.temporal_compression, cfg.spatial_compression) == (8, 32)
    if family == "0.9.1":
        assert cfg.decoder_inject_noise == (True, True, True, False)
        assert cfg.upsample_factor == (2, 2, 2) and cfg.upsample_residual == (True, True, True)


def test_full_size_block_lists():
    # The released 0.9.0 "blocks" list maps onto the full-size 0.9.0 variant exactly.
    blocks = [["res_x", 4], ["compress_all", 1], ["res_x_y", 1], ["res_x", 3], ["compress_all", 1],
              ["res_x_y", 1], ["res_x", 3], ["compress_all", 1], ["res_x", 3], ["res_x", 4]]
    cfg, _ = config_from_lightricks(dict(COMMON, latent_channels=128, blocks=blocks,
                                         encoder_base_channels=128, decoder_base_channels=128))
    assert cfg == VARIANTS["0.9.0"]
    up = ["compress_all", {"residual": True, "multiplier": 2}]
    full = dict(COMMON, latent_channels=128, encoder_base_channels=128, decoder_base_channels=128,
                timestep_conditioning=True)
    v091 = dict(full, encoder_blocks=blocks, decoder_blocks=[
        ["res_x", {"num_layers": 5, "inject_noise": True}], up,
        ["res_x", {"num_layers": 6, "inject_noise": True}], up,
        ["res_x", {"num_layers": 7, "inject_noise": True}], up,
        ["res_x", {"num_layers": 8, "inject_noise": False}]])
    assert config_from_lightricks(v091)[0] == VARIANTS["0.9.1"]
    v095 = dict(full, encoder_blocks=[
        ["res_x", {"num_layers": 4}], ["compress_space_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}], ["compress_time_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 6}], ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}], ["compress_all_res", {"multiplier": 2}],
        ["res_x", {"num_layers": 2}]],
        decoder_blocks=[["res_x", {"num_layers": 5}], up] * 3 + [["res_x", {"num_layers": 5}]])
    assert config_from_lightricks(v095)[0] == VARIANTS["0.9.5"]


def test_encode_matches_ltx_video(pair):
    family, ref, vae, _ = pair
    video = np.random.default_rng(0).uniform(-1, 1, (2, 17, 64, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = _cl(ref.encode(_cf(video)).latent_dist.mode())
    err = rel_l2(np.asarray(vae.encode(video)), expected)
    print(f"{family} single-file encode rel_l2 {err:.2e}")
    assert err <= MODEL_RTOL


@pytest.mark.parametrize("timestep", [0.05, 0.7])
def test_decode_matches_ltx_video(pair, timestep):
    family, ref, vae, _ = pair
    z = np.random.default_rng(1).normal(size=(2, 2, 3, 2, 8)).astype(np.float32)
    tcond = vae.cfg.timestep_conditioning
    target = (2, 3, 9, 96, 64)
    with torch.no_grad():
        t = torch.full((2,), timestep) if tcond else None
        expected = _cl(ref.decode(_cf(z), target_shape=target, timestep=t).sample)
    err = rel_l2(np.asarray(vae.decode(z, timestep if tcond else None)), expected)
    print(f"{family} single-file decode t={timestep} rel_l2 {err:.2e}")
    assert err <= MODEL_RTOL


def test_statistics_are_read(pair):
    _, _, vae, stats = pair
    np.testing.assert_array_equal(np.asarray(vae.latents_mean[...]), stats["mean-of-means"].numpy())
    np.testing.assert_array_equal(np.asarray(vae.latents_std[...]), stats["std-of-means"].numpy())
