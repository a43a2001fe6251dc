"""The optimizer: optax AdamW with warmup + cosine/constant schedule, clipping, decay mask, EMA.

Parameters and optimizer state stay float32 whatever the compute dtype. Non-finite updates are
skipped by the train step itself (it needs the counters), not by an optax wrapper.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ltx_jax.config import OptimConfig


def learning_rate(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then constant or cosine decay to `lr * end_lr_ratio`."""
    warmup = max(0, min(cfg.warmup_steps, total_steps))
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, max(1, total_steps - warmup), alpha=cfg.end_lr_ratio)
    else:
        raise ValueError(f"unknown optim.schedule {cfg.schedule!r}; valid: ['constant', 'cosine']")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def decay_mask(cfg: OptimConfig):
    """A function params -> bool pytree: True where weight decay applies.

    Matrices get decay; 1-D parameters (biases, norm scales) and any path containing one of
    `cfg.no_decay` do not.
    """

    def mask(params):
        def keep(path, p):
            name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            return p.ndim >= 2 and not any(s in name for s in cfg.no_decay)

        return jax.tree_util.tree_map_with_path(keep, params)

    return mask


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW on the schedule."""
    parts = []
    if cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(
        optax.adamw(learning_rate(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                    weight_decay=cfg.weight_decay, mask=decay_mask(cfg))
    )
    return optax.chain(*parts)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """ema <- decay * ema + (1 - decay) * params, in float32."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(jnp.float32), ema, params)


def tree_norm(tree: Any) -> jax.Array:
    """Global L2 norm of a pytree, float32."""
    return optax.global_norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))

