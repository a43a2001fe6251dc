"""The LTX-Video Video-VAE (arXiv 2501.00103, section 2): CausalVideoAutoencoder and its config."""

from ltx_jax.vae.autoencoder import CausalVideoAutoencoder, count_params
from ltx_jax.vae.config import VARIANTS, VAEConfig

__all__ = ["CausalVideoAutoencoder", "VAEConfig", "VARIANTS", "count_params"]
