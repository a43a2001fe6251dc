"""Video-VAE decoder, optionally timestep-conditioned (the paper's denoising decoder).

LTX-Video (arXiv 2501.00103, sections 2.1 and 2.6); reference: diffusers `LTXVideoDecoder3d`
(module tree and names follow it). Execution: conv_in -> mid block -> up blocks ->
PixelNorm [-> adaLN] -> SiLU -> conv_out -> unpatchify. The decode timestep is multiplied once by
the learned `timestep_scale_multiplier` and the scaled value feeds every time embedder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.embeddings import TimestepEmbedding, timestep_sinusoid
from ltx_jax.nn.layers import param
from ltx_jax.vae.blocks import DepthToSpaceUpsample, ResBlock3d, pixel_norm
from ltx_jax.vae.causal_conv3d import CausalConv3d
from ltx_jax.vae.config import VAEConfig

TIME_FEATURES = 256


def unpatchify(x: jax.Array, p: int, pt: int) -> jax.Array:
    """Inverse of `encoder.patchify`: [B, F, H, W, C*pt*p*p] -> [B, F*pt, H*p, W*p, C]."""
    b, f, h, w, cs = x.shape
    c = cs // (pt * p * p)
    x = x.reshape(b, f, h, w, c, pt, p, p)  # channel = c*pt*p*p + t*p*p + w_sub*p + h_sub
    x = x.transpose(0, 1, 5, 2, 7, 3, 6, 4)  # -> [B, F, pt, H, h_sub, W, w_sub, C]
    return x.reshape(b, f * pt, h * p, w * p, c)


class TimeEmbedder(nnx.Module):
    """PixArt-alpha combined timestep embedder without size conditions: sinusoid(256) -> MLP."""

    def __init__(self, dim: int, *, param_dtype, rngs: nnx.Rngs):
        # Timestep embeddings stay float32 (house dtype policy).
        self.timestep_embedder = TimestepEmbedding(
            TIME_FEATURES, dim, dtype=jnp.float32, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, t: jax.Array) -> jax.Array:
        """[B] (already scaled) -> [B, dim] float32."""
        return self.timestep_embedder(timestep_sinusoid(t, TIME_FEATURES))


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


class ResStack(nnx.Module):
    """N resnets at one width, sharing one time embedder (diffusers `LTXVideoMidBlock3d`)."""

    def __init__(self, channels: int, num_layers: int, *, tcond: bool, **kw):
        self.time_embedder = (
            TimeEmbedder(4 * channels, param_dtype=kw["param_dtype"], rngs=kw["rngs"]) if tcond else None
        )
        self.resnets = nnx.List([
            ResBlock3d(channels, channels, timestep_conditioning=tcond, **kw) for _ in range(num_layers)
        ])

    def __call__(self, x, t, key):
        temb = self.time_embedder(t) if self.time_embedder is not None else None
        for resnet, k in zip(self.resnets, _keys(key, len(self.resnets))):
            x = resnet(x, temb, k)
        return x


class UpBlock(ResStack):
    """[conv_in resnet C_in -> C_out] -> [depth-to-space upsampler] -> resnets @C_out."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, *, tcond: bool,
                 upsample: bool, residual: bool, factor: int, **kw):
        super().__init__(out_channels, num_layers, tcond=tcond, **kw)
        if in_channels != out_channels and tcond:
            # diffusers would feed the raw timestep to this block's adaLN and fail.
            raise ValueError("a timestep-conditioned decoder block cannot change channels")
        self.conv_in = ResBlock3d(in_channels, out_channels, **kw) if in_channels != out_channels else None
        self.upsamplers = nnx.List([DepthToSpaceUpsample(
            out_channels * factor, causal=kw["causal"], residual=residual, upscale_factor=factor,
            dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"],
        )]) if upsample else None

    def __call__(self, x, t, key):
        k_in, k_res = _keys(key, 2)
        if self.conv_in is not None:
            x = self.conv_in(x, None, k_in)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return super().__call__(x, t, k_res)


