"""Transformer3D against the original Lightricks `ltx-video` package (the oracle), float32.

Covers what diffusers does not: the causal time positions of 0.9.5+, the Lightricks single-file
layout (written here the way Lightricks ships it and read back by the original loader too), and
the STG skip-layer hooks.
"""

import json

import numpy as np
import pytest
import torch
from ltx_video.models.autoencoders.vae_encode import latent_to_pixel_coords_from_factors
from ltx_video.models.transformers.transformer3d import Transformer3DModel
from ltx_video.utils.skip_layer_strategy import SkipLayerStrategy
from safetensors.torch import save_file

import ltx_jax
from tests.dit.test_parity_diffusers import _randomize
from tests.oracle import MODEL_RTOL, rel_l2, to_numpy

pytestmark = pytest.mark.parity


def lightricks_config(layers=2, heads=2, head_dim=16, caption=24, causal=True):
    return dict(
        _class_name="Transformer3DModel", num_attention_heads=heads, attention_head_dim=head_dim,
        in_channels=8, out_channels=8, num_layers=layers, dropout=0.0,
        cross_attention_dim=heads * head_dim, attention_bias=True, activation_fn="gelu-approximate",
        adaptive_norm="single_scale_shift", standardization_norm="rms_norm",
        norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=caption, qk_norm="rms_norm",
        positional_embedding_type="rope", positional_embedding_theta=10000.0,
        positional_embedding_max_pos=[20, 2048, 2048], timestep_scale_multiplier=1000,
        causal_temporal_positioning=causal,
    )


def write_single_file(path, config, seed=0):
    """A Lightricks-style single file: prefixed DiT tensors, a VAE tensor, config metadata."""
    torch.manual_seed(seed)
    model = _randomize(Transformer3DModel.from_config(config).eval(), seed)
    tensors = {"model.diffusion_model." + k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["vae.encoder.conv_in.conv.weight"] = torch.zeros(4, 3, 3, 3, 3)  # must be ignored
    meta = {"config": json.dumps({"transformer": config, "vae": {"_class_name": "CausalVideoAutoencoder"}})}
    save_file(tensors, str(path), metadata=meta)
    return model


def original_forward(model, latents, t, text, mask, fps, causal, skip=None, strategy=None):
    b, f, h, w, c = latents.shape
    grid = torch.stack(torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij"))
    latent_coords = grid.reshape(3, -1)[None].repeat(b, 1, 1)  # as SymmetricPatchifier builds it
    pixel = latent_to_pixel_coords_from_factors(latent_coords, (8, 32, 32), causal_fix=causal)
    coords = pixel.to(torch.float32)
    coords[:, 0] = coords[:, 0] * (1.0 / fps)  # as the original pipeline does
    timestep = torch.from_numpy(t).reshape(b, -1) if t.ndim > 1 else torch.from_numpy(t)
    with torch.no_grad():
        out = model(
            torch.from_numpy(latents).reshape(b, f * h * w, c), coords,
            encoder_hidden_states=torch.from_numpy(text), timestep=timestep,
            encoder_attention_mask=torch.from_numpy(mask),
            skip_layer_mask=None if skip is None else torch.from_numpy(skip),
            skip_layer_strategy=strategy, return_dict=False,
        )[0]
    return to_numpy(out).reshape(b, f, h, w, c)


def inputs(b=2, fhw=(3, 2, 3), s=6, caption=24, per_token=False, seed=0):
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((b, *fhw, 8)).astype(np.float32)
    t = rng.uniform(0, 1, (b, *fhw) if per_token else (b,)).astype(np.float32)
    text = rng.standard_normal((b, s, caption)).astype(np.float32)
    mask = np.ones((b, s), np.int64)
    mask[-1, -2:] = 0
    return latents, t, text, mask


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("per_token", [False, True])
def test_single_file_matches_original(tmp_path, causal, per_token):
    config = lightricks_config(causal=causal)
    ref = write_single_file(tmp_path / "ltxv.safetensors", config)
    model = ltx_jax.load_transformer(tmp_path / "ltxv.safetensors")
    assert model.config.causal_temporal_positioning is causal
    for fps in (25.0, 8.0):
        x = inputs(per_token=per_token, fhw=(4, 2, 3))
        expected = original_forward(ref, *x, fps=fps, causal=causal)
        err = rel_l2(model(*x, frame_rate=fps), expected)
        assert err <= MODEL_RTOL, f"fps={fps}: relative L2 error {err:.3e}"


def test_causal_positions_differ_from_plain(tmp_path):
    # Guards the test above: at its lowest frame rate the two position rules differ by far more
    # than the tolerance, so matching the original means matching its rule.
    ref = write_single_file(tmp_path / "a.safetensors", lightricks_config(causal=True))
    x = inputs(fhw=(4, 2, 3))
    a = original_forward(ref, *x, fps=8.0, causal=True)
    b = original_forward(ref, *x, fps=8.0, causal=False)
    assert rel_l2(a, b) > 10 * MODEL_RTOL


STRATEGIES = {
    "attention_values": SkipLayerStrategy.AttentionValues,
    "attention_skip": SkipLayerStrategy.AttentionSkip,
    "transformer_block": SkipLayerStrategy.TransformerBlock,
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_stg_hooks_match_original(tmp_path, strategy):
    config = lightricks_config(layers=3)
    ref = write_single_file(tmp_path / "ltxv.safetensors", config)
    model = ltx_jax.load_transformer(tmp_path / "ltxv.safetensors")
    x = inputs(b=2)
    skip = np.ones((3, 2), np.float32)
    skip[1, 1] = 0.0  # perturb block 1 for the second sample only
    expected = original_forward(ref, *x, fps=25.0, causal=True, skip=skip, strategy=STRATEGIES[strategy])
    got = model(*x, frame_rate=25.0, skip_layer_mask=skip, skip_layer_strategy=strategy)
    assert rel_l2(got, expected) <= MODEL_RTOL
    plain = np.asarray(model(*x, frame_rate=25.0))
    np.testing.assert_allclose(np.asarray(got)[0], plain[0], rtol=0, atol=0)  # sample 0 untouched
    assert rel_l2(np.asarray(got)[1], plain[1]) > 1e-3  # sample 1 perturbed


def test_export_reloads_in_original(tmp_path):
    config = lightricks_config()
    write_single_file(tmp_path / "in.safetensors", config)
    model = ltx_jax.load_transformer(tmp_path / "in.safetensors")
    ltx_jax.save_transformer(model, tmp_path / "out.safetensors", layout="lightricks")
    reloaded = Transformer3DModel.from_pretrained(tmp_path / "out.safetensors").float().eval()
    x = inputs()
    expected = original_forward(reloaded, *x, fps=25.0, causal=True)
    assert rel_l2(model(*x, frame_rate=25.0), expected) <= MODEL_RTOL
