"""The rectified-flow sampler: Euler step with per-token times, and ONE jitted denoising loop.

ltx_spec.md sections 4.4, 4.5, 5.1-5.2. `denoise` runs all steps in one `lax.fori_loop`: the
schedule, the guidance scales, the STG block masks, the conditioning and the RNG key are traced
arrays, so a new schedule of the same length, new scales or a new seed reuse the compiled program.
The branches of guidance (uncond / cond / perturbed) are batched into one model call.

The model stays abstract: `model_fn(params, latents, timestep, text_embeds, text_mask,
skip_layer_mask) -> velocity`, a pure function of its arrays (`transformer_model_fn` builds one
from a `Transformer3D` through nnx.split/merge).

Latents come as a grid [B, F, H, W, C] or as tokens [B, L, C] with explicit positions
(`Conditioning.positions`, handed to the model as `positions=`): the official pipeline appends
conditioning tokens at other frames with their own coordinates and per-token times. Parameters are an argument rather than closed
over, so that they are not baked into the program as constants.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx, struct

from ltx_jax.diffusion.flow import add_noise, broadcast_time
from ltx_jax.diffusion.guidance import Guidance, combine

# The official scheduler's tolerance when looking for the next lower schedule value, and the
# pipeline's when deciding which conditioning tokens are being denoised.
T_EPS = 1e-6

ModelFn = Callable[..., jax.Array]


def next_lower_sigma(sigmas: jax.Array, t: jax.Array) -> jax.Array:
    """Per element of `t`, the largest entry of [sigmas..., 0] strictly below t - 1e-6 (0 if none).

    Args:
      sigmas: [n] step times (the terminal 0 is implied).
      t: times of any shape (scalar, [B] or per token [B, F, H, W]).
    """
    padded = jnp.concatenate([jnp.asarray(sigmas, jnp.float32), jnp.zeros((1,), jnp.float32)])
    t = jnp.asarray(t, jnp.float32)
    grid = padded.reshape((-1,) + (1,) * t.ndim)  # [n+1] -> [n+1, 1, ...]
    return jnp.max(jnp.where(grid < t[None] - T_EPS, grid, 0.0), axis=0)


def euler_step(x: jax.Array, velocity: jax.Array, t, sigmas: jax.Array, *,
               noise: jax.Array | None = None) -> jax.Array:
    """One rectified-flow step from time t to the next lower schedule time.

    Deterministic: x - (t - t_next) v. Stochastic (when `noise` is given, official
    `stochastic_sampling`): x0 = x - t v, then x_next = (1 - t_next) x0 + t_next eps. A token whose
    t is already 0 (hard conditioning) has dt = 0 and stays fixed.

    Args:
      x: [B, F, H, W, C] latents (or tokens [B, L, C]).
      velocity: same shape, eps - x0.
      t: scalar, [B] or per token [B, F, H, W] ([B, L]).
      sigmas: [n] the schedule (terminal 0 implied).
      noise: optional fresh eps, same shape as x.
    """
    t = jnp.asarray(t, jnp.float32)
    dt = t - next_lower_sigma(sigmas, t)
    v = velocity.astype(jnp.float32)
    if noise is None:
        return x - broadcast_time(dt, x) * v
    x0 = x - broadcast_time(t, x) * v
    return add_noise(x0, noise, t - dt)


@struct.dataclass
class Conditioning:
    """What the denoising loop conditions on (a pytree of arrays).

    Attributes:
      text_embeds: [B, S, caption_channels] positive prompt.
      text_mask: [B, S] 1 keeps a text token.
      neg_text_embeds, neg_text_mask: the negative prompt, required when CFG is used.
      conditioning_mask: optional [B, F, H, W] ([B, L] for tokens) strength per token: 0 is
        generated freely, 1 is a hard condition kept fixed (t = 0), s in between enters denoising
        once t < 1 - s.
      init_latents: [B, F, H, W, C] ([B, L, C]) the starting latents, for image-conditioning noise.
      image_cond_noise_scale: scalar s; at each step tokens with mask ~ 1 are reset to
        init + s eps t^2 (official `image_cond_noise_scale`; 0 turns it off; eps from
        `step_keys`).
      positions: [B, L, 3] token positions in (seconds, pixels, pixels); required for token
        latents [B, L, C], optional for a grid (it then overrides the model's grid positions).
    """

    text_embeds: jax.Array
    text_mask: jax.Array
    neg_text_embeds: jax.Array | None = None
    neg_text_mask: jax.Array | None = None
    conditioning_mask: jax.Array | None = None
    init_latents: jax.Array | None = None
    image_cond_noise_scale: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.float32))
    positions: jax.Array | None = None


def step_keys(key: jax.Array, step: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """(image-conditioning noise key, stochastic-sampling noise key) of loop step `step`.

    Both draws are `jax.random.normal(k, latents.shape)`; exposed so that tests can hand a
    reference implementation the same eps.
    """
    aug_key, step_noise_key = jax.random.split(jax.random.fold_in(key, step))
    return aug_key, step_noise_key


def _check(latents, sigmas, cond: Conditioning, guidance: Guidance):
    if latents.ndim not in (3, 5):
        raise ValueError(f"latents must be [B, F, H, W, C] or tokens [B, L, C], got shape {tuple(latents.shape)}")
    if latents.ndim == 3 and cond.positions is None:
        raise ValueError("token latents [B, L, C] need cond.positions [B, L, 3]")
    if cond.positions is not None:
        length = latents.shape[1] if latents.ndim == 3 else latents.shape[1] * latents.shape[2] * latents.shape[3]
        if tuple(cond.positions.shape) != (latents.shape[0], length, 3):
            raise ValueError(f"cond.positions must be [B, L, 3] = {[latents.shape[0], length, 3]}, "
                             f"got {list(cond.positions.shape)}")
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"sigmas must be a non-empty [n] schedule, got shape {tuple(sigmas.shape)}")
    n = sigmas.shape[0]
    for name in ("cfg_scale", "stg_scale", "rescale"):
        if getattr(guidance, name).shape != (n,):
            raise ValueError(f"guidance.{name} has shape {getattr(guidance, name).shape}, the schedule has {n} steps")
    if guidance.use_cfg and cond.neg_text_embeds is None:
        raise ValueError("CFG is on (guidance.use_cfg) but cond.neg_text_embeds is missing")
    if guidance.use_stg and (guidance.stg_block_mask is None or guidance.stg_block_mask.shape[0] != n):
        raise ValueError(f"STG is on but guidance.stg_block_mask is not [n={n}, num_layers]")
    b = latents.shape[0]
    if cond.text_embeds.shape[0] != b:
        raise ValueError(f"text_embeds batch {cond.text_embeds.shape[0]} != latents batch {b}")
    if cond.conditioning_mask is not None and tuple(cond.conditioning_mask.shape) != tuple(latents.shape[:-1]):
        raise ValueError(
            f"conditioning_mask must be per token {list(latents.shape[:-1])}, got {list(cond.conditioning_mask.shape)}"
        )


def _denoise(model_fn: ModelFn, params, latents, sigmas, cond: Conditioning, guidance: Guidance, key,
             stochastic: bool):
    latents = jnp.asarray(latents, jnp.float32)
    sigmas = jnp.asarray(sigmas, jnp.float32)
    b = latents.shape[0]
    nb = guidance.num_branches
    mask = cond.conditioning_mask
    init = latents if cond.init_latents is None else jnp.asarray(cond.init_latents, jnp.float32)

    # Batched branches: [uncond, cond, perturbed] (only those in use).
    texts = ([cond.neg_text_embeds] if guidance.use_cfg else []) + [cond.text_embeds] * (1 + guidance.use_stg)
    tmasks = ([cond.neg_text_mask] if guidance.use_cfg else []) + [cond.text_mask] * (1 + guidance.use_stg)
    text = jnp.concatenate(texts, axis=0)  # [nb*B, S, D]
    text_mask = jnp.concatenate([jnp.asarray(m, jnp.float32) for m in tmasks], axis=0)  # [nb*B, S]
    extra = {}
    if cond.positions is not None:
        extra["positions"] = jnp.concatenate([jnp.asarray(cond.positions, jnp.float32)] * nb, axis=0)  # [nb*B, L, 3]

    def body(i, x):
        t = sigmas[i]
        aug_key, step_noise_key = step_keys(key, i)
        if mask is not None:
            # Noise augmentation of the hard-conditioning tokens (official pipeline), fresh eps each step.
            s = cond.image_cond_noise_scale
            eps = jax.random.normal(aug_key, x.shape, jnp.float32)
            hard = broadcast_time(mask, x) > 1.0 - T_EPS
            x = jnp.where(hard & (s > 0.0), init + s * eps * t**2, x)
            t_model = jnp.minimum(t, 1.0 - mask)  # [B, F, H, W] or [B, L]
        else:
            t_model = jnp.broadcast_to(t, (b,))  # [B]

        x_in = jnp.concatenate([x] * nb, axis=0)  # [nb*B, F, H, W, C] or [nb*B, L, C]
        t_in = jnp.concatenate([t_model] * nb, axis=0)
        skip = None
        if guidance.use_stg:
            num_layers = guidance.stg_block_mask.shape[1]
            keep = jnp.ones((num_layers, (nb - 1) * b), jnp.float32)
            perturb = jnp.broadcast_to(guidance.stg_block_mask[i][:, None], (num_layers, b))
            skip = jnp.concatenate([keep, perturb], axis=1)  # [num_layers, nb*B]
        v_all = model_fn(params, x_in, t_in, text, text_mask, skip, **extra).astype(jnp.float32)
        chunks = jnp.split(v_all, nb, axis=0)
        v_u = chunks[0] if guidance.use_cfg else None
        v_c = chunks[int(guidance.use_cfg)]
        v_p = chunks[-1] if guidance.use_stg else None
        v = combine(v_c, v_u, v_p, cfg_scale=guidance.cfg_scale[i], stg_scale=guidance.stg_scale[i],
                    rescale=guidance.rescale[i], cfg_star=guidance.cfg_star)

        noise = jax.random.normal(step_noise_key, x.shape, jnp.float32) if stochastic else None
        x_next = euler_step(x, v, t_model, sigmas, noise=noise)
        if mask is not None:
            # Only tokens whose conditioning time has been reached are updated.
            active = broadcast_time(t - T_EPS < 1.0 - mask, x)
            x_next = jnp.where(active, x_next, x)
        return x_next

    return jax.lax.fori_loop(0, sigmas.shape[0], body, latents)


_denoise_jit = jax.jit(_denoise, static_argnames=("model_fn", "stochastic"))


def denoise(
    model_fn: ModelFn,
    params,
    latents: jax.Array,
    sigmas: jax.Array,
    cond: Conditioning,
    guidance: Guidance,
    *,
    key: jax.Array | None = None,
    stochastic: bool = False,
) -> jax.Array:
    """Runs the whole sampling loop as one jitted program.

    Args:
      model_fn: `model_fn(params, latents [B', F, H, W, C], timestep [B'] or [B', F, H, W] in [0, 1],
        text_embeds [B', S, D], text_mask [B', S], skip_layer_mask [num_layers, B'] or None)
        -> velocity [B', F, H, W, C]`, B' = branches x B; with `cond.positions` it is also given
        `positions=[B', L, 3]` (and latents may be tokens [B', L, C], timesteps [B', L]). A static
        argument: pass the same function object each time (e.g. from `transformer_model_fn`) or
        the loop recompiles.
      params: pytree of arrays handed to `model_fn` (traced).
      latents: [B, F, H, W, C] starting latents (noise, with conditioning tokens written in), or
        tokens [B, L, C] (with `cond.positions`).
      sigmas: [n] step times, descending; the last step goes to 0.
      cond: the `Conditioning`.
      guidance: per-step `Guidance` for n steps.
      key: PRNG key for stochastic sampling and image-conditioning noise (default key 0).
      stochastic: official `stochastic_sampling` (re-noise to t_next with fresh eps each step).

    Returns:
      float32 final latents (t = 0) in the input's form.
    """
    latents = jnp.asarray(latents)
    sigmas = jnp.asarray(sigmas, jnp.float32)
    _check(latents, sigmas, cond, guidance)
    key = jax.random.key(0) if key is None else key
    return _denoise_jit(model_fn, params, latents, sigmas, cond, guidance, key, stochastic)


@functools.lru_cache(maxsize=32)
def _transformer_fn(graphdef, skip_layer_strategy: str, vae_scale: tuple[int, int, int]) -> ModelFn:
    def model_fn(params, latents, timestep, text_embeds, text_mask, skip_layer_mask, positions=None):
        state, frame_rate = params
        model = nnx.merge(graphdef, state)
        return model(latents, timestep, text_embeds, text_mask, frame_rate=frame_rate, vae_scale=vae_scale,
                     positions=positions, skip_layer_mask=skip_layer_mask, skip_layer_strategy=skip_layer_strategy)

    return model_fn


def transformer_model_fn(model: nnx.Module, *, frame_rate: float = 25.0,
                         skip_layer_strategy: str = "attention_values",
                         vae_scale: Sequence[int] = (8, 32, 32)) -> tuple[ModelFn, tuple]:
    """(model_fn, params) for `denoise` from a `Transformer3D`.

    The function is cached per (graph, strategy, vae_scale), so repeated calls reuse the compiled
    loop; the weights and the frame rate travel in `params` as traced arrays.
    """
    graphdef, state = nnx.split(model)
    fn = _transformer_fn(graphdef, skip_layer_strategy, tuple(int(v) for v in vae_scale))
    return fn, (state, jnp.asarray(frame_rate, jnp.float32))
