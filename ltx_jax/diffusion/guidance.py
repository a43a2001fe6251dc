"""Guidance: CFG, CFG-star rescale, STG and guidance rescale (ltx_spec.md sections 3.7, 4.5).

The formulas follow the official `LTXVideoPipeline.__call__` (ltx_video/pipelines/
pipeline_ltx_video.py) and diffusers' `LTXPipeline` (`rescale_noise_cfg`). Every knob is a per-step
array so the jitted sampling loop takes them as traced values: changing a scale, a per-interval
schedule or an STG block list does not recompile. Only the set of batched branches
(uncond / cond / perturbed) is static, because it sets the model's batch size.

Batch order of the model call: [uncond (B), cond (B), perturbed (B)], each present only if used.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Guidance:
    """Per-step guidance settings for a schedule of n steps (a pytree; scales are traced).

    Attributes:
      cfg_scale: [n] classifier-free guidance weight w; CFG acts at a step only where w > 1.
      stg_scale: [n] spatio-temporal guidance scale; STG acts at a step only where it is > 0.
      rescale: [n] guidance-rescale amount phi; 0 turns it off at a step. v <- v (phi std(v_c)/std(v)
        + 1 - phi), per sample. (Official semantics gate it differently; `official_guidance` maps them.)
      stg_block_mask: [n, num_layers] for the perturbed branch, 1 runs a block normally, 0 perturbs
        it; None when STG is off.
      cfg_star: scalar, nonzero applies the CFG-star rescale of the unconditional velocity.
      use_cfg: static, whether the unconditional branch is batched in.
      use_stg: static, whether the perturbed branch is batched in.
    """

    cfg_scale: jax.Array
    stg_scale: jax.Array
    rescale: jax.Array
    stg_block_mask: jax.Array | None = None
    cfg_star: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.float32))
    use_cfg: bool = struct.field(pytree_node=False, default=False)
    use_stg: bool = struct.field(pytree_node=False, default=False)

    @property
    def num_branches(self) -> int:
        return 1 + int(self.use_cfg) + int(self.use_stg)


def _per_step(value, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, np.float32)
    if arr.ndim == 0:
        return np.full((n,), arr, np.float32)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or one value per step ({n}), got shape {arr.shape}")
    return arr


def _block_mask(block_lists: Sequence[Sequence[int]], active: np.ndarray, num_layers: int) -> np.ndarray:
    """[n, num_layers] keep-mask from one block list per step; blocks checked where STG is active."""
    mask = np.ones((len(block_lists), num_layers), np.float32)
    for i, blocks in enumerate(block_lists):
        if not active[i]:
            continue  # e.g. the 2B 0.9.8 distilled config lists block 42 with STG scale 0: inert
        bad = [b for b in blocks if not 0 <= int(b) < num_layers]
        if bad:
            raise ValueError(
                f"STG blocks {bad} at step {i} do not exist: the model has {num_layers} blocks "
                f"(valid indices 0..{num_layers - 1})"
            )
        mask[i, [int(b) for b in blocks]] = 0.0
    return mask


def make_guidance(
    num_steps: int,
    *,
    cfg_scale=1.0,
    stg_scale=0.0,
    rescale=0.0,
    stg_blocks: Sequence[int] | Sequence[Sequence[int]] | None = None,
    num_layers: int | None = None,
    cfg_star: bool = False,
    use_cfg: bool | None = None,
    use_stg: bool | None = None,
) -> Guidance:
    """Builds a Guidance from scalars or per-step values (our own semantics, see `Guidance`).

    Args:
      num_steps: n.
      cfg_scale, stg_scale, rescale: scalars or [n] per-step values.
      stg_blocks: blocks perturbed in the STG branch: one list for all steps or one list per step.
      num_layers: number of DiT blocks (needed when STG is used).
      cfg_star: apply the CFG-star rescale.
      use_cfg, use_stg: force the branch set (so that runs with and without guidance at some
        setting share one compiled program); default: whether any step needs the branch.
    """
    cfg = _per_step(cfg_scale, num_steps, "cfg_scale")
    stg = _per_step(stg_scale, num_steps, "stg_scale")
    phi = _per_step(rescale, num_steps, "rescale")
    use_cfg = bool(np.any(cfg > 1.0)) if use_cfg is None else bool(use_cfg)
    use_stg = bool(np.any(stg > 0.0)) if use_stg is None else bool(use_stg)
    if np.any(cfg > 1.0) and not use_cfg:
        raise ValueError(f"cfg_scale {cfg.tolist()} needs the unconditional branch but use_cfg=False")
    if np.any(stg > 0.0) and not use_stg:
        raise ValueError(f"stg_scale {stg.tolist()} needs the perturbed branch but use_stg=False")
    block_mask = None
    if use_stg:
        if num_layers is None:
            raise ValueError("num_layers (the DiT's block count) is required when STG is used")
        blocks = [] if stg_blocks is None else list(stg_blocks)
        per_step = blocks and not isinstance(blocks[0], (int, np.integer))
        if per_step and len(blocks) != num_steps:
            raise ValueError(f"stg_blocks has {len(blocks)} per-step lists for {num_steps} steps")
        lists = blocks if per_step else [blocks] * num_steps
        block_mask = jnp.asarray(_block_mask(lists, stg > 0.0, num_layers))
    return Guidance(
        cfg_scale=jnp.asarray(cfg), stg_scale=jnp.asarray(stg), rescale=jnp.asarray(phi),
        stg_block_mask=block_mask, cfg_star=jnp.asarray(float(cfg_star), jnp.float32),
        use_cfg=use_cfg, use_stg=use_stg,
    )


def interval_indices(sigmas: Sequence[float], guidance_timesteps: Sequence[float]) -> list[int]:
    """Per step, the index of its guidance interval: the first i with guidance_timesteps[i] <= t
    (compared in float32, as the official pipeline), else the last interval."""
    gts = np.asarray(guidance_timesteps, np.float32)
    out = []
    for t in np.asarray(sigmas, np.float32):
        hits = np.nonzero(gts <= t)[0]
        out.append(int(hits[0]) if hits.size else len(gts) - 1)
    return out


def official_guidance(
    sigmas: Sequence[float],
    *,
    guidance_scale: float | Sequence[float] = 1.0,
    stg_scale: float | Sequence[float] = 0.0,
    rescaling_scale: float | Sequence[float] = 1.0,
    skip_block_list: Sequence[int] | Sequence[Sequence[int]] | None = None,
    guidance_timesteps: Sequence[float] | None = None,
    cfg_star_rescale: bool = False,
    num_layers: int | None = None,
    use_cfg: bool | None = None,
    use_stg: bool | None = None,
) -> Guidance:
    """Guidance with the official pipeline's argument names and meaning.

    A list value for `guidance_scale`, `stg_scale`, `rescaling_scale` or a list of lists for
    `skip_block_list` gives one value per interval of `guidance_timesteps` (13B configs). The
    official rescale acts only where STG is active and `rescaling_scale != 1`.
    """
    n = len(sigmas)
    mapping = interval_indices(sigmas, guidance_timesteps) if guidance_timesteps else None

    def per_step(v, name):
        if isinstance(v, (list, tuple, np.ndarray)):
            if mapping is None:
                raise ValueError(f"{name} is a per-interval list {list(v)} but guidance_timesteps is not given")
            if len(v) != len(guidance_timesteps):
                raise ValueError(f"{name} has {len(v)} values for {len(guidance_timesteps)} guidance intervals")
            return np.asarray([v[j] for j in mapping], np.float32)
        return np.full((n,), v, np.float32)

    cfg = per_step(guidance_scale, "guidance_scale")
    stg = per_step(stg_scale, "stg_scale")
    r = per_step(rescaling_scale, "rescaling_scale")
    phi = np.where((stg > 0.0) & (r != 1.0), r, 0.0).astype(np.float32)
    blocks = skip_block_list
    if blocks is not None and len(blocks) and isinstance(blocks[0], (list, tuple)):
        if mapping is None:
            raise ValueError("skip_block_list is a per-interval list of lists but guidance_timesteps is not given")
        blocks = [list(blocks[j]) for j in mapping]
    return make_guidance(n, cfg_scale=cfg, stg_scale=stg, rescale=phi, stg_blocks=blocks, num_layers=num_layers,
                         cfg_star=cfg_star_rescale, use_cfg=use_cfg, use_stg=use_stg)


def diffusers_guidance(num_steps: int, guidance_scale: float = 3.0, guidance_rescale: float = 0.0,
                       *, use_cfg: bool | None = None) -> Guidance:
    """diffusers LTXPipeline: CFG where guidance_scale > 1, then `rescale_noise_cfg` when > 0."""
    phi = guidance_rescale if guidance_scale > 1.0 else 0.0
    return make_guidance(num_steps, cfg_scale=guidance_scale, rescale=phi, use_cfg=use_cfg)


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)  # [B, F, H, W, C] -> [B, F*H*W*C]


def _per_sample(v: jax.Array, ref: jax.Array) -> jax.Array:
    return v.reshape(v.shape + (1,) * (ref.ndim - 1))  # [B] -> [B, 1, ..., 1]


def combine(
    v_cond: jax.Array,
    v_uncond: jax.Array | None,
    v_perturbed: jax.Array | None,
    *,
    cfg_scale,
    stg_scale,
    rescale,
    cfg_star=0.0,
) -> jax.Array:
    """One step's guided velocity from the branch outputs (float32, shapes [B, ...]).

    Official order: CFG (optionally with the CFG-star projection of v_uncond), then STG on top
    (from v_cond when CFG is off), then the std rescale against v_cond. Scales are traced scalars;
    a branch that is switched off at this step leaves the result bit-identical to not running it.
    """
    v_c = v_cond.astype(jnp.float32)
    v = v_c
    if v_uncond is not None:
        v_u = v_uncond.astype(jnp.float32)
        dot = jnp.sum(_flat(v_c) * _flat(v_u), axis=1)  # [B]
        alpha = dot / (jnp.sum(jnp.square(_flat(v_u)), axis=1) + 1e-8)
        v_u = jnp.where(jnp.asarray(cfg_star) != 0, _per_sample(alpha, v_u) * v_u, v_u)
        v = jnp.where(cfg_scale > 1.0, v_u + cfg_scale * (v_c - v_u), v_c)
    if v_perturbed is not None:
        v = jnp.where(stg_scale > 0.0, v + stg_scale * (v_c - v_perturbed.astype(jnp.float32)), v)
    # Unbiased std per sample, as torch's Tensor.std.
    ratio = jnp.std(_flat(v_c), axis=1, ddof=1) / jnp.std(_flat(v), axis=1, ddof=1)  # [B]
    factor = _per_sample(rescale * ratio + (1.0 - rescale), v)
    return jnp.where(rescale != 0.0, v * factor, v)
