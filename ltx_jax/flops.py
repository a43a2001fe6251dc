"""Analytic parameter and FLOP counts (2 FLOPs per multiply-add), the x-axis of scaling laws.

Counts follow perf.md section 4.2: matmuls only (norms, softmax, RoPE and elementwise work are a
few percent and left out, as MFU conventions do).
"""

from __future__ import annotations

from ltx_jax.config import DiTConfig


def dit_forward_flops(cfg: DiTConfig, *, batch: int, video_tokens: int, text_tokens: int) -> int:
    """FLOPs of one Transformer3D forward pass.

    Args:
      cfg: the model shape.
      batch: B.
      video_tokens: L = F * H * W latent tokens per sample.
      text_tokens: S text tokens per sample.
    """
    d, length, s = cfg.width, video_tokens, text_tokens
    per_layer = (
        2 * length * 4 * d * d  # self-attention q, k, v, out projections
        + 2 * 2 * length * length * d  # q k^T and p v
        + 2 * length * 2 * d * d  # cross-attention q and out projections
        + 2 * s * 2 * d * d  # cross-attention k and v on the text
        + 2 * 2 * length * s * d  # cross-attention q k^T and p v
        + 2 * 2 * length * d * cfg.mlp_dim  # FFN
    )
    outside = (
        2 * length * cfg.in_channels * d  # patchify_proj
        + 2 * length * d * cfg.out_channels  # proj_out
        + 2 * s * (cfg.caption_channels * d + d * d)  # caption projection
    )
    return int(batch * (cfg.num_layers * per_layer + outside))