class Decoder(nnx.Module):
    """Latents [B, F', H', W', latent_channels] -> pixels [B, F, H, W, out_channels]."""

    def __init__(self, cfg: VAEConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        rev = lambda v: tuple(reversed(v))  # noqa: E731
        ch, layers = rev(cfg.decoder_block_out_channels), rev(cfg.decoder_layers_per_block)
        scaling, noise = rev(cfg.decoder_spatio_temporal_scaling), rev(cfg.decoder_inject_noise)
        residual, factor = rev(cfg.upsample_residual), rev(cfg.upsample_factor)
        self.cfg = cfg
        self.patch_size, self.patch_size_t = cfg.patch_size, cfg.patch_size_t
        self.tcond = cfg.timestep_conditioning
        kw = dict(causal=cfg.decoder_causal, eps=cfg.resnet_norm_eps, dtype=dtype,
                  param_dtype=param_dtype, rngs=rngs)
        conv = dict(causal=cfg.decoder_causal, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c = ch[0]
        self.conv_in = CausalConv3d(cfg.latent_channels, c, **conv)
        self.mid_block = ResStack(c, layers[0], tcond=self.tcond, inject_noise=noise[0], **kw)
        blocks = []
        for i in range(len(ch)):
            c_in, c = c // factor[i], ch[i] // factor[i]
            blocks.append(UpBlock(
                c_in, c, layers[i + 1], tcond=self.tcond, upsample=scaling[i],
                residual=residual[i], factor=factor[i], inject_noise=noise[i + 1], **kw,
            ))
        self.up_blocks = nnx.List(blocks)
        out = cfg.out_channels * cfg.patch_size**2 * cfg.patch_size_t
        self.conv_out = CausalConv3d(c, out, **conv)
        # Learned, initialised to 1000; trained checkpoints carry their own value.
        self.timestep_scale_multiplier = (
            param(rngs, nnx.initializers.constant(1000.0), (), (), param_dtype) if self.tcond else None
        )
        self.time_embedder = (
            TimeEmbedder(2 * c, param_dtype=param_dtype, rngs=rngs) if self.tcond else None
        )
        self.scale_shift_table = (
            param(rngs, nnx.initializers.normal(c**-0.5), (2, c), ("modulation", "channels"),
                  param_dtype)
            if self.tcond else None
        )

    def __call__(self, z: jax.Array, timestep: jax.Array | None = None,
                 noise_key: jax.Array | None = None) -> jax.Array:
        """Decodes latents.

        Args:
          z: [B, F', H', W', latent_channels].
          timestep: [B] in [0, 1] (before the learned multiplier); only for t-cond decoders.
          noise_key: PRNG key driving noise injection; None disables it.

        Returns:
          [B, 1 + (F' - 1) * 8, 32 H', 32 W', out_channels] for the released configurations.
        """
        t = None
        if self.tcond:
            t = timestep.astype(jnp.float32) * self.timestep_scale_multiplier[...].astype(jnp.float32)
        keys = _keys(noise_key, 1 + len(self.up_blocks))
        h = self.conv_in(z)
        h = self.mid_block(h, t, keys[0])
        for block, k in zip(self.up_blocks, keys[1:]):
            h = block(h, t, k)
        h = pixel_norm(h)
        if self.tcond:
            b, c = h.shape[0], self.scale_shift_table.shape[1]
            # [B, 2*C] -> [B, 2, C]: torch `unflatten(1, (2, -1))`, rows (shift, scale).
            ada = self.time_embedder(t).reshape(b, 2, c) + self.scale_shift_table[...].astype(jnp.float32)
            ada = ada[:, :, None, None, None, :]  # [B, 2, C] -> [B, 2, 1, 1, 1, C]
            h = (h * (1 + ada[:, 1]) + ada[:, 0]).astype(h.dtype)
        h = self.conv_out(jax.nn.silu(h))
        return unpatchify(h, self.patch_size, self.patch_size_t)
