"""Rectified-flow noising, target, loss and training timestep samplers (ltx_spec.md 4.1-4.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from ltx_video.schedulers.rf import RectifiedFlowScheduler

from ltx_jax.diffusion import flow
from tests.oracle import LAYER_RTOL, rel_l2

SHAPE = (2, 3, 2, 4, 5)  # [B, F, H, W, C]


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal(SHAPE).astype(np.float32)


def test_add_noise_endpoints_and_velocity():
    x0, eps = _arrays()
    np.testing.assert_array_equal(flow.add_noise(x0, eps, 0.0), x0)
    np.testing.assert_array_equal(flow.add_noise(x0, eps, 1.0), eps)
    t = np.array([0.3, 0.8], np.float32)
    xt = flow.add_noise(x0, eps, t)
    # Analytic identities evaluated in float32: the tolerances are float32 rounding of a
    # two-term sum of O(1) values (a few ulps), not a parity tolerance.
    np.testing.assert_allclose(xt[1], 0.2 * x0[1] + 0.8 * eps[1], rtol=1e-6, atol=1e-7)
    v = flow.velocity_target(x0, eps)
    np.testing.assert_array_equal(v, eps - x0)
    # the straight path: x_t = x0 + t v, and x0 = x_t - t v
    np.testing.assert_allclose(xt, x0 + t[:, None, None, None, None] * v, atol=1e-6)
    np.testing.assert_allclose(flow.denoised_estimate(xt, v, t), x0, atol=1e-6)


def test_add_noise_per_token_matches_official_scheduler():
    x0, eps = _arrays(1)
    t_tok = np.random.default_rng(2).uniform(size=SHAPE[:4]).astype(np.float32)
    t_tok[:, 0] = 0.0  # a clean conditioning frame
    ours = flow.add_noise(x0, eps, t_tok)
    ref = RectifiedFlowScheduler().add_noise(torch.from_numpy(x0), torch.from_numpy(eps), torch.from_numpy(t_tok))
    assert rel_l2(ours, ref.numpy()) <= LAYER_RTOL
    np.testing.assert_array_equal(ours[:, 0], x0[:, 0])


def test_time_shape_errors_are_clear():
    x0, eps = _arrays()
    with pytest.raises(ValueError, match=r"scalar, \[B\] = \[2\] or per token \[2, 3, 2, 4\]"):
        flow.add_noise(x0, eps, np.zeros((3,), np.float32))


def test_masked_loss_matches_trainer_formula():
    pred, target = _arrays(3)
    mask = np.ones(SHAPE[:4], np.float32)
    mask[:, 0] = 0.0  # first latent frame is conditioning, excluded
    # LTX-Video-Trainer: (pred - target)^2 * mask / mask.mean(), then mean
    p, tg, m = (torch.from_numpy(a) for a in (pred, target, mask[..., None].repeat(SHAPE[4], -1)))
    ref = ((p - tg).pow(2).mul(m).div(m.mean())).mean().item()
    ours = float(flow.flow_loss(pred, target, mask))
    assert abs(ours - ref) / ref < 1e-6
    assert abs(float(flow.flow_loss(pred, target)) - float(np.mean((pred - target) ** 2))) < 1e-6
    # changing the excluded tokens does not change the loss; the result is float32 even for bf16 input
    pred2 = pred.copy()
    pred2[:, 0] += 100.0
    assert float(flow.flow_loss(pred2, target, mask)) == pytest.approx(ours, rel=1e-6)
    assert flow.flow_loss(jnp.asarray(pred, jnp.bfloat16), target, mask).dtype == jnp.float32
    assert float(flow.flow_loss(pred, target, np.zeros_like(mask))) == 0.0


def test_shifted_logit_normal_sampler():
    assert flow.token_shift(6144) == pytest.approx(2.78333, abs=1e-5)  # not clamped
    assert flow.token_shift(1024) == pytest.approx(0.95) and flow.token_shift(4096) == pytest.approx(2.05)
    key = jax.random.key(0)
    t = flow.sample_shifted_logit_normal_timesteps(key, 20000, 6144)
    assert t.shape == (20000,) and t.dtype == jnp.float32
    logit = np.log(np.asarray(t, np.float64) / (1 - np.asarray(t, np.float64)))
    assert abs(logit.mean() - 2.78333) < 0.03 and abs(logit.std() - 1.0) < 0.03
    np.testing.assert_array_equal(t, flow.sample_timesteps(key, 20000, 6144))  # deterministic per key
    assert not np.array_equal(t, flow.sample_timesteps(jax.random.key(1), 20000, 6144))
    # more tokens -> more noise
    assert float(jnp.median(flow.sample_timesteps(key, 4000, 256))) < float(jnp.median(t))


def test_uniform_sampler_and_rounding():
    t = flow.sample_timesteps(jax.random.key(3), 10000, 100, kind="uniform")
    assert 0.0 <= float(t.min()) and float(t.max()) < 1.0 and abs(float(t.mean()) - 0.5) < 0.02
    # round(1000 t) / 1000 in float32: 0.123 is not representable exactly, hence one ulp of slack.
    np.testing.assert_allclose(flow.round_timesteps(jnp.array([0.1234, 0.9996])), [0.123, 1.0], atol=1e-7)
    with pytest.raises(ValueError, match="valid: \\('uniform', 'shifted_logit_normal'\\)"):
        flow.sample_timesteps(jax.random.key(0), 4, 100, kind="lognormal")
