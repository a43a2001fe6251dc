"""Euler step, guidance and the jitted denoising loop against diffusers and the official ltx_video
code; one compile; determinism; closed-form endpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import rescale_noise_cfg
from flax import nnx
from ltx_video.schedulers.rf import RectifiedFlowScheduler
from ltx_video.utils.diffusers_config_mapping import DIFFUSERS_SCHEDULER_CONFIG

import ltx_jax
from ltx_jax.diffusion.guidance import combine, diffusers_guidance, make_guidance, official_guidance
from ltx_jax.diffusion.sampler import Conditioning, _denoise_jit, denoise, euler_step, transformer_model_fn
from ltx_jax.diffusion.schedules import linear_quadratic_schedule, schedule_from_config, shifted_uniform_schedule
from tests.diffusion import toy
from tests.oracle import LAYER_RTOL, rel_l2

B, F, H, W = 1, 2, 2, 3
RNG = np.random.default_rng(0)


def _inputs(b=B, seed=0):
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((b, F, H, W, toy.C)).astype(np.float32)
    text = rng.standard_normal((b, toy.S, toy.C)).astype(np.float32)
    neg = rng.standard_normal((b, toy.S, toy.C)).astype(np.float32)
    tm = np.tile(np.array([[1, 1, 0]], np.int64), (b, 1))
    nm = np.tile(np.array([[1, 0, 0]], np.int64), (b, 1))
    return lat, text, tm, neg, nm


def _cond(text, tm, neg, nm, **kw):
    return Conditioning(text_embeds=jnp.asarray(text), text_mask=jnp.asarray(tm), neg_text_embeds=jnp.asarray(neg),
                        neg_text_mask=jnp.asarray(nm), **kw)


# ---------------------------------------------------------------- one step


def test_euler_step_matches_diffusers_step():
    sigmas = shifted_uniform_schedule(6, 200)
    sch = FlowMatchEulerDiscreteScheduler.from_config(DIFFUSERS_SCHEDULER_CONFIG)
    sch.set_timesteps(sigmas=np.linspace(1, 1 / 6, 6), mu=0.95 + (200 - 1024) * 1.1 / 3072)
    x = RNG.standard_normal((2, F, H, W, toy.C)).astype(np.float32)
    for i, t in enumerate(sch.timesteps):
        v = RNG.standard_normal(x.shape).astype(np.float32)
        ref = sch.step(torch.from_numpy(v), t, torch.from_numpy(x), return_dict=False)[0].numpy()
        ours = np.asarray(euler_step(x, v, sigmas[i], sigmas))
        assert np.abs(ours - ref).max() <= 1e-6, i
        x = ref
    # stochastic variant: same eps as diffusers' generator draws
    sch = FlowMatchEulerDiscreteScheduler.from_config({**DIFFUSERS_SCHEDULER_CONFIG, "stochastic_sampling": True})
    sch.set_timesteps(sigmas=np.linspace(1, 1 / 6, 6), mu=0.95 + (200 - 1024) * 1.1 / 3072)
    sch.step(torch.from_numpy(v), sch.timesteps[0], torch.from_numpy(x))  # step index 0 -> 1
    ref = sch.step(torch.from_numpy(v), sch.timesteps[1], torch.from_numpy(x), generator=torch.Generator().manual_seed(5),
                   return_dict=False)[0].numpy()
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).numpy()
    ours = np.asarray(euler_step(x, v, sigmas[1], sigmas, noise=eps))
    assert np.abs(ours - ref).max() <= 1e-6


@pytest.mark.parametrize("stochastic", [False, True])
def test_euler_step_per_token_matches_official_step(stochastic):
    sch = RectifiedFlowScheduler(sampler="LinearQuadratic")
    sch.set_timesteps(8, samples_shape=(1, toy.C, F, H, W))
    sigmas = linear_quadratic_schedule(8)
    x = RNG.standard_normal((2, F, H, W, toy.C)).astype(np.float32)
    v = RNG.standard_normal(x.shape).astype(np.float32)
    mask = np.zeros((2, F, H, W), np.float32)
    mask[:, 0] = 1.0  # hard conditioning frame: t = 0, must stay fixed
    mask[1, 1, 0] = 0.2  # a soft condition
    t = np.minimum(sigmas[3], 1.0 - mask)  # [B, F, H, W]
    torch.manual_seed(11)
    ref = sch.step(torch.from_numpy(v.reshape(2, -1, toy.C)), torch.from_numpy(t.reshape(2, -1)),
                   torch.from_numpy(x.reshape(2, -1, toy.C)), return_dict=False, stochastic_sampling=stochastic)[0]
    torch.manual_seed(11)
    eps = torch.randn(2, F * H * W, toy.C).numpy().reshape(x.shape) if stochastic else None
    ours = np.asarray(euler_step(x, v, t, sigmas, noise=eps))
    assert np.abs(ours - ref.numpy().reshape(x.shape)).max() <= 1e-6
    np.testing.assert_array_equal(ours[:, 0], x[:, 0])


# ---------------------------------------------------------------- guidance formulas


def test_guidance_rescale_equals_diffusers_rescale_noise_cfg():
    v_u, v_c = (RNG.standard_normal((2, F, H, W, toy.C)).astype(np.float32) for _ in range(2))
    for w, r in [(3.0, 0.7), (5.0, 1.0), (2.0, 0.0)]:
        ref = torch.from_numpy(v_u) + w * (torch.from_numpy(v_c) - torch.from_numpy(v_u))
        if r > 0:
            ref = rescale_noise_cfg(ref, torch.from_numpy(v_c), guidance_rescale=r)
        ours = combine(v_c, v_u, None, cfg_scale=w, stg_scale=0.0, rescale=r)
        assert rel_l2(ours, ref.numpy()) <= LAYER_RTOL


OFFICIAL_CASES = {
    "cfg": dict(guidance_scale=3.0, stg_scale=0.0),
    "cfg_stg_rescale_star": dict(guidance_scale=3.0, stg_scale=1.0, rescaling_scale=0.7, skip_block_list=[1, 3],
                                 cfg_star_rescale=True),
    "stg_only": dict(guidance_scale=1.0, stg_scale=2.0, rescaling_scale=0.5, skip_block_list=[4]),
    # 13B-dev-style per-interval schedule (block indices scaled down to the toy's 5 blocks)
    "intervals_13b": dict(guidance_timesteps=[1.0, 0.996, 0.9933, 0.985, 0.9767, 0.9008, 0.618],
                          guidance_scale=[1, 1, 6, 8, 6, 1, 1], stg_scale=[0, 0, 4, 4, 4, 2, 1],
                          rescaling_scale=[1, 1, 0.5, 0.5, 1, 1, 1],
                          skip_block_list=[[], [1, 2, 3, 4], [2, 3, 4], [2], [2], [2], [2]], cfg_star_rescale=True),
}


@pytest.mark.parametrize("case", sorted(OFFICIAL_CASES))
def test_denoise_matches_official_pipeline_loop(case):
    kw = OFFICIAL_CASES[case]
    lat, text, tm, neg, nm = _inputs()
    sigmas = linear_quadratic_schedule(30 if case == "intervals_13b" else 8)
    ref = toy.run_official(lat, text, tm, neg, nm, sigmas, skip_layer_strategy=None, **kw)
    g = official_guidance(sigmas, num_layers=toy.NUM_LAYERS, **kw)
    ours = denoise(toy.jax_model_fn, None, lat, sigmas, _cond(text, tm, neg, nm), g)
    assert rel_l2(ours, ref) <= LAYER_RTOL, rel_l2(ours, ref)


def test_denoise_with_conditioning_mask_matches_official():
    lat, text, tm, neg, nm = _inputs()
    mask = np.zeros((B, F, H, W), np.float32)
    mask[:, 0] = 1.0  # hard image condition at frame 0
    mask[:, 1, 1] = 0.4  # soft condition: enters denoising once t < 0.6
    sigmas = linear_quadratic_schedule(8)
    kw = dict(guidance_scale=3.0, stg_scale=1.0, rescaling_scale=0.7, skip_block_list=[2])
    ref = toy.run_official(lat, text, tm, neg, nm, sigmas, conditioning_mask=mask, skip_layer_strategy=None, **kw)
    g = official_guidance(sigmas, num_layers=toy.NUM_LAYERS, **kw)
    ours = denoise(toy.jax_model_fn, None, lat, sigmas, _cond(text, tm, neg, nm, conditioning_mask=jnp.asarray(mask)), g)
    assert rel_l2(ours, ref) <= LAYER_RTOL, rel_l2(ours, ref)
    np.testing.assert_array_equal(np.asarray(ours)[:, 0], lat[:, 0])


def test_denoise_matches_diffusers_pipeline_loop():
    lat, text, tm, neg, nm = _inputs(b=2, seed=1)
    sch = FlowMatchEulerDiscreteScheduler.from_config(DIFFUSERS_SCHEDULER_CONFIG)
    ref = toy.run_diffusers(lat, text, tm, neg, nm, sch, num_steps=6, guidance_scale=3.0, guidance_rescale=0.5)
    sigmas = schedule_from_config(dict(sch.config), 6, F * H * W)
    ours = denoise(toy.jax_model_fn, None, lat, sigmas, _cond(text, tm, neg, nm), diffusers_guidance(6, 3.0, 0.5))
    assert rel_l2(ours, ref) <= LAYER_RTOL, rel_l2(ours, ref)


def test_stg_block_validation():
    sig = linear_quadratic_schedule(4)
    with pytest.raises(ValueError, match=r"STG blocks \[42\] at step 0 do not exist: the model has 5 blocks"):
        official_guidance(sig, stg_scale=1.0, skip_block_list=[42], num_layers=5)
    # 2B 0.9.8 distilled lists block 42 with STG scale 0: inert, no error (ltx_spec.md pitfall 15)
    g = official_guidance(sig, stg_scale=0.0, skip_block_list=[42], num_layers=5, use_stg=True)
    assert float(g.stg_block_mask.min()) == 1.0


# ---------------------------------------------------------------- one compile, determinism, closed form


def test_one_compile_for_new_scales_schedules_and_seeds():
    traces = []

    def model_fn(params, x, t, text, tmask, skip):
        traces.append(1)  # runs once per trace, not per step
        return toy.jax_model_fn(params, x, t, text, tmask, skip) * params

    lat, text, tm, neg, nm = _inputs()
    cond = _cond(text, tm, neg, nm, conditioning_mask=jnp.zeros((B, F, H, W)).at[:, 0].set(1.0),
                 image_cond_noise_scale=jnp.float32(0.15))
    runs = [
        (linear_quadratic_schedule(6), dict(guidance_scale=3.0, stg_scale=1.0, skip_block_list=[1]), 0),
        (shifted_uniform_schedule(6, 500), dict(guidance_scale=7.5, stg_scale=0.3, rescaling_scale=0.7,
                                                skip_block_list=[[0, 2]] * 7, cfg_star_rescale=True,
                                                guidance_timesteps=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), 1),
        (linear_quadratic_schedule(6) * 0.9, dict(guidance_scale=2.0, stg_scale=2.0, skip_block_list=[4]), 2),
    ]
    outs = []
    for sigmas, kw, seed in runs:
        g = official_guidance(sigmas, num_layers=toy.NUM_LAYERS, **kw)
        outs.append(denoise(model_fn, jnp.float32(1.0), lat, sigmas, cond, g, key=jax.random.key(seed), stochastic=True))
    assert len(traces) == 1, f"the loop was traced {len(traces)} times"
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[0], outs[2])


def test_determinism_same_seed_same_result_different_seeds_differ():
    lat, text, tm, neg, nm = _inputs()
    sigmas = linear_quadratic_schedule(8)
    g = official_guidance(sigmas, guidance_scale=3.0)
    run = lambda seed: np.asarray(denoise(toy.jax_model_fn, None, lat, sigmas, _cond(text, tm, neg, nm), g,  # noqa: E731
                                          key=jax.random.key(seed), stochastic=True))
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def _field_cond(lat):
    return Conditioning(text_embeds=jnp.zeros((lat.shape[0], 1, 1)), text_mask=jnp.ones((lat.shape[0], 1)))


def test_exact_field_reaches_its_data_point():
    # Data concentrated at c: the exact velocity is (x - c) / t and Euler is exact on it.
    c = jnp.asarray(RNG.standard_normal((1, F, H, W, toy.C)), jnp.float32)
    field = lambda p, x, t, *_: (x - p) / t[:, None, None, None, None]  # noqa: E731
    lat = RNG.standard_normal((2, F, H, W, toy.C)).astype(np.float32)
    for sigmas in (shifted_uniform_schedule(7, 300), linear_quadratic_schedule(5)):
        out = denoise(field, c, lat, sigmas, _field_cond(lat), make_guidance(len(sigmas)))
        assert np.abs(np.asarray(out) - np.asarray(c)).max() < 1e-5


def test_linear_field_converges_to_closed_form():
    # dx/dt = a x from t=1 to 0: x(0) = x(1) exp(-a). Euler's error shrinks as 1/n.
    a = 0.8
    field = lambda p, x, t, *_: a * x  # noqa: E731
    lat = RNG.standard_normal((1, F, H, W, toy.C)).astype(np.float32)
    errs = []
    for n in (50, 400):
        sigmas = np.linspace(1.0, 1.0 / n, n).astype(np.float32)
        out = denoise(field, None, lat, sigmas, _field_cond(lat), make_guidance(n))
        errs.append(rel_l2(out, lat * np.exp(-a)))
        # Euler's exact discrete endpoint: prod (1 - a dt). The loop runs in float32 over up to 400
        # steps with float32 sigmas (dt differs from 1/n by rounding), so ~n ulps accumulate: 1e-4.
        np.testing.assert_allclose(out, lat * (1 - a / n) ** n, rtol=1e-4)
    assert errs[1] < errs[0] / 6 and errs[1] < 1e-3


def test_noise_augmentation_of_hard_conditioning_tokens():
    lat, text, tm, neg, nm = _inputs()
    mask = jnp.zeros((B, F, H, W)).at[:, 0].set(1.0)
    sigmas = linear_quadratic_schedule(8)
    g = make_guidance(8)
    run = lambda s: np.asarray(denoise(toy.jax_model_fn, None, lat, sigmas,  # noqa: E731
                                       _cond(text, tm, neg, nm, conditioning_mask=mask, image_cond_noise_scale=jnp.float32(s)),
                                       g, key=jax.random.key(4)))
    off, on = run(0.0), run(0.15)
    np.testing.assert_array_equal(off[:, 0], lat[:, 0])
    dev = on[:, 0] - lat[:, 0]  # the last reset is init + s eps t_last^2
    assert 0.3 < dev.std() / (0.15 * sigmas[-1] ** 2) < 3.0


def test_tiny_dit_through_transformer_model_fn_compiles_once():
    model = ltx_jax.Transformer3D(ltx_jax.dit_config("tiny"), rngs=nnx.Rngs(0))
    cfg = model.config
    fn, params = transformer_model_fn(model, frame_rate=25.0)
    fn2, _ = transformer_model_fn(model, frame_rate=30.0)
    assert fn is fn2  # same graph -> same static function -> same compiled loop
    rng = np.random.default_rng(5)
    lat = rng.standard_normal((1, 2, 2, 2, cfg.in_channels)).astype(np.float32)
    text = rng.standard_normal((1, 4, cfg.caption_channels)).astype(np.float32)
    cond = Conditioning(text_embeds=jnp.asarray(text), text_mask=jnp.ones((1, 4)), neg_text_embeds=jnp.zeros_like(text),
                        neg_text_mask=jnp.ones((1, 4)))
    sigmas = linear_quadratic_schedule(3)
    size0 = _denoise_jit._cache_size()
    outs = []
    for w, stg in [(3.0, 1.0), (5.0, 0.5)]:
        g = official_guidance(sigmas, guidance_scale=w, stg_scale=stg, skip_block_list=[cfg.num_layers - 1],
                              num_layers=cfg.num_layers)
        outs.append(np.asarray(denoise(fn, params, lat, sigmas, cond, g)))
    assert _denoise_jit._cache_size() - size0 == 1  # new scales and frame rate reuse the program
    assert all(np.isfinite(o).all() for o in outs) and not np.allclose(outs[0], outs[1])
