"""Schedules against diffusers' FlowMatchEulerDiscreteScheduler, the official RectifiedFlowScheduler,
and the values listed in ltx_spec.md section 4.3."""

import json

import numpy as np
import pytest
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift
from ltx_video.pipelines.pipeline_ltx_video import retrieve_timesteps
from ltx_video.schedulers.rf import RectifiedFlowScheduler
from ltx_video.utils.diffusers_config_mapping import DIFFUSERS_SCHEDULER_CONFIG, OURS_SCHEDULER_CONFIG

from ltx_jax.convert.safetensors_io import save_file
from ltx_jax.diffusion import schedules as S

CASES = [(20, 6144), (40, 1024), (8, 300), (3, 4096), (50, 2 * 16 * 22)]


def _diffusers_sigmas(config, n, num_tokens):
    """What diffusers' LTXPipeline does: sigmas=linspace(1, 1/n, n), mu from calculate_shift."""
    sch = FlowMatchEulerDiscreteScheduler.from_config(config)
    mu = calculate_shift(num_tokens, sch.config.get("base_image_seq_len", 256), sch.config.get("max_image_seq_len", 4096),
                         sch.config.get("base_shift", 0.5), sch.config.get("max_shift", 1.15))
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    return sch.sigmas.numpy(), sch.timesteps.numpy()


def test_ltx_diffusers_config_is_the_spec_one():
    c = DIFFUSERS_SCHEDULER_CONFIG
    assert (c["base_shift"], c["max_shift"], c["base_image_seq_len"], c["max_image_seq_len"]) == (0.95, 2.05, 1024, 4096)
    assert c["shift_terminal"] == 0.1 and c["use_dynamic_shifting"] is True


@pytest.mark.parametrize("n,num_tokens", CASES)
def test_shifted_uniform_matches_diffusers(n, num_tokens):
    sigmas, timesteps = _diffusers_sigmas(DIFFUSERS_SCHEDULER_CONFIG, n, num_tokens)
    ours = S.shifted_uniform_schedule(n, num_tokens)
    assert sigmas[-1] == 0.0 and len(sigmas) == n + 1  # diffusers appends the terminal 0; we imply it
    # 1e-6 is the bound issue 4 fixes for schedules (float32 vs diffusers' float64/float32 mix).
    np.testing.assert_allclose(ours, sigmas[:-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours * 1000.0, timesteps, rtol=1e-6, atol=0)
    np.testing.assert_allclose(S.schedule_from_config(DIFFUSERS_SCHEDULER_CONFIG, n, num_tokens), ours, atol=0, rtol=0)


@pytest.mark.parametrize("n,num_tokens", CASES)
def test_official_sd3_and_linear_quadratic_match_rf_scheduler(n, num_tokens):
    shape = (1, 128, 1, num_tokens, 1)  # the official shift uses prod(shape[2:]) = F*H*W
    sd3 = RectifiedFlowScheduler.from_config(OURS_SCHEDULER_CONFIG)
    sd3.set_timesteps(n, samples_shape=shape)
    np.testing.assert_allclose(S.schedule_from_config(OURS_SCHEDULER_CONFIG, n, num_tokens), sd3.timesteps.numpy(), atol=1e-6)
    for cfg in (dict(sampler="LinearQuadratic"), dict(sampler="LinearQuadratic", shifting="SD3"),
                dict(sampler="Uniform", shifting="SimpleDiffusion", base_resolution=1024),
                dict(sampler="Constant", shift=2.5), dict(sampler="Uniform")):
        ref = RectifiedFlowScheduler(**cfg)
        ref.set_timesteps(n, samples_shape=shape)
        ours = S.schedule_from_config({"_class_name": "RectifiedFlowScheduler", **cfg}, n, num_tokens)
        np.testing.assert_allclose(ours, ref.timesteps.numpy(), atol=1e-6, err_msg=str(cfg))


def test_spec_listed_values():
    # ltx_spec.md 4.3 lists these to 4 decimals: 5e-5 is half a unit of the last listed digit.
    spec_20 = [1.0, 0.9946, 0.9886, 0.982, 0.9746, 0.9664, 0.957, 0.9463, 0.934, 0.9198, 0.903, 0.8829, 0.8586,
               0.8284, 0.7899, 0.7393, 0.6696, 0.5677, 0.4043, 0.1]
    np.testing.assert_allclose(S.shifted_uniform_schedule(20, 6144), spec_20, atol=5e-5)
    np.testing.assert_allclose(S.linear_quadratic_schedule(8), [1.0, 0.9938, 0.9875, 0.9812, 0.975, 0.9094, 0.725, 0.4219],
                               atol=5e-5)
    lq30 = S.linear_quadratic_schedule(30)
    np.testing.assert_allclose(lq30[:16], 1.0 - np.arange(16) / 600, atol=1e-6)
    np.testing.assert_allclose(lq30[16:], [0.9691, 0.9548, 0.932, 0.9008, 0.8611, 0.813, 0.7564, 0.6914, 0.618, 0.5361,
                                           0.4458, 0.347, 0.2398, 0.1241], atol=5e-5)
    # 13B guidance_timesteps are entries of the 30-step schedule; distilled lists of the 8-step one.
    for g in [0.9933, 0.985, 0.9767, 0.9008, 0.618]:
        assert np.min(np.abs(lq30 - g)) < 5e-5
    distilled = S.explicit_schedule([1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725])
    np.testing.assert_allclose(distilled, S.linear_quadratic_schedule(8)[:7], atol=1.5e-4)
    assert abs(S.shifted_uniform_schedule(20, 6144)[0] - 1.0) < 1e-7


def test_skip_steps_matches_official_retrieve_timesteps():
    sch = RectifiedFlowScheduler(sampler="LinearQuadratic")
    ref, n = retrieve_timesteps(sch, 30, "cpu", None, skip_initial_inference_steps=17, skip_final_inference_steps=3,
                                samples_shape=(1, 128, 2, 4, 4))
    ours = S.skip_steps(S.linear_quadratic_schedule(30), initial=17, final=3)
    assert n == len(ours) == 10
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="less than the number of steps"):
        S.skip_steps(ours, initial=5, final=5)


