"""Transformer3D against diffusers' LTXVideoTransformer3DModel (the oracle), float32.

Each case builds a tiny random diffusers model, saves it with save_pretrained, loads it with
`ltx_jax.load_transformer` and compares the forward pass (relative L2 <= 1e-4, whole model).
"""

import numpy as np
import pytest
import torch
from diffusers import LTXVideoTransformer3DModel

import ltx_jax
from tests.oracle import MODEL_RTOL, rel_l2, to_numpy

pytestmark = pytest.mark.parity

CASES = [
    # layers, heads, head_dim, caption, (F, H, W), batch, per_token, frame_rate, text_len, pad
    dict(layers=2, heads=2, head_dim=16, caption=24, fhw=(3, 4, 5), batch=2, per_token=False, fps=25.0, s=7, pad=3),
    dict(layers=3, heads=3, head_dim=16, caption=40, fhw=(2, 3, 3), batch=1, per_token=True, fps=24.0, s=5, pad=0),
    dict(layers=1, heads=4, head_dim=8, caption=16, fhw=(5, 1, 7), batch=2, per_token=True, fps=30.0, s=6, pad=2),
    dict(layers=2, heads=1, head_dim=40, caption=24, fhw=(1, 3, 2), batch=3, per_token=False, fps=8.0, s=4, pad=1),
]


def _randomize(model, seed):
    # diffusers' init leaves some parameters at exact constants (norm weights 1, biases 0);
    # randomize everything so every parameter matters in the comparison.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def build_diffusers(tmp_path, case, seed=0):
    torch.manual_seed(seed)
    model = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=case["heads"],
        attention_head_dim=case["head_dim"], cross_attention_dim=case["heads"] * case["head_dim"],
        num_layers=case["layers"], caption_channels=case["caption"],
    ).eval()
    _randomize(model, seed)
    model.save_pretrained(tmp_path / "transformer")
    return model


def make_inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    f, h, w = case["fhw"]
    b = case["batch"]
    latents = rng.standard_normal((b, f, h, w, 8)).astype(np.float32)
    if case["per_token"]:
        t = rng.uniform(0, 1, (b, f, h, w)).astype(np.float32)
        t[:, 0] = 0.0  # a clean conditioning frame, as image-to-video uses it
    else:
        t = rng.uniform(0, 1, (b,)).astype(np.float32)
    text = rng.standard_normal((b, case["s"], case["caption"])).astype(np.float32)
    mask = np.ones((b, case["s"]), np.int64)
    if case["pad"]:
        mask[-1, -case["pad"]:] = 0
    return latents, t, text, mask


def diffusers_forward(model, case, latents, t, text, mask):
    b, f, h, w, c = latents.shape
    packed = torch.from_numpy(latents).reshape(b, f * h * w, c)
    timestep = torch.from_numpy(t * 1000.0).reshape(b, -1) if t.ndim > 1 else torch.from_numpy(t * 1000.0)
    with torch.no_grad():
        out = model(
            hidden_states=packed, encoder_hidden_states=torch.from_numpy(text),
            timestep=timestep, encoder_attention_mask=torch.from_numpy(mask),
            num_frames=f, height=h, width=w,
            rope_interpolation_scale=(8 / case["fps"], 32, 32), return_dict=False,
        )[0]
    return to_numpy(out).reshape(b, f, h, w, c)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_diffusers(tmp_path, case):
    ref_model = build_diffusers(tmp_path, case)
    model = ltx_jax.load_transformer(tmp_path / "transformer")
    inputs = make_inputs(case)
    expected = diffusers_forward(ref_model, case, *inputs)
    latents, t, text, mask = inputs
    got = model(latents, t, text, mask, frame_rate=case["fps"])
    err = rel_l2(got, expected)
    assert err <= MODEL_RTOL, f"relative L2 error {err:.3e}"


def test_text_mask_dtypes_agree(tmp_path):
    case = CASES[0]
    build_diffusers(tmp_path, case)
    model = ltx_jax.load_transformer(tmp_path / "transformer")
    latents, t, text, mask = make_inputs(case)
    outs = [np.asarray(model(latents, t, text, m, frame_rate=25.0))
            for m in (mask, mask.astype(bool), mask.astype(np.float32))]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    # Padding matters: dropping the mask changes the padded sample only.
    unmasked = np.asarray(model(latents, t, text, None, frame_rate=25.0))
    np.testing.assert_array_equal(unmasked[0], outs[0][0])
    assert rel_l2(unmasked[-1], outs[0][-1]) > 1e-3
