"""Video-VAE encoder: patchify -> conv_in -> down blocks -> mid block -> PixelNorm/SiLU/conv_out.

LTX-Video (arXiv 2501.00103, section 2.1); reference: diffusers `LTXVideoEncoder3d` (module tree
and names follow it, so the diffusers key map is a layout change only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.vae.blocks import ResBlock3d, SpaceToDepthDownsample, pixel_norm
from ltx_jax.vae.causal_conv3d import CausalConv3d, ConvCache
from ltx_jax.vae.config import DOWNSAMPLE_STRIDES, S2D, STRIDED, VAEConfig


def patchify(x: jax.Array, p: int, pt: int) -> jax.Array:
    """[B, F*pt, H*p, W*p, C] -> [B, F, H, W, C*pt*p*p].

    Channel = c*pt*p*p + t*p*p + w_sub*p + h_sub: the WIDTH sub-offset is the slower index
    (einops "b c (f p) (h q) (w r) -> b (c p r q) f h w").
    """
    b, f, h, w, c = x.shape
    x = x.reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 6, 4)  # -> [B, F, H, W, C, pt, w_sub, h_sub]
    return x.reshape(b, f // pt, h // p, w // p, c * pt * p * p)


class DownBlock(nnx.Module):
    """resnets @C_in -> optional downsampler -> optional channel-changing resnet ("conv_out").

    STRIDED (0.9.0/0.9.1): the downsampler is a strided causal conv C_in -> C_in and a resnet
    C_in -> C_out follows. S2D (0.9.5+): a residual space-to-depth downsampler C_in -> C_out.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_layers: int, *, kind: str,
        downsample: bool, downsample_type: str, causal: bool, eps: float, dtype, param_dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List([
            ResBlock3d(in_channels, in_channels, causal=causal, eps=eps, **kw)
            for _ in range(num_layers)
        ])
        down = None
        if downsample and (kind == STRIDED or downsample_type == "conv"):
            down = CausalConv3d(in_channels, in_channels, stride=2, causal=causal, **kw)
        elif downsample:
            down = SpaceToDepthDownsample(
                in_channels, out_channels, DOWNSAMPLE_STRIDES[downsample_type], causal=causal, **kw
            )
        self.downsamplers = nnx.List([down]) if down is not None else None
        self.conv_out = (
            ResBlock3d(in_channels, out_channels, causal=causal, eps=eps, **kw)
            if kind == STRIDED and in_channels != out_channels else None
        )

    def __call__(self, x: jax.Array, cache: ConvCache | None = None) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x, cache=cache)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x, cache)
        if self.conv_out is not None:
            x = self.conv_out(x, cache=cache)
        return x


class Encoder(nnx.Module):
    """Pixels [B, F, H, W, 3] -> moments [B, F', H', W', latent_channels + 1].

    The last output channel is the single log-variance shared by all latent channels.
    """

    def __init__(self, cfg: VAEConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        for name in ("layers_per_block", "spatio_temporal_scaling", "downsample_type"):
            if len(getattr(cfg, name)) < len(cfg.down_block_types):
                raise ValueError(f"VAEConfig.{name} has fewer entries than down_block_types")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patch_size, self.patch_size_t = cfg.patch_size, cfg.patch_size_t
        causal = cfg.encoder_causal
        ch = cfg.block_out_channels
        c = ch[0]
        self.conv_in = CausalConv3d(
            cfg.in_channels * cfg.patch_size**2 * cfg.patch_size_t, c, causal=causal, **kw
        )
        # Channel bookkeeping exactly as diffusers: the S2D family uses ch[i + 1] for block i;
        # the strided family repeats the last width for the last block.
        n = len(ch) - (1 if cfg.is_s2d_encoder else 0)
        blocks = []
        for i in range(n):
            c_in = c
            c = ch[i + 1] if (cfg.is_s2d_encoder or i + 1 < n) else ch[i]
            kind = cfg.down_block_types[i]
            if kind not in (STRIDED, S2D):
                raise ValueError(f"unknown down block type {kind!r}; known: {STRIDED}, {S2D}")
            blocks.append(DownBlock(
                c_in, c, cfg.layers_per_block[i], kind=kind,
                downsample=cfg.spatio_temporal_scaling[i], downsample_type=cfg.downsample_type[i],
                causal=causal, eps=cfg.resnet_norm_eps, **kw,
            ))
        self.down_blocks = nnx.List(blocks)
        self.mid_block = DownBlock(
            c, c, cfg.layers_per_block[-1], kind=STRIDED, downsample=False, downsample_type="conv",
            causal=causal, eps=cfg.resnet_norm_eps, **kw,
        )
        self.conv_out = CausalConv3d(c, cfg.latent_channels + 1, causal=causal, **kw)

    def __call__(self, x: jax.Array, cache: ConvCache | None = None) -> jax.Array:
        """[B, F, H, W, C_pix] -> [B, F', H', W', latent_channels + 1].

        With `cache`, `x` is one time chunk of a longer clip (see `ConvCache`); the result is
        exactly that chunk's slice of the whole clip's moments.
        """
        h = patchify(x, self.patch_size, self.patch_size_t)
        h = self.conv_in(h, cache)
        for block in self.down_blocks:
            h = block(h, cache)
        h = self.mid_block(h, cache)
        return self.conv_out(jax.nn.silu(pixel_norm(h)), cache)