def test_schedule_from_disk_configs(tmp_path):
    # diffusers folder layout, written by diffusers itself.
    sch = FlowMatchEulerDiscreteScheduler.from_config(DIFFUSERS_SCHEDULER_CONFIG)
    sch.save_pretrained(tmp_path / "pipe" / "scheduler")
    cfg = S.load_scheduler_config(tmp_path / "pipe")
    np.testing.assert_allclose(S.schedule_from_config(cfg, 20, 6144), _diffusers_sigmas(cfg, 20, 6144)[0][:-1], atol=1e-6)
    # official single file: metadata "config" with a "scheduler" section, read by the official loader too.
    meta = {"scheduler": {**OURS_SCHEDULER_CONFIG, "sampler": "LinearQuadratic"}, "allowed_inference_steps": [1.0, 0.9094]}
    path = tmp_path / "ltxv.safetensors"
    save_file({"dummy": np.zeros((1,), np.float32)}, path, metadata={"config": json.dumps(meta)})
    cfg = S.load_scheduler_config(path)
    assert cfg["allowed_inference_steps"] == [1.0, 0.9094]
    ref = RectifiedFlowScheduler.from_pretrained(path)
    ref.set_timesteps(8, samples_shape=(1, 128, 3, 16, 22))
    np.testing.assert_allclose(S.schedule_from_config(cfg, 8, 3 * 16 * 22), ref.timesteps.numpy(), atol=1e-6)
    np.testing.assert_allclose(S.schedule_from_config(json.dumps(meta), 8, 3 * 16 * 22), ref.timesteps.numpy(), atol=1e-6)


def test_static_shift_and_0_9_5_diffusers_config():
    # diffusers converts 0.9.5 with no dynamic shift (uniform + terminal stretch); also a static shift.
    for cfg in ({**DIFFUSERS_SCHEDULER_CONFIG, "use_dynamic_shifting": False},
                {**DIFFUSERS_SCHEDULER_CONFIG, "use_dynamic_shifting": False, "shift": 3.0, "shift_terminal": None}):
        np.testing.assert_allclose(S.schedule_from_config(cfg, 12, 777), _diffusers_sigmas(cfg, 12, 777)[0][:-1], atol=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least 2 steps"):
        S.shifted_uniform_schedule(1, 4096)  # both references return NaN here
    with pytest.raises(ValueError, match="divided by 1000"):
        S.explicit_schedule([1000, 993, 725])
    with pytest.raises(ValueError, match="strictly descending"):
        S.explicit_schedule([0.5, 0.9])
    with pytest.raises(ValueError, match="positive integer"):
        S.linear_quadratic_schedule(0)
    with pytest.raises(ValueError, match="unsupported scheduler class 'DDIMScheduler'"):
        S.schedule_from_config({"_class_name": "DDIMScheduler"}, 10, 100)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        S.schedule_from_config({**DIFFUSERS_SCHEDULER_CONFIG, "use_karras_sigmas": True}, 10, 100)
    with pytest.raises(ValueError, match="not allowed by this checkpoint"):
        S.check_allowed_timesteps(S.linear_quadratic_schedule(8), [1.0, 0.9937])
    S.check_allowed_timesteps(S.explicit_schedule([1.0, 0.9094]), [1.0, 0.9937, 0.9094])
