"""Rectified flow: noising, velocity target, masked loss and training timestep samplers.

ltx_spec.md section 4.1-4.2. Time `t` (sigma) is in [0, 1] with 1 pure noise:
x_t = (1 - t) x0 + t eps, and the model predicts the velocity v = eps - x0, so that
x0 = x_t - t v. Arrays are channels-last latents [B, F, H, W, C]; a time is a scalar, one value per
sample [B], or one per token [B, F, H, W].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# LTX-Video-Trainer's token-count shift (timestep_samplers.py), the same line as the 0.9.0/0.9.1
# inference schedule's resolution shift: mu(N) = 0.95 at 1024 tokens, 2.05 at 4096, not clamped.
MIN_TOKENS, MAX_TOKENS = 1024, 4096
MIN_SHIFT, MAX_SHIFT = 0.95, 2.05


def token_shift(
    num_tokens,
    *,
    min_tokens: int = MIN_TOKENS,
    max_tokens: int = MAX_TOKENS,
    min_shift: float = MIN_SHIFT,
    max_shift: float = MAX_SHIFT,
):
    """The resolution shift mu(N), linear in the token count N = F' H' W' and not clamped.

    Works on Python numbers (float64 arithmetic) and on arrays alike.
    """
    slope = (max_shift - min_shift) / (max_tokens - min_tokens)
    return min_shift + slope * (num_tokens - min_tokens)


def broadcast_time(t, x: jax.Array) -> jax.Array:
    """Appends unit axes to a time so it broadcasts against `x` (scalar, [B] or [B, F, H, W])."""
    t = jnp.asarray(t, jnp.float32)
    if t.ndim > x.ndim or tuple(t.shape) != tuple(x.shape[: t.ndim]):
        raise ValueError(
            f"time of shape {tuple(t.shape)} does not match latents {tuple(x.shape)}: it must be a scalar, "
            f"[B] = [{x.shape[0]}] or per token {list(x.shape[:-1])}"
        )
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def add_noise(x0: jax.Array, noise: jax.Array, t) -> jax.Array:
    """x_t = (1 - t) x0 + t eps, with `t` a scalar, per sample [B] or per token [B, F, H, W]."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have the same shape")
    t = broadcast_time(t, x0)
    return (1.0 - t) * x0 + t * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
    """The rectified-flow target v = eps - x0 (independent of t)."""
    return noise - x0


def denoised_estimate(x_t: jax.Array, velocity: jax.Array, t) -> jax.Array:
    """x0 = x_t - t v, the clean estimate implied by a velocity at time t."""
    return x_t - broadcast_time(t, x_t) * velocity


def flow_loss(prediction: jax.Array, target: jax.Array, loss_mask: jax.Array | None = None) -> jax.Array:
    """Masked MSE in float32, as LTX-Video-Trainer: mean(err^2 * mask) / mean(mask).

    Args:
      prediction: [B, F, H, W, C] predicted velocity (any float dtype; upcast to float32).
      target: same shape, `velocity_target(x0, noise)`.
      loss_mask: optional [B, F, H, W] (per token) or [B, F, H, W, C]; 1 keeps an element in the
        loss, 0 excludes it (clean conditioning tokens). The mean runs over the whole batch, so a
        sample with more kept tokens weighs more, exactly as the trainer's `loss_mask.mean()`.

    Returns:
      Scalar float32 loss. An all-zero mask gives 0 (not NaN).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    err = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
    if loss_mask is None:
        return jnp.mean(err)
    mask = broadcast_time(loss_mask, err) if loss_mask.ndim < err.ndim else jnp.asarray(loss_mask, jnp.float32)
    mask = jnp.broadcast_to(mask, err.shape)
    return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sample_uniform_timesteps(key: jax.Array, batch: int, *, min_t: float = 0.0, max_t: float = 1.0) -> jax.Array:
    """t ~ U[min_t, max_t), one per sample: [B] float32."""
    return jax.random.uniform(key, (batch,), jnp.float32, min_t, max_t)


def sample_shifted_logit_normal_timesteps(key: jax.Array, batch: int, num_tokens, *, std: float = 1.0) -> jax.Array:
    """t = sigmoid(mu(N) + std * n), n ~ N(0, 1): LTX-Video-Trainer's ShiftedLogitNormalTimestepSampler.

    Args:
      key: PRNG key.
      batch: number of samples B.
      num_tokens: latent tokens per sample N = F' H' W' (Python int or traced scalar); the shift
        `token_shift(N)` moves the density toward high noise for long sequences.
      std: standard deviation of the underlying normal.

    Returns:
      [B] float32 in (0, 1).
    """
    mu = token_shift(jnp.asarray(num_tokens, jnp.float32))
    return jax.nn.sigmoid(mu + std * jax.random.normal(key, (batch,), jnp.float32))


def round_timesteps(t: jax.Array, num_train_timesteps: int = 1000) -> jax.Array:
    """round(1000 t) / 1000: the trainer feeds the model integer timesteps round(1000 t)."""
    return jnp.round(t * num_train_timesteps) / num_train_timesteps


TIMESTEP_SAMPLERS = ("uniform", "shifted_logit_normal")


def sample_timesteps(key: jax.Array, batch: int, num_tokens, *, kind: str = "shifted_logit_normal",
                     std: float = 1.0) -> jax.Array:
    """Training timesteps [B] by sampler name (one of TIMESTEP_SAMPLERS)."""
    if kind == "uniform":
        return sample_uniform_timesteps(key, batch)
    if kind == "shifted_logit_normal":
        return sample_shifted_logit_normal_timesteps(key, batch, num_tokens, std=std)
    raise ValueError(f"unknown timestep sampler {kind!r}; valid: {TIMESTEP_SAMPLERS}")
