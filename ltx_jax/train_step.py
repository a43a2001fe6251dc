"""The pure train step and the train state it updates (shared by `train.py` and `train_bench.py`).

The state is a plain dict pytree, so Orbax, optax and jit see nothing exotic:

  params     pure dict of float32 arrays (nnx.to_pure_dict of the Transformer3D state)
  opt_state  optax AdamW state
  ema        EMA of params (present only when optim.ema_decay > 0)
  step       int32, optimizer steps taken (skipped ones included); the next step is step + 1
  skipped    int32, total non-finite updates skipped
  consecutive_skips  int32, skipped in a row (reset by a good step)
  rng        uint32[2], the run's root key data; step s uses fold_in(rng, s)
  null_text  [S, caption] float32 and null_mask [S] int32: the empty-prompt embedding that caption
             dropout substitutes (classifier-free guidance needs the model to know it)

`train_step(state, batch) -> (state, metrics)` is jitted with explicit in/out shardings and the
state donated (`compile_train_step`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ltx_jax import sharding as shd
from ltx_jax.config import RunConfig
from ltx_jax.diffusion.flow import add_noise, flow_loss, sample_timesteps, velocity_target
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.nn.layers import logical_axes
from ltx_jax.optim import ema_update, learning_rate, make_optimizer, tree_norm

# Logical axes of the batch arrays (activation rules shard them).
BATCH_AXES = {
    "latents": ("batch", "frames", "height", "width", "channels"),  # [B, F, H, W, C]
    "text": ("batch", "text_length", "caption"),  # [B, S, caption]
    "text_mask": ("batch", "text_length"),  # [B, S]
}


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Everything static about a run's step: the model graph, the optimizer and the config."""

    cfg: RunConfig
    graphdef: Any
    tx: optax.GradientTransformation
    param_axes: dict  # nested dict like params, leaves: tuples of logical names

    @classmethod
    def create(cls, cfg: RunConfig) -> "Trainer":
        abstract = nnx.eval_shape(lambda: Transformer3D(cfg.model, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(abstract)
        shd.param_specs(state, {}, None)  # raises if a parameter lacks logical axis names
        param_axes = _nested({path: logical_axes(v) for path, v in nnx.to_flat_state(state)})
        return cls(cfg, graphdef, make_optimizer(cfg.optim, max(cfg.steps, 1)), param_axes)

    # --- state -----------------------------------------------------------------------------

    def init_state(self, null_text: jax.Array, null_mask: jax.Array) -> dict:
        """A fresh state (jit this with out_shardings so weights are born sharded)."""
        cfg = self.cfg
        model = Transformer3D(cfg.model, rngs=nnx.Rngs(params=cfg.seed))
        return self.state_from_params(nnx.to_pure_dict(nnx.state(model)), null_text, null_mask)

    def state_from_params(self, params: dict, null_text, null_mask) -> dict:
        cfg = self.cfg
        params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
        state = {
            "params": params,
            "opt_state": self.tx.init(params),
            "step": jnp.zeros((), jnp.int32),
            "skipped": jnp.zeros((), jnp.int32),
            "consecutive_skips": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(cfg.seed)),
            "null_text": jnp.asarray(null_text, jnp.float32),
            "null_mask": jnp.asarray(null_mask, jnp.int32),
        }
        if cfg.optim.ema_decay > 0:
            state["ema"] = params
        return state

    def state_specs(self, abstract_state: dict, mesh: Mesh) -> dict:
        """PartitionSpecs for every leaf of the state: params (and their moments, EMA) by the
        preset's parameter rules, everything else replicated."""
        rules = shd.get_preset(self.cfg.mesh.preset).params
        sizes = dict(mesh.shape)
        p_specs = jax.tree.map(
            lambda axes, a: shd.logical_to_spec(axes, rules, sizes, a.shape),
            self.param_axes, abstract_state["params"], is_leaf=lambda x: isinstance(x, tuple),
        )
        specs = jax.tree.map(lambda _: P(), abstract_state)
        specs["params"] = p_specs
        if "ema" in abstract_state:
            specs["ema"] = p_specs
        specs["opt_state"] = optax.tree_map_params(
            self.tx, lambda _, s: s, abstract_state["opt_state"], p_specs,
            transform_non_params=lambda _: P(), is_leaf=lambda x: isinstance(x, P),
        )
        return specs

    def batch_shardings(self, mesh: Mesh, batch_shapes: dict) -> dict:
        preset = self.cfg.mesh.preset
        return {k: shd.activation_sharding(mesh, preset, BATCH_AXES[k], batch_shapes[k]) for k in BATCH_AXES}

    # --- the step --------------------------------------------------------------------------

    def loss(self, params: dict, batch: dict, rng: jax.Array, null_text, null_mask) -> jax.Array:
        """Rectified-flow loss on one (micro)batch: t2v/i2v, caption dropout, masked MSE."""
        cfg, tc = self.cfg, self.cfg.train
        latents = batch["latents"].astype(jnp.float32)
        b, f, h, w, _ = latents.shape
        k_t, k_noise, k_i2v, k_drop = jax.random.split(rng, 4)
        t = sample_timesteps(k_t, b, f * h * w, kind=tc.timestep_sampler)  # [B]
        # Drawn as [B, F*H*W*C]: partitionable threefry compiles in time growing with the rank
        # (5 s for a 5-D draw on a CPU, 0.4 s for 2-D); the values are the same under any sharding.
        noise = jax.random.normal(k_noise, (b, latents[0].size), jnp.float32).reshape(latents.shape)
        if tc.i2v_prob > 0:  # per-token time: frame 0 of an i2v sample is clean (t = 0)
            i2v = jax.random.bernoulli(k_i2v, tc.i2v_prob, (b,))
            clean = i2v[:, None, None, None] & (jnp.arange(f) == 0)[None, :, None, None]  # [B, F, 1, 1]
            clean = jnp.broadcast_to(clean, (b, f, h, w))
            t_model = jnp.where(clean, 0.0, t[:, None, None, None])  # [B, F, H, W]
            loss_mask = 1.0 - clean.astype(jnp.float32)
        else:
            t_model, loss_mask = t, None
        x_t = add_noise(latents, noise, t_model)
        text, mask = batch["text"], batch["text_mask"]
        if tc.caption_dropout > 0:
            drop = jax.random.bernoulli(k_drop, tc.caption_dropout, (b,))
            text = jnp.where(drop[:, None, None], null_text[None].astype(text.dtype), text)
            mask = jnp.where(drop[:, None], null_mask[None].astype(mask.dtype), mask)
        model = nnx.merge(self.graphdef, params)
        # The model's own activation constraints follow the run's preset whoever traces this.
        with shd.use_preset(cfg.mesh.preset):
            pred = model(x_t, t_model, text, mask, frame_rate=cfg.data.frame_rate)
        pred = shd.constrain(pred, BATCH_AXES["latents"], cfg.mesh.preset)
        return flow_loss(pred, velocity_target(latents, noise), loss_mask)

    def grads(self, params, batch, rng, null_text, null_mask):
        """Loss and float32 gradients, averaged over `train.grad_accum` microbatches."""
        k = self.cfg.train.grad_accum
        grad_fn = jax.value_and_grad(self.loss)
        if k == 1:
            return grad_fn(params, batch, rng, null_text, null_mask)
        b = batch["latents"].shape[0]
        if b % k:
            raise ValueError(f"global batch {b} does not divide into train.grad_accum={k} microbatches")
        # [B, ...] -> [B/k, k, ...] -> [k, B/k, ...]: rows stay on their device (B is sharded).
        micro = jax.tree.map(lambda x: jnp.moveaxis(x.reshape(b // k, k, *x.shape[1:]), 1, 0), batch)

        def body(carry, xs):
            i, mb = xs
            loss, g = grad_fn(params, mb, jax.random.fold_in(rng, i), null_text, null_mask)
            return jax.tree.map(jnp.add, carry, (loss, g)), None

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss, g), _ = jax.lax.scan(body, zero, (jnp.arange(k), micro))
        return jax.tree.map(lambda x: x / k, (loss, g))

    def train_step(self, state: dict, batch: dict) -> tuple[dict, dict]:
        """One optimizer update; a non-finite loss or gradient leaves params and moments alone."""
        cfg = self.cfg
        step = state["step"] + 1
        batch = {k: shd.constrain(v, BATCH_AXES[k], cfg.mesh.preset) for k, v in batch.items()}
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
        loss, grads = self.grads(state["params"], batch, rng, state["null_text"], state["null_mask"])
        if cfg.train.inject_nan_steps:  # test hook: poison the gradients at chosen steps
            poison = jnp.isin(step, jnp.asarray(cfg.train.inject_nan_steps))
            grads = jax.tree.map(lambda g: jnp.where(poison, jnp.nan, g), grads)
        # One scalar test: a NaN or Inf anywhere makes the global norm non-finite (so would a norm
        # overflowing float32, which clipping could not handle either). Per-leaf `all(isfinite)`
        # reductions cost thousands of HLO ops and seconds of compile time.
        grad_norm = tree_norm(grads)
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(loss)
        updates, new_opt = self.tx.update(grads, state["opt_state"], state["params"])
        new_params = optax.apply_updates(state["params"], updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        out = dict(state)
        out["params"] = keep(new_params, state["params"])
        out["opt_state"] = keep(new_opt, state["opt_state"])
        if "ema" in state:
            out["ema"] = keep(ema_update(state["ema"], new_params, cfg.optim.ema_decay), state["ema"])
        out["step"] = step
        skip = (~finite).astype(jnp.int32)
        out["skipped"] = state["skipped"] + skip
        out["consecutive_skips"] = (state["consecutive_skips"] + 1) * skip
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "update_norm": jnp.where(finite, tree_norm(updates), 0.0),
            "param_norm": tree_norm(out["params"]),
            "lr": learning_rate(cfg.optim, max(cfg.steps, 1))(step - 1),
            "skipped": out["skipped"],
            "consecutive_skips": out["consecutive_skips"],
        }
        return out, metrics

    def compile_train_step(self, mesh: Mesh, abstract_state: dict, batch_shapes: dict) -> Callable:
        """`jax.jit(train_step)` with explicit in/out shardings and the state donated.

        Memoised per process on everything the program depends on (see `_program_key`), so
        repeated runs in one process (tests, notebooks, sweeps) reuse one compiled executable.
        """
        key = ("step", self._program_key(mesh, abstract_state), tuple(sorted(batch_shapes.items())))
        if key not in _PROGRAMS:
            state_sh = shd.named(mesh, self.state_specs(abstract_state, mesh))
            batch_sh = self.batch_shardings(mesh, batch_shapes)
            rep = NamedSharding(mesh, P())
            _remember(key, jax.jit(self.train_step, in_shardings=(state_sh, batch_sh),
                                   out_shardings=(state_sh, rep), donate_argnums=0,
                                   compiler_options=self.compiler_options()))
        return _PROGRAMS[key]

    def compile_init(self, mesh: Mesh, abstract_state: dict) -> Callable:
        """`jax.jit(init_state)` placing each weight straight onto its shards (memoised)."""
        key = ("init", self._program_key(mesh, abstract_state))
        if key not in _PROGRAMS:
            state_sh = shd.named(mesh, self.state_specs(abstract_state, mesh))
            _remember(key, jax.jit(self.init_state, out_shardings=state_sh,
                                   compiler_options=self.compiler_options()))
        return _PROGRAMS[key]

    def compiler_options(self) -> dict | None:
        return dict(self.cfg.train.compiler_options) or None

    def _program_key(self, mesh: Mesh, abstract_state: dict) -> tuple:
        """What the compiled programs depend on: not the run directory, logging or checkpoints."""
        cfg = self.cfg
        # A constant schedule past its warmup does not depend on the run length.
        steps_free = cfg.optim.schedule == "constant" and cfg.optim.warmup_steps <= cfg.steps
        train = dataclasses.replace(cfg.train, log_every=0, profile_steps=(), distributed="auto")
        steps = None if steps_free else cfg.steps
        leaves, tree = jax.tree.flatten(abstract_state)
        shapes = tuple((tuple(a.shape), str(a.dtype)) for a in leaves)
        return (repr(cfg.model), repr(cfg.optim), repr(train), cfg.data.frame_rate, cfg.seed, cfg.mesh.preset,
                steps, mesh, shapes, str(tree))


# Compiled programs of this process by `Trainer._program_key` (a few: one per bucket shape).
_PROGRAMS: dict[tuple, Callable] = {}


def _remember(key: tuple, fn: Callable, limit: int = 16) -> None:
    if len(_PROGRAMS) >= limit:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = fn


def _nested(flat: dict[tuple, Any]) -> dict:
    """{('a', 'b'): x} -> {'a': {'b': x}} (the layout of nnx.to_pure_dict)."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out
