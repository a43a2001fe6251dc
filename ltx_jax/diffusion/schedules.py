"""Inference sigma schedules (ltx_spec.md section 4.3), computed on the host in float64.

A schedule is a float32 numpy array [n] of the times the n steps start from, descending in (0, 1].
The step after the last one always goes to 0 (both references append 0), so the terminal zero is
NOT part of the array.

- 0.9.0 / 0.9.1: uniform grid, SD3/Flux token-count shift, stretched so the last value is 0.1
  (`shifted_uniform_schedule`; diffusers FlowMatchEulerDiscreteScheduler with LTX's config, the
  official RectifiedFlowScheduler with shifting "SD3").
- 0.9.5+: `linear_quadratic_schedule` (official sampler "LinearQuadratic").
- distilled checkpoints: explicit lists (`explicit_schedule`).
- `schedule_from_config` reads a diffusers `scheduler_config.json` or the official single file's
  "scheduler" metadata section; `load_scheduler_config` finds one on disk.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ltx_jax.diffusion.flow import token_shift

# diffusers' calculate_shift defaults, used by LTXPipeline when a config lacks the keys.
DIFFUSERS_SHIFT_DEFAULTS = dict(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)


def _check_steps(num_steps) -> int:
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r} (e.g. 1, 8, 40)")
    return int(num_steps)


def uniform_sigmas(num_steps: int) -> np.ndarray:
    """linspace(1, 1/n, n) in float64: the unshifted grid both references start from."""
    n = _check_steps(num_steps)
    return np.linspace(1.0, 1.0 / n, n)


def time_shift(mu: float, sigmas: np.ndarray, *, kind: str = "exponential") -> np.ndarray:
    """SD3/Flux shift: e^mu / (e^mu + (1/s - 1)) ("exponential") or mu / (mu + (1/s - 1)) ("linear")."""
    s = np.asarray(sigmas, np.float64)
    with np.errstate(divide="ignore"):
        odds = 1.0 / s - 1.0
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + odds)
    if kind == "linear":
        return mu / (mu + odds)
    raise ValueError(f"unknown time_shift_type {kind!r}; valid: 'exponential', 'linear'")


def stretch_to_terminal(sigmas: np.ndarray, terminal: float) -> np.ndarray:
    """Affinely maps 1 - s so that the last value becomes `terminal` (1 stays 1)."""
    if not 0.0 < terminal < 1.0:
        raise ValueError(f"terminal value must be in (0, 1), got {terminal}")
    one_minus = 1.0 - np.asarray(sigmas, np.float64)
    if one_minus[-1] <= 0.0:
        # Both references return NaN here (0 / 0), e.g. for a 1-step uniform schedule.
        raise ValueError(
            f"cannot stretch a schedule ending at {1.0 - one_minus[-1]} to the terminal value {terminal}: "
            f"use at least 2 steps"
        )
    return 1.0 - one_minus * (1.0 - terminal) / one_minus[-1]


def shifted_uniform_schedule(
    num_steps: int,
    num_tokens: int,
    *,
    base_shift: float = 0.95,
    max_shift: float = 2.05,
    base_seq_len: int = 1024,
    max_seq_len: int = 4096,
    shift_terminal: float | None = 0.1,
) -> np.ndarray:
    """The 0.9.0/0.9.1 schedule: uniform grid, token-count shift mu(N), terminal stretch.

    Args:
      num_steps: n.
      num_tokens: latent tokens N = F' H' W' of one sample.
      base_shift, max_shift, base_seq_len, max_seq_len: the line mu(N) (not clamped).
      shift_terminal: value of the last step (None: no stretch).

    Returns:
      [n] float32, starting at 1.0.
    """
    mu = token_shift(num_tokens, min_tokens=base_seq_len, max_tokens=max_seq_len,
                     min_shift=base_shift, max_shift=max_shift)
    sigmas = time_shift(mu, uniform_sigmas(num_steps))
    if shift_terminal:
        sigmas = stretch_to_terminal(sigmas, shift_terminal)
    return sigmas.astype(np.float32)


def linear_quadratic_schedule(num_steps: int, *, threshold_noise: float = 0.025,
                              linear_steps: int | None = None) -> np.ndarray:
    """The official "LinearQuadratic" sampler (0.9.5+): n//2 small linear steps down to
    1 - threshold_noise, then a quadratic reaching 0 one step after the end. [n] float32."""
    n = _check_steps(num_steps)
    if n == 1:
        return np.ones(1, np.float32)
    lin = n // 2 if linear_steps is None else int(linear_steps)
    if not 0 < lin < n:
        raise ValueError(f"linear_steps must be in [1, {n - 1}] for {n} steps, got {linear_steps}")
    # "1 - sigma" rises linearly for `lin` steps, then along a quadratic through (lin, threshold)
    # and (n, 1) whose slope at `lin` continues the linear part.
    quad = n - lin
    step_diff = lin - threshold_noise * n
    a = step_diff / (lin * quad**2)
    b = threshold_noise / lin - 2 * step_diff / quad**2
    c = a * lin**2
    i = np.arange(n, dtype=np.float64)
    rise = np.where(i < lin, i * threshold_noise / lin, a * i**2 + b * i + c)
    return (1.0 - rise).astype(np.float32)


def explicit_schedule(values: Sequence[float]) -> np.ndarray:
    """A given list of times (distilled checkpoints), validated: non-empty, in (0, 1], descending.

    Timesteps on the 0..1000 scale (diffusers docs) must be divided by 1000 first.
    """
    s = np.asarray(list(values), np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"an explicit schedule must be a non-empty list of times, got {values!r}")
    bad = [float(v) for v in s if not 0.0 < v <= 1.0]
    if bad:
        raise ValueError(
            f"schedule times must be in (0, 1] (timesteps on a 0..1000 scale must be divided by 1000); "
            f"got {bad} in {list(map(float, s))}"
        )
    if np.any(np.diff(s) >= 0):
        raise ValueError(f"schedule times must be strictly descending, got {list(map(float, s))}")
    return s.astype(np.float32)


def skip_steps(sigmas: np.ndarray, *, initial: int = 0, final: int = 0) -> np.ndarray:
    """Drops steps from both ends as the official `retrieve_timesteps(skip_initial_inference_steps=,
    skip_final_inference_steps=)`. The kept steps still end at 0 (the last kept step jumps to 0)."""
    n = len(sigmas)
    if initial < 0 or final < 0 or initial + final >= n:
        raise ValueError(
            f"skip_initial ({initial}) and skip_final ({final}) must be >= 0 and sum to less than the "
            f"number of steps ({n})"
        )
    return np.asarray(sigmas, np.float32)[initial: n - final]


def check_allowed_timesteps(sigmas: np.ndarray, allowed: Sequence[float] | None) -> None:
    """Distilled checkpoints list the only times they were trained on; as the official pipeline,
    each step time rounded to 4 decimals must be among them."""
    if allowed is None:
        return
    allowed_r = {round(float(a), 4) for a in allowed}
    bad = [round(float(s), 4) for s in sigmas if round(float(s), 4) not in allowed_r]
    if bad:
        raise ValueError(f"schedule times {bad} are not allowed by this checkpoint; allowed: {sorted(allowed_r, reverse=True)}")


# ---------------------------------------------------------------------------------------------
# From a checkpoint's scheduler config


def _is_official(config: Mapping[str, Any]) -> bool:
    name = config.get("_class_name")
    if name is not None:
        if name == "RectifiedFlowScheduler":
            return True
        if name == "FlowMatchEulerDiscreteScheduler":
            return False
        raise ValueError(
            f"unsupported scheduler class {name!r}; valid: 'FlowMatchEulerDiscreteScheduler' (diffusers), "
            f"'RectifiedFlowScheduler' (official single file)"
        )
    return "sampler" in config or "shifting" in config


def _official_schedule(config: Mapping[str, Any], num_steps: int, num_tokens: int) -> np.ndarray:
    """ltx_video.schedulers.rf.RectifiedFlowScheduler.set_timesteps(num_steps, samples_shape)."""
    n = min(int(config.get("num_train_timesteps", 1000)), num_steps)
    sampler = config.get("sampler") or "Uniform"
    if sampler == "Uniform":
        sigmas = uniform_sigmas(n)
    elif sampler == "LinearQuadratic":
        sigmas = linear_quadratic_schedule(n).astype(np.float64)
    elif sampler == "Constant":
        if config.get("shift") is None:
            raise ValueError("the official 'Constant' sampler needs a 'shift' in the scheduler config")
        sigmas = time_shift(config["shift"], uniform_sigmas(n))
    else:
        raise ValueError(f"unknown official sampler {sampler!r}; valid: 'Uniform', 'LinearQuadratic', 'Constant'")

    shifting = config.get("shifting")
    if shifting == "SD3":
        sigmas = time_shift(token_shift(num_tokens), sigmas)
        if config.get("target_shift_terminal") is not None:
            sigmas = stretch_to_terminal(sigmas, config["target_shift_terminal"])
    elif shifting == "SimpleDiffusion":
        base = config.get("base_resolution") or 32**2
        with np.errstate(divide="ignore"):
            log_snr = 2.0 * np.log(sigmas / (1.0 - sigmas)) + 2.0 * math.log(num_tokens / base)
        sigmas = 1.0 / (1.0 + np.exp(-0.5 * log_snr))
    elif shifting is not None:
        raise ValueError(f"unknown official shifting {shifting!r}; valid: None, 'SD3', 'SimpleDiffusion'")
    return np.asarray(sigmas).astype(np.float32)


def _diffusers_schedule(config: Mapping[str, Any], num_steps: int, num_tokens: int) -> np.ndarray:
    """diffusers LTXPipeline: FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=linspace(1, 1/n, n), mu=...)."""
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"):
        if config.get(key):
            raise ValueError(f"scheduler config sets {key}=true, which LTX-Video never uses and ltx_jax does not support")
    sigmas = uniform_sigmas(num_steps)
    if config.get("use_dynamic_shifting", False):
        get = lambda k: config.get(k, DIFFUSERS_SHIFT_DEFAULTS[k])  # noqa: E731 (diffusers' defaults)
        mu = token_shift(num_tokens, min_tokens=get("base_image_seq_len"), max_tokens=get("max_image_seq_len"),
                         min_shift=get("base_shift"), max_shift=get("max_shift"))
        sigmas = time_shift(mu, sigmas, kind=config.get("time_shift_type", "exponential"))
    else:
        shift = float(config.get("shift", 1.0))
        sigmas = shift * sigmas / (1.0 + (shift - 1.0) * sigmas)
    if config.get("shift_terminal"):
        sigmas = stretch_to_terminal(sigmas, config["shift_terminal"])
    return sigmas.astype(np.float32)


def schedule_from_config(config: Mapping[str, Any] | str, num_steps: int, num_tokens: int) -> np.ndarray:
    """The schedule a checkpoint's own scheduler config gives for `num_steps` at `num_tokens`.

    Args:
      config: a diffusers `scheduler_config.json` dict (FlowMatchEulerDiscreteScheduler), the
        official single file's "scheduler" section (RectifiedFlowScheduler), the whole official
        metadata "config" dict holding a "scheduler" key, or any of these as a JSON string.
      num_steps: number of denoising steps n.
      num_tokens: latent tokens of one sample N = F' H' W' (sets the resolution shift).

    Returns:
      [n] float32 step times (the terminal 0 not included). diffusers' grid follows its
      LTXPipeline, which passes `sigmas=linspace(1, 1/n, n)`.
    """
    if isinstance(config, str):
        config = json.loads(config)
    if "scheduler" in config and isinstance(config["scheduler"], Mapping):
        config = config["scheduler"]
    n = _check_steps(num_steps)
    if int(num_tokens) < 1:
        raise ValueError(f"num_tokens must be positive (F' * H' * W'), got {num_tokens}")
    if _is_official(config):
        return _official_schedule(config, n, int(num_tokens))
    return _diffusers_schedule(config, n, int(num_tokens))


def is_stochastic(config: Mapping[str, Any]) -> bool:
    """Whether a diffusers scheduler config asks for stochastic sampling (`stochastic_sampling`)."""
    return bool(config.get("stochastic_sampling", False))


def load_scheduler_config(path: str | os.PathLike) -> dict:
    """Reads the scheduler config of a checkpoint on disk.

    `path` is a diffusers pipeline folder (reads `scheduler/scheduler_config.json`), a `scheduler/`
    folder, a `scheduler_config.json` file, or an official single `.safetensors` file (reads the
    "scheduler" section of its metadata "config"; its "allowed_inference_steps", when present, is
    copied into the returned dict under that name).
    """
    from ltx_jax.convert.safetensors_io import CheckpointError, SafetensorsFile

    p = Path(path)
    if p.is_dir():
        for cand in (p / "scheduler" / "scheduler_config.json", p / "scheduler_config.json"):
            if cand.is_file():
                return json.loads(cand.read_text())
        raise CheckpointError(f"{p}: no scheduler/scheduler_config.json or scheduler_config.json in this folder")
    if p.suffix == ".json" and p.is_file():
        return json.loads(p.read_text())
    if p.is_file():
        meta = SafetensorsFile(p).metadata
        if "config" not in meta:
            raise CheckpointError(f"{p}: no 'config' in the safetensors metadata (Lightricks single-file layout)")
        full = json.loads(meta["config"])
        if "scheduler" not in full:
            raise CheckpointError(f"{p}: the metadata config has no 'scheduler' section")
        config = dict(full["scheduler"])
        if full.get("allowed_inference_steps") is not None:
            config["allowed_inference_steps"] = full["allowed_inference_steps"]
        return config
    raise CheckpointError(f"no such scheduler config: {p}")
