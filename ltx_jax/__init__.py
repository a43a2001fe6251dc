"""ltx_jax: LTX-Video (arXiv 2501.00103) in JAX/Flax NNX.

Dimension letters used in every einsum and shape comment:
  B batch, F latent frames, H/W latent height/width, C channels, L video tokens (F*H*W),
  S text tokens, D model width, N heads, K head dim, M MLP hidden.
Video arrays are channels-last: pixels [B, F, H, W, 3], latents [B, F', H', W', C].
"""

__version__ = "0.1.0"

_LAZY = {
    "Transformer3D": ("ltx_jax.dit.transformer", "Transformer3D"),
    "load_transformer": ("ltx_jax.convert.transformer", "load_transformer"),
    "save_transformer": ("ltx_jax.convert.transformer", "save_transformer"),
}


def __getattr__(name):
    # Lazy re-exports keep `import ltx_jax` cheap (no jax backend initialisation at import).
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ltx_jax' has no attribute {name!r}")


__all__ = sorted(_LAZY)
