"""ltx_jax: LTX-Video (arXiv 2501.00103) in JAX/Flax NNX.

Dimension letters used in every einsum and shape comment:
  B batch, F latent frames, H/W latent height/width, C channels, L video tokens (F*H*W),
  S text tokens, D model width, N heads, K head dim, M MLP hidden.
Video arrays are channels-last: pixels [B, F, H, W, 3], latents [B, F', H', W', C].
"""

__version__ = "0.2.0"

_LAZY = {
    "Transformer3D": ("ltx_jax.dit.transformer", "Transformer3D"),
    "load_transformer": ("ltx_jax.convert.transformer", "load_transformer"),
    "save_transformer": ("ltx_jax.convert.transformer", "save_transformer"),
    "CausalVideoAutoencoder": ("ltx_jax.vae.autoencoder", "CausalVideoAutoencoder"),
    "load_vae": ("ltx_jax.convert.vae", "load_vae"),
    "save_vae": ("ltx_jax.convert.vae", "save_vae"),
    "T5Encoder": ("ltx_jax.text.t5", "T5Encoder"),
    "load_text_encoder": ("ltx_jax.convert.t5", "load_text_encoder"),
    "save_text_encoder": ("ltx_jax.convert.t5", "save_text_encoder"),
    "DiTConfig": ("ltx_jax.config", "DiTConfig"),
    "dit_config": ("ltx_jax.config", "dit_config"),
    "load_config": ("ltx_jax.config", "load_config"),
    "LTXPipeline": ("ltx_jax.pipeline", "LTXPipeline"),
}


def __getattr__(name):
    # Lazy re-exports keep `import ltx_jax` cheap (no jax backend initialisation at import).
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ltx_jax' has no attribute {name!r}")


__all__ = sorted(_LAZY)
