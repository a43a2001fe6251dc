"""Transformer3D properties: scan equals the loop, remat, parameter counts, axes, bad input, jit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ltx_jax.config import DIT_VARIANTS, dit_config
from ltx_jax.dit.transformer import REMAT_POLICIES, Transformer3D
from ltx_jax.sharding import LOGICAL_AXES
from ltx_jax.nn.layers import logical_axes
from tests.oracle import LAYER_RTOL, rel_l2


def _inputs(b=2, fhw=(2, 3, 4), s=5, c=8, caption=24, seed=0):
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((b, *fhw, c)).astype(np.float32)
    t = rng.uniform(0, 1, (b,)).astype(np.float32)
    text = rng.standard_normal((b, s, caption)).astype(np.float32)
    mask = np.ones((b, s), np.int32)
    mask[-1, -2:] = 0
    return latents, t, text, mask


def _twin(model, **changes):
    """A model with the same weights and a different config (e.g. unrolled layers)."""
    other = Transformer3D(dataclasses.replace(model.config, **changes), rngs=nnx.Rngs(1))
    nnx.update(other, nnx.state(model))
    return other


@pytest.fixture(scope="module")
def tiny():
    return Transformer3D(dit_config("tiny", num_layers=3), rngs=nnx.Rngs(0))


def test_scan_equals_unrolled_loop(tiny):
    x = _inputs()
    skip = np.array([[1, 1], [1, 0], [0, 1]], np.float32)
    loop = _twin(tiny, scan_layers=False)
    for kw in ({}, {"skip_layer_mask": skip}):
        a, b = tiny(*x, **kw), loop(*x, **kw)
        assert rel_l2(a, b) <= LAYER_RTOL


@pytest.mark.parametrize("policy", sorted(set(REMAT_POLICIES) - {"none"}))
def test_remat_policies_keep_values_and_gradients(tiny, policy):
    x = _inputs()
    remat = _twin(tiny, remat_policy=policy)

    def loss(model):
        return jnp.mean(model(*x) ** 2)

    (l0, g0), (l1, g1) = nnx.value_and_grad(loss)(tiny), nnx.value_and_grad(loss)(remat)
    assert rel_l2(l1, l0) <= LAYER_RTOL
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        assert rel_l2(b, a) <= LAYER_RTOL


def _count(variant):
    abstract = nnx.eval_shape(lambda: Transformer3D(dit_config(variant), rngs=nnx.Rngs(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_parameter_counts_from_abstract_shapes():
    # ltx_spec.md 3.1, derived from the released checkpoints' tensor shapes.
    assert _count("ltxv-2b") == 1_923_385_472
    assert _count("ltxv-13b") == 13_042_569_344


def test_every_parameter_has_logical_axes(tiny):
    for path, var in nnx.to_flat_state(nnx.state(tiny, nnx.Param)):
        axes = logical_axes(var)
        assert axes is not None and len(axes) == var.get_value().ndim, path
        assert all(a is None or a in LOGICAL_AXES for a in axes), (path, axes)
        assert (axes[0] == "layers") == (path[0] == "transformer_blocks"), (path, axes)


def test_functional_jit_matches_eager(tiny):
    graphdef, state = nnx.split(tiny)

    @jax.jit
    def forward(state, *x):
        return nnx.merge(graphdef, state)(*x, frame_rate=24.0)

    x = _inputs()
    assert rel_l2(forward(state, *x), tiny(*x, frame_rate=24.0)) <= LAYER_RTOL


def test_per_token_timesteps_equal_to_per_sample(tiny):
    latents, t, text, mask = _inputs()
    per_token = np.broadcast_to(t[:, None, None, None], latents.shape[:4])
    assert rel_l2(tiny(latents, per_token, text, mask), tiny(latents, t, text, mask)) <= LAYER_RTOL
    # Tokens at another timestep change the output.
    mixed = per_token.copy()
    mixed[:, 0] = 0.0
    assert rel_l2(tiny(latents, mixed, text, mask), tiny(latents, t, text, mask)) > 1e-3


def test_bfloat16_compute_tracks_float32(tiny):
    x = _inputs()
    bf16 = _twin(tiny, dtype="bfloat16")
    out = bf16(*x)
    assert out.dtype == jnp.float32
    # bfloat16 keeps 8 mantissa bits (~4e-3 per rounding) through ~20 matmuls and norms: a sanity
    # bound that bf16 compute follows the float32 network, not a parity tolerance.
    assert rel_l2(out, tiny(*x)) < 5e-2


def test_variants_build_abstractly():
    for name in DIT_VARIANTS:
        cfg = dit_config(name)
        abstract = nnx.eval_shape(lambda: Transformer3D(cfg, rngs=nnx.Rngs(0)))
        assert abstract.config.width == cfg.num_heads * cfg.head_dim


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: (x[0][..., :5], *x[1:]), "latents have 5 channels but the model takes 8"),
        (lambda x: (x[0][0], *x[1:]), r"latents must be \[B, F, H, W, C\]"),
        (lambda x: (*x[:3], x[3][:, :3]), r"text_mask must be \[B, S\] = \[2, 5\]"),
        (lambda x: (*x[:3], x[3][None]), r"text_mask must be \[B, S\]"),
        (lambda x: (x[0], x[1][:1], *x[2:]), r"timestep must be a scalar, \[B\] = \[2\]"),
        (lambda x: (*x[:2], x[2][..., :7], x[3]), r"text_embeds must be \[B=2, S, 24\]"),
    ],
)
def test_bad_inputs_give_clear_errors(tiny, change, message):
    with pytest.raises(ValueError, match=message):
        tiny(*change(_inputs()))


def test_bad_stg_arguments(tiny):
    x = _inputs()
    with pytest.raises(ValueError, match=r"skip_layer_mask must be \[num_layers, B\] = \[3, 2\]"):
        tiny(*x, skip_layer_mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match="unknown skip_layer_strategy 'residual'"):
        tiny(*x, skip_layer_mask=np.ones((3, 2)), skip_layer_strategy="residual")


def test_unknown_remat_policy_or_attention_impl():
    with pytest.raises(ValueError, match="unknown remat_policy 'some'"):
        Transformer3D(dit_config("tiny", remat_policy="some"), rngs=nnx.Rngs(0))
    # Caught at construction, not at the first traced call.
    with pytest.raises(ValueError, match="unknown attention impl 'flash'; valid: "):
        Transformer3D(dit_config("tiny", attention_impl="flash"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="inner_impl 'ulysses' must be a single-device impl: one of"):
        Transformer3D(dit_config("tiny", attention_impl="ring", attention_inner_impl="ulysses"), rngs=nnx.Rngs(0))


def test_token_input_with_positions_equals_grid(tiny):
    from ltx_jax.dit.positions import fractional_positions

    latents, t, text, mask = _inputs()
    b, f, h, w, c = latents.shape
    frac = np.asarray(fractional_positions(f, h, w, frame_rate=25.0))  # [L, 3]
    positions = np.broadcast_to(frac * np.array([20.0, 2048.0, 2048.0]), (b, f * h * w, 3))
    grid = np.asarray(tiny(latents, t, text, mask))
    per_token_t = np.broadcast_to(t[:, None], (b, f * h * w))
    tokens = np.asarray(tiny(latents.reshape(b, -1, c), per_token_t, text, mask, positions=positions))
    assert tokens.shape == (b, f * h * w, 8)
    assert rel_l2(tokens, grid.reshape(b, -1, 8)) <= LAYER_RTOL
    with pytest.raises(ValueError, match="need explicit positions"):
        tiny(latents.reshape(b, -1, c), t, text, mask)
