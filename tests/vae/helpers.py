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


def cl(t) -> np.ndarray:
    """[B, C, F, H, W] torch -> [B, F, H, W, C] numpy."""
    from tests.oracle import to_numpy

    return to_numpy(t).transpose(0, 2, 3, 4, 1)


def cf(x: np.ndarray):
    """[B, F, H, W, C] numpy -> [B, C, F, H, W] torch."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 4, 1, 2, 3)))


def diffusers_reference(family: str):
    """A tiny random diffusers `AutoencoderKLLTXVideo` of `family` (weights perturbed by N(0, 0.1^2)).

    diffusers' noise comes from torch's global RNG, which JAX cannot reproduce: the noise scales
    stay 0 (their effect is tested in test_vae_properties.py). The timestep multiplier is set to
    a trained-like 731, so a hard-coded 1000 would show.
    """
    import torch
    from diffusers import AutoencoderKLLTXVideo

    cfg = VARIANTS["tiny-" + family].to_diffusers()
    cfg.pop("_class_name")
    torch.manual_seed(0)
    ref = AutoencoderKLLTXVideo(**cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "per_channel_scale" in name:
                continue
            if name.endswith("timestep_scale_multiplier"):
                p.fill_(731.0)
            else:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        ref.latents_mean.normal_(generator=g)
        ref.latents_std.uniform_(0.5, 2.0, generator=g)
    return ref
