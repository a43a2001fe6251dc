"""Inputs of `LTXPipeline`: validation, per-semantics defaults, conditioning images and items.

Every refusal names the value, the rule and the nearest valid values (the library refuses; the
`generate` verb rounds and says so, through `round_video_size`). Images follow diffusers' numpy
convention: `[H, W, 3]` or `[B, H, W, 3]`, uint8 in [0, 255] or float in [0, 1]; a path to an image
file is also accepted (read with PyAV, which is already a dependency for video writing).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ltx_jax.vae.shapes import check_video_size, round_video_size  # noqa: F401 (re-exported)

SEMANTICS = ("diffusers", "official")


class _Default:
    """Marks an argument whose default depends on `semantics` (see `DEFAULTS`)."""

    def __repr__(self) -> str:
        return "<per-semantics default>"


DEFAULT = _Default()

# diffusers' LTXPipeline defaults (the api.md signature) and the official repository's inference
# defaults for the 2B 0.9.x configs (ltx_spec.md section 4.6; `text_encoder_max_tokens` 256).
DEFAULTS: dict[str, dict[str, Any]] = {
    "diffusers": dict(
        num_inference_steps=50, guidance_scale=3.0, decode_timestep=0.0, decode_noise_scale=None,
        max_sequence_length=128, stg_scale=0.0, skip_block_list=None, rescaling_scale=1.0,
        guidance_rescale=0.0, cfg_star_rescale=False, image_cond_noise_scale=0.0,
    ),
    "official": dict(
        num_inference_steps=40, guidance_scale=3.0, decode_timestep=0.05, decode_noise_scale=0.025,
        max_sequence_length=256, stg_scale=1.0, skip_block_list=[19], rescaling_scale=0.7,
        guidance_rescale=0.0, cfg_star_rescale=False, image_cond_noise_scale=0.15,
    ),
}


def resolve(semantics: str, **given) -> dict[str, Any]:
    """The call's settings: given values, with `DEFAULT` replaced by the semantics' default."""
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics={semantics!r} is not one of {SEMANTICS}")
    table = DEFAULTS[semantics]
    return {k: (table[k] if v is DEFAULT else v) for k, v in given.items()}


# ------------------------------------------------------------------------------------ sizes


# One rule for the pipeline, the VAE and the CLI (ltx_jax/vae/shapes.py); `latent_grid` is the
# name the pipeline modules and benches import.
latent_grid = check_video_size


def prompt_list(prompt, name: str = "prompt") -> list[str]:
    """A string or a non-empty list of strings -> list."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else []
    if not prompts:
        raise ValueError(f"{name} must be a string or a non-empty list of strings; got {prompt!r}")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] is {type(prompts[bad[0]]).__name__}, not a string")
    return prompts


def negative_list(negative_prompt, batch: int) -> list[str]:
    negs = [negative_prompt] * batch if isinstance(negative_prompt, str) else prompt_list(negative_prompt, "negative_prompt")
    if len(negs) != batch:
        raise ValueError(f"negative_prompt has {len(negs)} entries for {batch} prompts; give one string or one per prompt")
    return negs


# ------------------------------------------------------------------------------------ images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 [H, W, C] with its own channel count (1 gray, 2 gray+alpha, 3, 4)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image file not found: {p}")
    import av

    try:
        with av.open(str(p)) as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read image file {p}: {e}") from None
    name = frame.format.name
    if name.startswith("gray"):
        return frame.to_ndarray(format="gray")[..., None]
    if name.startswith(("ya", "rgba", "bgra", "argb", "abgr", "yuva", "pal8")):
        return frame.to_ndarray(format="rgba")
    return frame.to_ndarray(format="rgb24")


