"""CausalVideoAutoencoder: encode / decode / latent normalisation, with input validation.

LTX-Video (arXiv 2501.00103, section 2); the public contract is api.md "CausalVideoAutoencoder".
Pixels are channels-last `[B, F, H, W, 3]` in [-1, 1]; latents `[B, F', H', W', C]` with
F' = (F - 1) / t + 1, H' = H / s, W' = W / s, where t and s are the compression factors of the
configuration's actual strides (8 and 32 for every release).

Under a mesh (`jax.set_mesh`) encode and decode place their input by `sharding.video_spec`: the
batch on the data-parallel axes, the height on the remaining ones, so a single video is decoded
spatially split over the devices (XLA exchanges conv halos; nothing is gathered).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ltx_jax.sharding import constrain_video
from ltx_jax.vae.causal_conv3d import ConvCache
from ltx_jax.vae.config import VAEConfig
from ltx_jax.vae.decoder import Decoder
from ltx_jax.vae.encoder import Encoder
from ltx_jax.vae.shapes import check_video_size, nearest_valid
from ltx_jax.vae.tiling import DecodeTiling, auto_tiling, needs_tiles, tiled_decode

LOGVAR_RANGE = (-30.0, 20.0)


@nnx.jit
def _run_encoder(encoder: Encoder, video: jax.Array) -> jax.Array:
    # One compiled program per input shape: eager op-by-op dispatch of a conv net is slow, and
    # under an outer jit this simply inlines.
    return encoder(video)


@nnx.jit
def _run_encoder_chunk(encoder: Encoder, video: jax.Array, prev: list | None):
    cache = ConvCache(prev)
    return encoder(video, cache), cache.next


@nnx.jit(static_argnames=("tiling",))
def _run_decoder(decoder: Decoder, z: jax.Array, t: jax.Array | None, key: jax.Array | None,
                 tiling: DecodeTiling | None = None):
    if tiling is None:
        return decoder(z, t, key)
    cfg = decoder.cfg
    return tiled_decode(lambda x: decoder(x, t, key), z, tiling,
                        spatial=cfg.spatial_compression, temporal=cfg.temporal_compression)


class LatentStatistic(nnx.Variable):
    """A per-channel latent statistic read from the checkpoint (not trained)."""


class CausalVideoAutoencoder(nnx.Module):
    """The LTX-Video Video-VAE (all released families, chosen by `VAEConfig`).

    Attributes:
      encoder: `Encoder`, pixels -> moments (means and one shared log-variance).
      decoder: `Decoder`, latents (+ timestep for 0.9.1+) -> pixels.
      latents_mean, latents_std: [C] per-channel statistics (diffusers names).
    """

    def __init__(self, cfg: VAEConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.cfg = cfg
        self.encoder = Encoder(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.decoder = Decoder(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c = cfg.latent_channels
        self.latents_mean = LatentStatistic(jnp.zeros((c,), jnp.float32))
        self.latents_std = LatentStatistic(jnp.ones((c,), jnp.float32))

    @property
    def temporal_compression(self) -> int:
        return self.cfg.temporal_compression

    @property
    def spatial_compression(self) -> int:
        return self.cfg.spatial_compression

    def latent_shape(self, video_shape) -> tuple[int, int, int, int, int]:
        """[B, F, H, W, 3] -> [B, F', H', W', C] (after validating the pixel shape)."""
        return self.check_video_shape(video_shape)

    # ----------------------------------------------------------------------------- validation

    def check_video_shape(self, shape) -> tuple[int, int, int, int, int]:
        """Validates a pixel video shape for this VAE; returns its latent shape.

        Args:
          shape: [B, F, H, W, C], channels-last.

        Returns:
          [B, F', H', W', latent_channels] (`ltx_jax.vae.shapes.check_video_size` with this
          configuration's strides).

        Raises:
          ValueError: wrong rank or channel count, or a size the VAE cannot take (naming the value,
            the rule and the nearest valid values).
        """
        shape = tuple(shape)
        if len(shape) != 5:
            raise ValueError(f"video must be [B, F, H, W, C] (channels-last), got shape {shape}")
        b, f, h, w, c = shape
        if c != self.cfg.in_channels:
            hint = " (channels-first input? use channels-last)" if shape[1] == self.cfg.in_channels else ""
            raise ValueError(
                f"video has {c} channels in its last axis, the VAE takes {self.cfg.in_channels}{hint}"
            )
        t, s = self.temporal_compression, self.spatial_compression
        return (b, *check_video_size(f, h, w, (t, s, s)), self.cfg.latent_channels)

    @staticmethod
    def _check_range(video) -> None:
        # Host data only: reading a device array's min/max would stall every eager encode on a
        # device -> host transfer, so jax arrays (and tracers) are trusted to be normalised.
        if isinstance(video, jax.Array):
            return
        video = np.asarray(video)
        lo, hi = float(video.min()), float(video.max())
        if lo < -1.001 or hi > 1.001:
            raise ValueError(
                f"video values span [{lo:g}, {hi:g}]; pixels must be in [-1, 1] "
                f"(uint8 frames: x / 127.5 - 1)"
            )

    def _check_latents(self, z) -> None:
        c = self.cfg.latent_channels
        if z.ndim != 5 or z.shape[-1] != c:
            raise ValueError(
                f"latents must be [B, F', H', W', {c}] (channels-last), got shape {tuple(z.shape)}"
            )

    def _timestep(self, timestep, batch: int) -> jax.Array | None:
        if not self.cfg.timestep_conditioning:
            if timestep is not None:
                raise ValueError(
                    "this VAE's decoder is not timestep-conditioned (0.9.0 family); pass timestep=None"
                )
            return None
        if timestep is None:
            raise ValueError(
                "this VAE's decoder is timestep-conditioned (0.9.1+): pass timestep "
                "(scalar or [B] in [0, 1], e.g. 0.05; 0.0 for no denoising)"
            )
        t = jnp.asarray(timestep, jnp.float32)
        if t.ndim == 0:
            t = jnp.full((batch,), t)
        if t.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or [B] = [{batch}], got shape {t.shape}")
        return t

    # ---------------------------------------------------------------------------------- API

    def encode_moments(self, video: jax.Array, *, chunk_frames: int | None = None
                       ) -> tuple[jax.Array, jax.Array]:
        """The diagonal-Gaussian posterior.

        Args:
          video: [B, F, H, W, 3] in [-1, 1], F = 1 + 8k, H and W multiples of 32. The range is
            checked for host data (numpy arrays, lists); a jax array is assumed already
            normalised, as checking it would cost a device -> host sync on every call.
          chunk_frames: encode at most this many frames per call (1 + 8j; later chunks take 8j),
            carrying each causal conv's context between chunks: the result equals the
            whole-clip encoding while activation memory scales with the chunk. None: one call.

        Returns:
          mean [B, F', H', W', C] and log-variance [B, F', H', W', 1] (one value shared by all
          channels, clamped to [-30, 20]).
        """
        self.check_video_shape(np.shape(video))
        self._check_range(video)
        video = constrain_video(jnp.asarray(video))
        if chunk_frames is None or chunk_frames >= video.shape[1]:
            m = _run_encoder(self.encoder, video)
        else:
            m = self._encode_chunked(video, chunk_frames)
        c = self.cfg.latent_channels
        return m[..., :c], jnp.clip(m[..., c:], *LOGVAR_RANGE)

    def _encode_chunked(self, video: jax.Array, chunk_frames: int) -> jax.Array:
        t = self.temporal_compression
        if chunk_frames < 1 + t or (chunk_frames - 1) % t:
            near = " or ".join(map(str, nearest_valid(chunk_frames, 1 + t, t)))
            raise ValueError(f"chunk_frames={chunk_frames} must be 1 + {t}k with k >= 1: nearest valid {near}")
        parts, prev, start = [], None, 0
        while start < video.shape[1]:
            stop = start + (chunk_frames if start == 0 else chunk_frames - 1)
            m, prev = _run_encoder_chunk(self.encoder, video[:, start:stop], prev)
            parts.append(m)
            start = stop
        return jnp.concatenate(parts, axis=1)  # chunks of [B, f_i, H', W', C + 1] -> [B, F', ...]

    def encode(self, video: jax.Array, *, chunk_frames: int | None = None) -> jax.Array:
        """[B, F, H, W, 3] pixels in [-1, 1] -> [B, F', H', W', C] posterior mean (raw space).

        `chunk_frames` and the range check (host data only) as in `encode_moments`.
        """
        return self.encode_moments(video, chunk_frames=chunk_frames)[0]

    def decode(self, latents: jax.Array, timestep=None, *, rng: jax.Array | None = None,
               tiling: DecodeTiling | None = None, memory_budget: int | None = None) -> jax.Array:
        """Raw latents -> pixels (not clipped).

        Args:
          latents: [B, F', H', W', C], raw (de-normalised) space.
          timestep: scalar or [B] in [0, 1], before the decoder's learned multiplier; required
            by timestep-conditioned decoders (0.9.1+), refused by the others.
          rng: PRNG key for decoder noise injection (0.9.1); None turns it off. Tiles reuse it.
          tiling: explicit tiles (PIXEL units, diffusers' tiled-decoding semantics); see
            `ltx_jax.vae.tiling.DecodeTiling`. None: no tiling unless `memory_budget` asks.
          memory_budget: bytes of activation memory allowed; the largest tiles estimated to
            fit are chosen (`auto_tiling`). Exclusive with `tiling`.

        Returns:
          [B, 1 + (F' - 1) t, H' s, W' s, 3].
        """
        z = jnp.asarray(latents)
        self._check_latents(z)
        z = constrain_video(z)
        t = self._timestep(timestep, z.shape[0])
        if memory_budget is not None:
            if tiling is not None:
                raise ValueError("pass either tiling= or memory_budget=, not both")
            tiling = self.decode_tiling(z.shape, memory_budget, z.dtype)
        if tiling is not None:
            tiling.validate(self.spatial_compression, self.temporal_compression)
            if not needs_tiles(tiling, z.shape, spatial=self.spatial_compression, temporal=self.temporal_compression):
                tiling = None  # one tile is the whole input: the untiled program
        return _run_decoder(self.decoder, z, t, rng, tiling)

    def decode_tiling(self, latent_shape, memory_budget: int, dtype=None) -> DecodeTiling | None:
        """The tiling `decode(memory_budget=...)` uses for latents of this shape (None: untiled)."""
        itemsize = jnp.dtype(dtype or self.decoder.conv_in.dtype).itemsize
        return auto_tiling(self.cfg, tuple(latent_shape), int(memory_budget), itemsize)

    def normalize(self, latents: jax.Array) -> jax.Array:
        """Raw -> diffusion space: (z - mean) * scaling_factor / std, per channel."""
        mean, std = self.latents_mean[...], self.latents_std[...]
        return ((latents - mean) * self.cfg.scaling_factor / std).astype(latents.dtype)

    def denormalize(self, latents: jax.Array) -> jax.Array:
        """Diffusion -> raw space: z * std / scaling_factor + mean, per channel."""
        mean, std = self.latents_mean[...], self.latents_std[...]
        return (latents * std / self.cfg.scaling_factor + mean).astype(latents.dtype)


def count_params(module_or_state) -> int:
    """Number of parameter scalars of a module or (abstract) state; statistics excluded."""
    state = nnx.state(module_or_state, nnx.Param) if isinstance(module_or_state, nnx.Module) else module_or_state
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state)))
