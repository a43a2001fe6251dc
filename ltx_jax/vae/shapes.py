"""Pixel video sizes the Video-VAE accepts: F = 8k+1 frames, H and W positive multiples of 32.

The one place this rule lives: `CausalVideoAutoencoder.check_video_shape` (with its configuration's
strides), `LTXPipeline`'s size checks (`ltx_jax.pipeline_inputs.latent_grid`), the `generate`
verb's rounding and `preprocess`'s bucket check all come here. A refusal names the value, the rule
and the nearest valid values, e.g. "frames=20 is not 8k+1; nearest valid: 17, 25".
"""

from __future__ import annotations


def nearest_valid(n: int, first: int, step: int) -> list[int]:
    """The values `first + step * k` (k >= 0) just below and just above `n`.

    One value when `n` is below `first` (nothing valid lies under it) or is itself valid.
    """
    if n <= first:
        return [first]
    lo = first + (n - first) // step * step
    return [lo] if lo == n else [lo, lo + step]


def check_video_size(frames: int, height: int, width: int, scale=(8, 32, 32)) -> tuple[int, int, int]:
    """Pixel video size -> latent (F', H', W'), refusing sizes the VAE cannot produce.

    Args:
      frames, height, width: the pixel size.
      scale: (t, s_h, s_w) compression factors; frames must be t*k + 1, height and width positive
        multiples of s_h and s_w.

    Returns:
      ((frames - 1) / t + 1, height / s_h, width / s_w).

    Raises:
      ValueError: naming the first offending value, the rule and the nearest valid values.
    """
    t, sh, sw = scale
    if frames < 1 or (frames - 1) % t:
        near = nearest_valid(frames, 1, t)
        raise ValueError(f"frames={frames} is not {t}k+1; nearest valid: {', '.join(map(str, near))}")
    for name, n, s in (("height", height, sh), ("width", width, sw)):
        if n < s or n % s:
            near = nearest_valid(n, s, s)
            raise ValueError(f"{name}={n} is not a positive multiple of {s}; nearest valid: "
                             f"{', '.join(map(str, near))}")
    return (frames - 1) // t + 1, height // sh, width // sw


def round_video_size(frames: int, height: int, width: int, scale=(8, 32, 32)
                     ) -> tuple[tuple[int, int, int], list[str]]:
    """Nearest valid (frames, height, width) and one note per value that changed (for the CLI)."""
    t, sh, sw = scale
    new_f = max(int(round((frames - 1) / t)) * t + 1, 1)
    new_h, new_w = (max(int(round(n / s)) * s, s) for n, s in ((height, sh), (width, sw)))
    notes = [f"{name} {old} -> {new} ({rule})" for name, old, new, rule in (
        ("frames", frames, new_f, f"{t}k+1"), ("height", height, new_h, f"multiple of {sh}"),
        ("width", width, new_w, f"multiple of {sw}")) if old != new]
    return (new_f, new_h, new_w), notes
