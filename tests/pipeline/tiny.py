"""A tiny random diffusers LTX-Video pipeline folder (transformer, VAE, T5, tokenizer, scheduler).

Everything is built offline with diffusers / transformers and saved with `save_pretrained`, the
layout `LTXPipeline.from_pretrained` reads. Parameters are randomised (diffusers leaves norms at 1
and biases at 0) so every tensor matters; the VAE's noise-injection scales stay 0 because
diffusers draws that noise from torch's global RNG.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
from diffusers import LTXPipeline as TorchLTXPipeline
from transformers import T5Config as TorchT5Config
from transformers import T5EncoderModel

from ltx_jax.sample import DIFFUSERS_SCHEDULER, tiny_tokenizer
from ltx_jax.vae.config import VARIANTS

C = 8  # latent channels of the tiny VAE variants
T5_WIDTH = 24


def _randomize(module: torch.nn.Module, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "per_channel_scale" in name:
                continue
            if name.endswith("timestep_scale_multiplier"):
                p.fill_(731.0)
            else:
                p.add_(scale * torch.randn(p.shape, generator=g))


def build_t5(tokenizer, seed: int = 0) -> T5EncoderModel:
    """A tiny random transformers T5 encoder (width T5_WIDTH) for `tokenizer`."""
    torch.manual_seed(seed)
    t5 = T5EncoderModel(TorchT5Config(vocab_size=len(tokenizer), d_model=T5_WIDTH, d_kv=8, d_ff=48, num_heads=3,
                                      num_layers=2, feed_forward_proj="gated-gelu")).eval()
    _randomize(t5, seed, 0.1)
    return t5


def build_components(family: str = "0.9.1", seed: int = 0) -> dict:
    """The torch modules of a tiny LTX pipeline (VAE family '0.9.0' or '0.9.1')."""
    tokenizer = tiny_tokenizer()
    t5 = build_t5(tokenizer, seed)
    transformer = LTXVideoTransformer3DModel(in_channels=C, out_channels=C, num_attention_heads=2,
                                             attention_head_dim=16, cross_attention_dim=32, num_layers=2,
                                             caption_channels=T5_WIDTH).eval()
    _randomize(transformer, seed + 1, 0.3)
    cfg = VARIANTS["tiny-" + family].to_diffusers()
    cfg.pop("_class_name")
    vae = AutoencoderKLLTXVideo(**cfg).eval()
    _randomize(vae, seed + 2, 0.1)
    g = torch.Generator().manual_seed(seed + 3)
    with torch.no_grad():
        vae.latents_mean.normal_(generator=g).mul_(0.3)
        vae.latents_std.uniform_(0.5, 2.0, generator=g)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(DIFFUSERS_SCHEDULER)
    return dict(scheduler=scheduler, vae=vae, text_encoder=t5, tokenizer=tokenizer, transformer=transformer)


def save_pipeline(folder, family: str = "0.9.1", seed: int = 0) -> dict:
    """Builds and saves the pipeline folder; returns the torch components."""
    parts = build_components(family, seed)
    TorchLTXPipeline(**parts).save_pretrained(str(folder))
    return parts


def pack(latents: np.ndarray) -> torch.Tensor:
    """Our [B, F, H, W, C] -> diffusers' packed [B, L, C] (patch size 1: the same memory order)."""
    b, f, h, w, c = latents.shape
    return torch.from_numpy(np.ascontiguousarray(latents).reshape(b, f * h * w, c))  # -> [B, L, C]


def channels_last(t: torch.Tensor) -> np.ndarray:
    """[B, C, F, H, W] torch -> [B, F, H, W, C] numpy."""
    return t.detach().float().numpy().transpose(0, 2, 3, 4, 1)


def random_pipeline(seed: int = 0):
    """Our tiny pipeline (the quickstart's shapes) with numpy-random weights: no init compile."""
    import jax.numpy as jnp
    from flax import nnx

    from ltx_jax.config import dit_config
    from ltx_jax.dit.transformer import Transformer3D
    from ltx_jax.pipeline import LTXPipeline
    from ltx_jax.text.t5 import T5Config, T5Encoder
    from tests.vae.helpers import random_vae

    tokenizer = tiny_tokenizer()
    rng = np.random.default_rng(seed)

    def randomized(make):
        module = nnx.eval_shape(make)
        for _, var in nnx.iter_graph(module):
            if isinstance(var, nnx.Param):
                shape = var.get_value().shape
                std = float(np.prod(shape[:-1])) ** -0.5 if len(shape) > 1 else 0.1
                var.set_value(jnp.asarray(rng.normal(0.0, std, shape), jnp.float32))
        return module

    t5_cfg = T5Config(vocab_size=len(tokenizer), d_model=T5_WIDTH, d_kv=8, d_ff=48, num_heads=3, num_layers=2)
    t5 = randomized(lambda: T5Encoder(t5_cfg, rngs=nnx.Rngs(0)))
    dit = randomized(lambda: Transformer3D(dit_config("tiny"), rngs=nnx.Rngs(0)))
    return LTXPipeline(tokenizer=tokenizer, text_encoder=t5, transformer=dit, vae=random_vae("tiny-0.9.1", seed),
                       scheduler_config=dict(DIFFUSERS_SCHEDULER))
