"""Memory-bounded Video-VAE decoding: spatial and temporal tiles blended linearly in their overlaps.

The tiling follows diffusers' `AutoencoderKLLTXVideo` (`tiled_decode`, `_temporal_tiled_decode`,
`blend_v/h/t`) step for step, so with the same settings the result is the same: tiles are cut in
latent space at a pixel stride / 32 (frames: / 8), decoded independently, and each tile is blended
with the (already blended) tile above / to the left / before it over `tile - stride` pixels (or
frames), then cropped to the stride. All sizes of `DecodeTiling` are in PIXEL units (diffusers'
`tile_sample_min_*` / `tile_sample_stride_*`).

The decoder sees zero padding at a tile's spatial edges and replicated frames at its temporal
edges, so tiled decoding is an approximation whose seams the blending hides; `auto_tiling` picks
the largest tiles whose estimated activation memory fits a byte budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from ltx_jax.vae.config import VAEConfig
from ltx_jax.vae.shapes import nearest_valid

# Peak temporaries ~ ACTIVATION_FACTOR x the largest single decoder activation of one tile (a
# conv's padded input, its output, the resnet residual: 2.9x measured with `memory_analysis()` on
# CPU), plus, when tiled, OUTPUT_FACTOR x the decoded video (the stacked tile results and their
# blended concatenation: 1.9x measured without overlap). tests/vae/test_vae_tiling.py checks that
# the estimate bounds the compiled programs.
ACTIVATION_FACTOR = 4.0
OUTPUT_FACTOR = 2.5


@dataclasses.dataclass(frozen=True)
class DecodeTiling:
    """Decode tile sizes and strides in pixels (frames for the temporal ones).

    Attributes:
      tile_height, tile_width: spatial tile size; tiling starts once the latent height or width
        exceeds tile / 32 (diffusers' condition). None: no spatial tiling.
      stride_height, stride_width: distance between tile starts; tile - stride pixels blend.
      tile_frames: temporal tile length; a tile decodes tile_frames / 8 + 1 latent frames. None:
        no temporal tiling.
      stride_frames: distance between temporal tile starts; tile_frames - stride_frames blend.
    """

    tile_height: int | None = 512
    tile_width: int | None = 512
    stride_height: int = 448
    stride_width: int = 448
    tile_frames: int | None = 16
    stride_frames: int = 8

    def validate(self, spatial: int, temporal: int) -> None:
        """Raises ValueError for sizes that do not fall on latent boundaries."""

        def check(name, v, unit, lo):
            if v is None:
                return
            if v < lo or v % unit:
                near = " or ".join(map(str, nearest_valid(v, lo, unit)))
                raise ValueError(f"DecodeTiling.{name}={v} must be a multiple of {unit} and >= {lo}: nearest valid {near}")

        for name, unit in (("tile_height", spatial), ("tile_width", spatial), ("tile_frames", temporal)):
            check(name, getattr(self, name), unit, unit)
        for name, tile, unit in (("stride_height", self.tile_height, spatial),
                                 ("stride_width", self.tile_width, spatial),
                                 ("stride_frames", self.tile_frames, temporal)):
            if tile is None:
                continue
            check(name, getattr(self, name), unit, unit)
            if getattr(self, name) > tile:
                raise ValueError(f"DecodeTiling.{name}={getattr(self, name)} exceeds its tile size {tile}")


def needs_tiles(tiling: DecodeTiling | None, latent_shape, *, spatial: int, temporal: int) -> bool:
    """Whether `tiled_decode` would cut latents of this shape at all (diffusers' conditions)."""
    if tiling is None:
        return False
    frames = tiling.tile_frames is not None and latent_shape[1] > tiling.tile_frames // temporal
    return frames or _needs_spatial(latent_shape, tiling, spatial)


def _blend(a: jax.Array, b: jax.Array, extent: int, axis: int) -> jax.Array:
    """b's first `extent` slices along `axis` fade in from a's last ones (diffusers blend_v/h/t)."""
    extent = min(a.shape[axis], b.shape[axis], extent)
    if extent <= 0:
        return b
    w = jnp.arange(extent, dtype=jnp.float32) / extent
    w = w.reshape([-1 if i == axis else 1 for i in range(b.ndim)])  # [E] -> broadcast along `axis`
    head = jax.lax.slice_in_dim(b, 0, extent, axis=axis).astype(jnp.float32)
    tail = jax.lax.slice_in_dim(a, a.shape[axis] - extent, a.shape[axis], axis=axis).astype(jnp.float32)
    mixed = (tail * (1 - w) + head * w).astype(b.dtype)
    return jnp.concatenate([mixed, jax.lax.slice_in_dim(b, extent, b.shape[axis], axis=axis)], axis=axis)


def _needs_spatial(z_shape, tiling: DecodeTiling, s: int) -> bool:
    if tiling.tile_height is None or tiling.tile_width is None:
        return False
    return z_shape[3] > tiling.tile_width // s or z_shape[2] > tiling.tile_height // s


def _ranges(n: int, tile: int, stride: int) -> list[tuple[int, int]]:
    return [(i, min(i + tile, n)) for i in range(0, n, stride)]


def _decode_grouped(decode: Callable, z: jax.Array, boxes: list) -> dict:
    """Decodes every latent box; boxes of one size run in one `lax.map` (one compiled body, tiles in
    sequence, so activation memory is one tile's)."""
    groups: dict[tuple, list] = {}
    for box in boxes:
        groups.setdefault(tuple(b - a for a, b in box), []).append(box)
    out = {}
    for members in groups.values():
        crops = [z[:, fa:fb, ha:hb, wa:wb] for (fa, fb), (ha, hb), (wa, wb) in members]
        if len(crops) == 1:
            out[members[0]] = decode(crops[0])
            continue
        stacked = jax.lax.map(decode, jnp.stack(crops))  # N x [B, f, h, w, C] -> [N, B, F, H, W, 3]
        out.update({box: stacked[k] for k, box in enumerate(members)})
    return out


def _blend_spatial(tiles: list[list[jax.Array]], tiling: DecodeTiling, height: int, width: int) -> jax.Array:
    """diffusers `tiled_decode`'s blending: rows x cols pixel tiles -> [B, F, height, width, 3]."""
    bh, bw = tiling.tile_height - tiling.stride_height, tiling.tile_width - tiling.stride_width
    rows = []  # blended tiles: each blend reads its neighbours' blended values, as diffusers' in-place code
    for i, raw_row in enumerate(tiles):
        row = []
        for j, tile in enumerate(raw_row):
            if i > 0:
                tile = _blend(rows[i - 1][j], tile, bh, axis=2)
            if j > 0:
                tile = _blend(row[j - 1], tile, bw, axis=3)
            row.append(tile)
        rows.append(row)
    out = jnp.concatenate(
        [jnp.concatenate([t[:, :, :tiling.stride_height, :tiling.stride_width] for t in row], axis=3) for row in rows],
        axis=2,
    )
    return out[:, :, :height, :width]


def tiled_decode(decode: Callable[[jax.Array], jax.Array], z: jax.Array, tiling: DecodeTiling,
                 *, spatial: int, temporal: int) -> jax.Array:
    """Decodes latents tile by tile (diffusers `_decode` dispatch with tiling and framewise decoding on).

    Args:
      decode: latents tile [B, f, h, w, C] -> pixels [B, 1 + (f - 1) t, h s, w s, 3].
      z: [B, F', H', W', C] latents.
      tiling: tile sizes and strides in pixels.
      spatial, temporal: the VAE's compression factors s and t.

    Returns:
      [B, 1 + (F' - 1) t, H' s, W' s, 3].
    """
    tiling.validate(spatial, temporal)
    _, f, h, w, _ = z.shape
    s, t = spatial, temporal
    if tiling.tile_frames is not None and f > tiling.tile_frames // t:
        t_ranges = _ranges(f, tiling.tile_frames // t + 1, tiling.stride_frames // t)
    else:
        t_ranges = [(0, f)]
    if _needs_spatial(z.shape, tiling, s):
        rows = _ranges(h, tiling.tile_height // s, tiling.stride_height // s)
        cols = _ranges(w, tiling.tile_width // s, tiling.stride_width // s)
    else:
        rows, cols = [(0, h)], [(0, w)]
    pixels = _decode_grouped(decode, z, [(fr, r, c) for fr in t_ranges for r in rows for c in cols])
    if len(rows) * len(cols) == 1:
        chunks = [pixels[(fr, rows[0], cols[0])] for fr in t_ranges]
    else:
        chunks = [_blend_spatial([[pixels[(fr, r, c)] for c in cols] for r in rows], tiling, h * s, w * s)
                  for fr in t_ranges]
    if len(chunks) == 1:
        return chunks[0]
    blend = tiling.tile_frames - tiling.stride_frames
    out, prev = [chunks[0][:, :tiling.stride_frames + 1]], chunks[0]
    for tile in chunks[1:]:
        tile = _blend(prev, tile[:, :-1], blend, axis=1)  # diffusers drops a later tile's last frame
        out.append(tile[:, :tiling.stride_frames])
        prev = tile
    return jnp.concatenate(out, axis=1)[:, :(f - 1) * t + 1]


# ------------------------------------------------------------------------------ memory budget


def decoder_activation_bytes(cfg: VAEConfig, latent_shape, itemsize: int = 4) -> int:
    """The largest single activation of one decoder call on latents [B, F', H', W', C] (bytes)."""
    b, f, h, w = latent_shape[:4]
    rev = lambda v: tuple(reversed(v))  # noqa: E731
    ch, scaling, factor = rev(cfg.decoder_block_out_channels), rev(cfg.decoder_spatio_temporal_scaling), rev(cfg.upsample_factor)
    sizes = [f * h * w * ch[0]]
    for i in range(len(ch)):
        if scaling[i]:
            # The upsampler's conv output before depth-to-space: C * 8 / factor at the input size.
            sizes.append(f * h * w * ch[i] * 8 // factor[i])
            f, h, w = 2 * f - 1, 2 * h, 2 * w
        sizes.append(f * h * w * ch[i] // factor[i])
    p, pt = cfg.patch_size, cfg.patch_size_t
    sizes.append(f * pt * h * p * w * p * cfg.out_channels)
    return b * max(sizes) * itemsize


def estimate_decode_bytes(cfg: VAEConfig, latent_shape, tiling: DecodeTiling | None, itemsize: int = 4) -> int:
    """Estimated peak temporary memory of a (tiled) decode: the largest tile's activations."""
    b, f, h, w = latent_shape[:4]
    s, t = cfg.spatial_compression, cfg.temporal_compression
    if not needs_tiles(tiling, latent_shape, spatial=s, temporal=t):
        return int(ACTIVATION_FACTOR * decoder_activation_bytes(cfg, latent_shape, itemsize))
    video = b * (1 + (f - 1) * t) * h * s * w * s * cfg.out_channels * itemsize
    if tiling.tile_frames is not None and f > tiling.tile_frames // t:
        f = tiling.tile_frames // t + 1
    if _needs_spatial((b, f, h, w), tiling, s):
        h, w = min(h, tiling.tile_height // s), min(w, tiling.tile_width // s)
    return int(ACTIVATION_FACTOR * decoder_activation_bytes(cfg, (b, f, h, w), itemsize) + OUTPUT_FACTOR * video)


def _overlap(tile: int, unit: int) -> int:
    """diffusers' default proportions (512 / 448, 16 / 8) rounded to the latent grid."""
    return max(unit, (tile // 8) // unit * unit) if tile > unit else 0


def auto_tiling(cfg: VAEConfig, latent_shape, budget_bytes: int, itemsize: int = 4) -> DecodeTiling | None:
    """The tiling with the least decode work whose estimated peak memory fits `budget_bytes`.

    None when the whole decode fits. Tiles are square multiples of 32 pixels, overlapping by ~1/8
    (at least one latent); temporal tiles are 8k frames with a stride of half a tile.

    Raises:
      ValueError: even the smallest tiles exceed the budget.
    """
    b, f, h, w = latent_shape[:4]
    s, t = cfg.spatial_compression, cfg.temporal_compression
    if estimate_decode_bytes(cfg, latent_shape, None, itemsize) <= budget_bytes:
        return None
    frames = [None] + [t * k for k in (16, 8, 4, 2) if k < f - 1]
    sides = [None] + [s * k for k in range(max(h, w) - 1, 1, -1)]
    best, best_work, smallest = None, math.inf, math.inf
    for tf in frames:
        for side in sides:
            if side is None and tf is None:
                continue
            tiling = DecodeTiling(
                tile_height=side, tile_width=side,
                stride_height=side - _overlap(side, s) if side else 448,
                stride_width=side - _overlap(side, s) if side else 448,
                tile_frames=tf, stride_frames=tf // 2 if tf else 8,
            )
            need = estimate_decode_bytes(cfg, latent_shape, tiling, itemsize)
            smallest = min(smallest, need)
            if need > budget_bytes:
                continue
            work = _work(latent_shape, tiling, s, t)
            if work < best_work:
                best, best_work = tiling, work
    if best is None:
        raise ValueError(
            f"memory_budget {budget_bytes} bytes is below the smallest decode tile's estimated "
            f"{smallest} bytes; raise the budget to at least {smallest} or decode a smaller batch"
        )
    return best


def _work(latent_shape, tiling: DecodeTiling, s: int, t: int) -> int:
    """Latent voxels decoded in total, overlaps included (a proxy for time)."""
    _, f, h, w = latent_shape[:4]

    def count(n, tile, stride):
        return sum(min(tile, n - i) for i in range(0, n, stride))

    if tiling.tile_frames is not None and f > tiling.tile_frames // t:
        frames = count(f, tiling.tile_frames // t + 1, tiling.stride_frames // t)
    else:
        frames = f
    if _needs_spatial((1, f, h, w), tiling, s):
        area = count(h, tiling.tile_height // s, tiling.stride_height // s) * count(w, tiling.tile_width // s, tiling.stride_width // s)
    else:
        area = h * w
    return frames * area