def image_array(image) -> np.ndarray:
    """api.md's image -> float32 [B, H, W, 3] in [0, 1] (uint8 is divided by 255)."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[None]  # [H, W, C] -> [1, H, W, C]
    if arr.ndim != 4:
        raise ValueError(f"image must be [H, W, 3] or [B, H, W, 3] (channels-last), got shape {arr.shape}")
    if arr.shape[-1] != 3:
        hint = " (channels-first? use channels-last)" if arr.shape[1] == 3 else ""
        raise ValueError(f"image has {arr.shape[-1]} channels in its last axis; 3 (RGB) are needed{hint}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"image dtype {arr.dtype} is neither uint8 [0, 255] nor float [0, 1]")
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"float image values span [{lo:g}, {hi:g}]; they must be in [0, 1] (uint8 for [0, 255])")
    return arr


def resize_nearest(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """[B, H, W, C] -> [B, height, width, C] as torch's `interpolate(mode="nearest")` (diffusers)."""
    _, h, w, _ = images.shape
    rows = np.minimum(np.floor(np.arange(height) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(width) * (w / width)).astype(np.int64), w - 1)
    return images[:, rows][:, :, cols]


def resize_crop_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Official preprocessing: center-crop to the target aspect ratio, then bilinear resize."""
    import jax

    b, h, w, c = images.shape
    aspect = width / height
    if w / h > aspect:
        new_w = int(round(h * aspect))
        x0 = (w - new_w) // 2
        images = images[:, :, x0:x0 + new_w]
    else:
        new_h = int(round(w / aspect))
        y0 = (h - new_h) // 2
        images = images[:, y0:y0 + new_h]
    out = jax.image.resize(images, (b, height, width, c), method="linear", antialias=False)
    return np.asarray(out, np.float32)


def broadcast_batch(x: np.ndarray, batch: int, name: str) -> np.ndarray:
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, batch, axis=0)
    raise ValueError(f"{name} has batch {x.shape[0]}; give 1 or one per prompt ({batch})")


# ------------------------------------------------------------------------------------ conditioning items


@dataclasses.dataclass
class ConditioningItem:
    """The official pipeline's conditioning item: an image or clip at a pixel frame, with strength.

    Attributes:
      media: an image (see `image_array`) or a clip [F, H, W, 3] / [B, F, H, W, 3] with F = 8k+1,
        values as for images.
      media_frame_number: the pixel frame it starts at. Items at frame 0 are written into the first
        latent frames; items at later frames become extra tokens with their own positions (a clip
        must start at a multiple of 8; see `pipeline_tokens`).
      conditioning_strength: s in [0, 1]; tokens start as lerp(noise, latent, s) and enter
        denoising once t < 1 - s (1 keeps them fixed).
    """

    media: Any
    media_frame_number: int = 0
    conditioning_strength: float = 1.0


def media_clip(media) -> np.ndarray:
    """A conditioning item's media -> float32 [B, F, H, W, 3] in [0, 1]."""
    if isinstance(media, (str, os.PathLike)):
        return image_array(media)[:, None]
    arr = np.asarray(media)
    if arr.ndim == 5:
        b, f = arr.shape[:2]
        return image_array(arr.reshape((b * f,) + arr.shape[2:])).reshape(arr.shape[:4] + (3,))
    if arr.ndim == 4 and _looks_like_clip(arr):
        return image_array(arr)[None]  # [F, H, W, 3] -> [1, F, H, W, 3]
    return image_array(arr)[:, None]  # images: [B, H, W, 3] -> [B, 1, H, W, 3]


def _looks_like_clip(arr: np.ndarray) -> bool:
    # A 4-d array with more than one leading entry of 8k+1 length is read as a clip [F, H, W, 3].
    return arr.shape[0] > 1 and (arr.shape[0] - 1) % 8 == 0


def check_items(items: Sequence[ConditioningItem] | None) -> list[ConditioningItem]:
    items = list(items or [])
    for i, it in enumerate(items):
        if not isinstance(it, ConditioningItem):
            raise ValueError(f"conditioning_items[{i}] is {type(it).__name__}, not a ConditioningItem")
        if not isinstance(it.media_frame_number, (int, np.integer)) or it.media_frame_number < 0:
            raise ValueError(f"conditioning_items[{i}].media_frame_number={it.media_frame_number!r} is not a "
                             f"non-negative integer (a pixel frame index)")
        if not 0.0 <= it.conditioning_strength <= 1.0:
            raise ValueError(f"conditioning_items[{i}].conditioning_strength={it.conditioning_strength} is not in [0, 1]")
    return items
