"""CausalConv3d: a 3-D convolution whose temporal padding replicates boundary frames.

LTX-Video (arXiv 2501.00103, section 2.1); reference: ltx_video `causal_conv3d.py` and diffusers
`LTXVideoCausalConv3d`. Spatial padding is k // 2 zeros on each side; temporal padding never uses
zeros:
- causal (encoder): k_t - 1 copies of frame 0 in front, nothing behind, so output frame t only
  sees input frames <= t;
- non-causal (decoder): (k_t - 1) // 2 copies of the first frame in front and of the last frame
  behind.

`ConvCache` makes the causal (encoder) convs exact across time chunks: a chunk's convs read the
frames their input had just before the chunk instead of replicating frame 0.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ltx_jax.nn.layers import param

# torch.nn.Conv3d's default init (kaiming_uniform with a = sqrt(5)) is uniform(+-1/sqrt(fan_in)),
# i.e. a variance scale of 1/3; keeps random tiny models in the same numeric range as diffusers'.
_KERNEL_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class ConvCache:
    """Temporal context carried between time chunks of a causal network, one entry per conv.

    Convs consume `prev` in call order (the frames of their padded input not yet used by an output
    window of the previous chunk) and append the same for the next chunk to `next`. With
    `prev=None` (the first chunk) they replicate frame 0 as usual. Chunks after the first must
    keep every stride aligned: 1 + 8k frames first, then multiples of 8 for the released VAEs.
    """

    def __init__(self, prev: list[jax.Array] | None = None):
        self.prev = prev
        self.next: list[jax.Array] = []
        self._i = 0

    @property
    def first(self) -> bool:
        return self.prev is None

    def front(self, x: jax.Array, n: int) -> jax.Array:
        """The frames to put before `x`: n copies of frame 0, or the previous chunk's context."""
        if self.prev is None:
            return jnp.repeat(x[:, :1], n, axis=1)
        ctx = self.prev[self._i]
        self._i += 1
        return ctx

    def keep(self, padded: jax.Array, kernel: int, stride: int) -> None:
        """Records the frames from the next (unused) window start on."""
        n_out = (padded.shape[1] - kernel) // stride + 1
        self.next.append(padded[:, n_out * stride:])


class CausalConv3d(nnx.Module):
    """3-D conv over channels-last video with replicate temporal padding.

    Attributes:
      kernel: [kt, kh, kw, C_in, C_out] (PyTorch stores [C_out, C_in, kt, kh, kw]).
      bias: [C_out].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        causal: bool = True,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.causal = causal
        self.dtype = dtype
        self.kernel = param(
            rngs, _KERNEL_INIT, (*self.kernel_size, in_channels, out_channels),
            ("kernel", "kernel", "kernel", "channels", "channels_out"), param_dtype,
        )
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        bound = fan_in**-0.5
        self.bias = param(
            rngs, lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound), (out_channels,),
            ("channels_out",), param_dtype,
        )

    def __call__(self, x: jax.Array, cache: ConvCache | None = None) -> jax.Array:
        """[B, F, H, W, C_in] -> [B, F_out, H_out, W_out, C_out] in `dtype`.

        F_out = (F + pad_t - k_t) // s_t + 1 with pad_t = k_t - 1 (both ends together); with a
        non-first `cache`, pad_t is the carried context's length instead.
        """
        kt, kh, kw = self.kernel_size
        if cache is not None and not self.causal:
            raise ValueError("only causal convs can run in time chunks (the decoder is not causal)")
        if kt > 1:
            if self.causal:
                front = cache.front(x, kt - 1) if cache is not None else jnp.repeat(x[:, :1], kt - 1, axis=1)
                parts = [front, x]
            else:
                pad = (kt - 1) // 2
                parts = [jnp.repeat(x[:, :1], pad, axis=1), x, jnp.repeat(x[:, -1:], pad, axis=1)]
            x = jnp.concatenate(parts, axis=1)  # [B, F, H, W, C] -> [B, F + pad_t, H, W, C]
            if cache is not None:
                cache.keep(x, kt, self.stride[0])
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            window_strides=self.stride,
            padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )
        return y + self.bias[...].astype(self.dtype)
