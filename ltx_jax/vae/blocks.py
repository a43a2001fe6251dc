"""Video-VAE building blocks: PixelNorm, ResBlock3d, space-to-depth and depth-to-space resamplers.

LTX-Video (arXiv 2501.00103, section 2.1); reference: ltx_video `causal_video_autoencoder.py` and
diffusers `autoencoder_kl_ltx.py` (`LTXVideoResnetBlock3d`, `LTXVideoDownsampler3d`,
`LTXVideoUpsampler3d`). Arrays are channels-last `[B, F, H, W, C]`; the channel orders of the
rearranges follow the PyTorch code exactly so converted conv weights line up.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.layers import layer_norm, param, rms_norm
from ltx_jax.vae.causal_conv3d import CausalConv3d, ConvCache

PIXEL_NORM_EPS = 1e-8


def pixel_norm(x: jax.Array) -> jax.Array:
    """x / sqrt(mean_C(x^2) + 1e-8) over channels (diffusers: non-affine RMSNorm, eps 1e-8)."""
    return rms_norm(x, PIXEL_NORM_EPS)


def space_to_depth(x: jax.Array, stride: Sequence[int]) -> jax.Array:
    """[B, F*s0, H*s1, W*s2, C] -> [B, F, H, W, C*s0*s1*s2], channel = c*S + p0*s1*s2 + p1*s2 + p2.

    Same order as einops "b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w".
    """
    s0, s1, s2 = stride
    b, f, h, w, c = x.shape
    x = x.reshape(b, f // s0, s0, h // s1, s1, w // s2, s2, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)  # -> [B, F, H, W, C, s0, s1, s2]
    return x.reshape(b, f // s0, h // s1, w // s2, c * s0 * s1 * s2)


def depth_to_space(x: jax.Array, stride: Sequence[int]) -> jax.Array:
    """Inverse of `space_to_depth`: [B, F, H, W, C*s0*s1*s2] -> [B, F*s0, H*s1, W*s2, C]."""
    s0, s1, s2 = stride
    b, f, h, w, cs = x.shape
    c = cs // (s0 * s1 * s2)
    x = x.reshape(b, f, h, w, c, s0, s1, s2)
    x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)  # -> [B, F, s0, H, s1, W, s2, C]
    return x.reshape(b, f * s0, h * s1, w * s2, c)


class AffineLayerNorm(nnx.Module):
    """LayerNorm over channels with a learned scale and bias (torch.nn.LayerNorm, affine)."""

    def __init__(self, dim: int, *, eps: float, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones_init(), (dim,), ("channels",), param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros_init(), (dim,), ("channels",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = layer_norm(x, self.eps).astype(jnp.float32)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)


class ResBlock3d(nnx.Module):
    """PixelNorm -> [adaLN] -> SiLU -> conv1 -> [noise] -> PixelNorm -> [adaLN] -> SiLU -> conv2
    -> [noise], plus a shortcut (LayerNorm + 1x1x1 conv when the channel count changes).

    Attributes:
      conv1, conv2: 3x3x3 CausalConv3d.
      norm3, conv_shortcut: only when C_in != C_out.
      per_channel_scale1, per_channel_scale2: [C] noise scales (only with `inject_noise`).
      scale_shift_table: [4, C_in] (shift1, scale1, shift2, scale2) with `timestep_conditioning`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        causal: bool,
        eps: float = 1e-6,
        inject_noise: bool = False,
        timestep_conditioning: bool = False,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if inject_noise and in_channels != out_channels:
            raise ValueError(
                f"noise injection needs C_in == C_out (the reference sizes the scales by C_in), "
                f"got {in_channels} -> {out_channels}"
            )
        self.dtype = dtype
        conv = dict(causal=causal, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = CausalConv3d(in_channels, out_channels, **conv)
        self.conv2 = CausalConv3d(out_channels, out_channels, **conv)
        # Optional members are assigned once (NNX fixes an attribute's data/static kind then).
        changes = in_channels != out_channels
        self.norm3 = (
            AffineLayerNorm(in_channels, eps=eps, param_dtype=param_dtype, rngs=rngs) if changes else None
        )
        self.conv_shortcut = (
            CausalConv3d(in_channels, out_channels, kernel_size=1, **conv) if changes else None
        )
        zeros = nnx.initializers.zeros_init()
        noise = lambda: param(rngs, zeros, (in_channels,), ("channels",), param_dtype)  # noqa: E731
        self.per_channel_scale1 = noise() if inject_noise else None
        self.per_channel_scale2 = noise() if inject_noise else None
        self.scale_shift_table = (
            param(rngs, nnx.initializers.normal(in_channels**-0.5), (4, in_channels),
                  ("modulation", "channels"), param_dtype)
            if timestep_conditioning else None
        )

    def _noise(self, h: jax.Array, scale: nnx.Param, key: jax.Array) -> jax.Array:
        # One (H, W) map shared by batch, frames and channels, scaled per channel (StyleGAN).
        n = jax.random.normal(key, h.shape[2:4], jnp.float32)
        return h + (n[None, None, :, :, None] * scale[...].astype(jnp.float32)).astype(h.dtype)

    def __call__(
        self, x: jax.Array, temb: jax.Array | None = None, noise_key: jax.Array | None = None,
        cache: ConvCache | None = None,
    ) -> jax.Array:
        """[B, F, H, W, C_in] -> [B, F, H, W, C_out].

        Args:
          x: input video features.
          temb: [B, 4*C_in] timestep embedding (required with timestep conditioning).
          noise_key: PRNG key for noise injection; None disables it.
          cache: temporal context of chunked (causal) encoding; None for a whole clip.
        """
        x = x.astype(self.dtype)
        h = pixel_norm(x)
        if self.scale_shift_table is not None:
            b, c = temb.shape[0], self.scale_shift_table.shape[1]
            # [B, 4*C] -> [B, 4, C]: torch `unflatten(1, (4, -1))`.
            ada = temb.astype(jnp.float32).reshape(b, 4, c) + self.scale_shift_table[...].astype(jnp.float32)
            ada = ada[:, :, None, None, None, :]  # [B, 4, C] -> [B, 4, 1, 1, 1, C]
            shift1, scale1, shift2, scale2 = ada[:, 0], ada[:, 1], ada[:, 2], ada[:, 3]
            h = (h * (1 + scale1) + shift1).astype(self.dtype)
        h = self.conv1(jax.nn.silu(h), cache)
        inject = self.per_channel_scale1 is not None and noise_key is not None
        if inject:
            k1, k2 = jax.random.split(noise_key)
            h = self._noise(h, self.per_channel_scale1, k1)
        h = pixel_norm(h)
        if self.scale_shift_table is not None:
            h = (h * (1 + scale2) + shift2).astype(self.dtype)
        h = self.conv2(jax.nn.silu(h), cache)
        if inject:
            h = self._noise(h, self.per_channel_scale2, k2)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(self.norm3(x))
        return x + h


class SpaceToDepthDownsample(nnx.Module):
    """Residual space-to-depth downsampler (0.9.5+ encoder, "compress_{space,time,all}_res").

    Main path: causal conv C_in -> C_out / prod(s) at full resolution, then space-to-depth.
    Skip path: space-to-depth of the input, averaged over consecutive channel groups to C_out.
    With a temporal stride 2, frame 0 is duplicated first, so 1 + 8k frames -> 1 + 4k.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: Sequence[int], *, causal: bool,
        dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs,
    ):
        self.stride = tuple(stride)
        n = self.stride[0] * self.stride[1] * self.stride[2]
        self.group_size = in_channels * n // out_channels
        self.conv = CausalConv3d(
            in_channels, out_channels // n, causal=causal, dtype=dtype, param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, cache: ConvCache | None = None) -> jax.Array:
        """[B, F, H, W, C_in] -> [B, (F + s0 - 1) / s0, H / s1, W / s2, C_out].

        In a later time chunk (`cache` not first) frame 0 is not duplicated: F / s0 frames out.
        """
        st = self.stride[0]
        if cache is None or cache.first:
            x = jnp.concatenate([x[:, : st - 1], x], axis=1)  # [B, F, ...] -> [B, F + s0 - 1, ...]
        skip = space_to_depth(x, self.stride)
        b, f, h, w, cs = skip.shape
        # [B, F, H, W, C_out * g] -> [B, F, H, W, C_out]: mean of consecutive channel groups.
        skip = skip.reshape(b, f, h, w, cs // self.group_size, self.group_size).mean(-1)
        return space_to_depth(self.conv(x, cache), self.stride) + skip.astype(x.dtype)


class DepthToSpaceUpsample(nnx.Module):
    """Depth-to-space upsampler (decoder "compress_all"), stride (2, 2, 2).

    Main path: conv C -> C * prod(s) / m, depth-to-space -> C / m channels, drop the first s0 - 1
    frames (F -> 2F - 1). With `residual` (0.9.1+), the input is depth-to-spaced too (C / 8
    channels), tiled along channels prod(s) / m times and added.
    """

    def __init__(
        self, in_channels: int, stride: Sequence[int] = (2, 2, 2), *, causal: bool,
        residual: bool = False, upscale_factor: int = 1, dtype=jnp.float32,
        param_dtype=jnp.float32, rngs: nnx.Rngs,
    ):
        self.stride = tuple(stride)
        self.residual = residual
        self.upscale_factor = upscale_factor
        n = self.stride[0] * self.stride[1] * self.stride[2]
        self.conv = CausalConv3d(
            in_channels, in_channels * n // upscale_factor, causal=causal, dtype=dtype,
            param_dtype=param_dtype, rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, F, H, W, C] -> [B, F*s0 - (s0 - 1), H*s1, W*s2, C / m]."""
        drop = self.stride[0] - 1
        h = depth_to_space(self.conv(x), self.stride)[:, drop:]
        if self.residual:
            n = self.stride[0] * self.stride[1] * self.stride[2]
            # torch `.repeat` along channels tiles: output channel j reads channel j mod (C / n).
            r = jnp.tile(depth_to_space(x, self.stride), (1, 1, 1, 1, n // self.upscale_factor))
            h = h + r[:, drop:].astype(h.dtype)
        return h
