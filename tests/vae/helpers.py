"""A random tiny VAE without per-parameter compilation (eager jax.random compiles each shape)."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.convert.vae import abstract_vae
from ltx_jax.vae.config import VARIANTS, VAEConfig


def random_vae(cfg: str | VAEConfig, seed: int = 0):
    """`VARIANTS[cfg]` (or `cfg`) with weights ~ N(0, 1/fan_in) (biases, tables ~ N(0, 0.1^2)) from numpy."""
    vae = abstract_vae(VARIANTS[cfg] if isinstance(cfg, str) else cfg)
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(vae):
        if not isinstance(var, nnx.Param):
            continue
        shape = var.get_value().shape
        leaf = str(path[-1])
        if leaf == "kernel":
            std = float(np.prod(shape[:-1])) ** -0.5
        elif leaf == "timestep_scale_multiplier":
            var.set_value(jnp.asarray(1000.0, jnp.float32))
            continue
        elif leaf.startswith("per_channel_scale"):
            var.set_value(jnp.zeros(shape, jnp.float32))
            continue
        else:
            std = 0.1
        var.set_value(jnp.asarray(rng.normal(0.0, std, shape), jnp.float32))
    c = vae.cfg.latent_channels
    vae.latents_mean.set_value(jnp.zeros((c,), jnp.float32))
    vae.latents_std.set_value(jnp.ones((c,), jnp.float32))
    return vae
