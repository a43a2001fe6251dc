"""The built-in dataset: captioned clips of a coloured shape moving in a named direction.

Clips are rendered straight in latent space (channels-last [F, H, W, C], roughly zero-mean and
unit-variance, like normalised VAE latents), and captions ("a red square moving left") are embedded
with a fixed random word table standing in for T5 features. Everything is a pure function of
(seed, index), so a fresh machine trains with no download and every host sees the same data. The
caption names exactly what the model has to draw, so the loss can only fall by reading the text.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

COLOURS = ("red", "green", "blue", "yellow", "white", "purple")
SHAPES = ("square", "circle", "bar")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
VOCAB = ("<eos>", "a", "moving", *COLOURS, *SHAPES, *DIRECTIONS)
_WORD_ID = {w: i for i, w in enumerate(VOCAB)}


def caption_of(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


@functools.lru_cache(maxsize=8)
def _tables(channels: int, caption_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed colour vectors [colours, C] and word embeddings [vocab, caption] (seeded, not run)."""
    rng = np.random.default_rng(20250100)
    colours = rng.standard_normal((len(COLOURS), channels)).astype(np.float32)
    colours *= 1.5 / np.sqrt(np.mean(colours**2, axis=1, keepdims=True))  # RMS 1.5 per channel
    words = rng.standard_normal((len(VOCAB), caption_channels)).astype(np.float32)
    return colours, words


def embed_caption(caption: str, text_len: int, caption_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Caption -> ([S, caption] float32 features, [S] int32 mask); words then <eos>, zero padded."""
    _, words = _tables(1, caption_channels)
    ids = [_WORD_ID[w] for w in caption.split()] + [_WORD_ID["<eos>"]]
    if len(ids) > text_len:
        raise ValueError(f"caption {caption!r} needs {len(ids)} tokens, more than data.text_len={text_len}")
    text = np.zeros((text_len, caption_channels), np.float32)
    text[: len(ids)] = words[ids]
    mask = np.zeros((text_len,), np.int32)
    mask[: len(ids)] = 1
    return text, mask


def null_caption(text_len: int, caption_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The empty-prompt embedding (only <eos>, as T5 encodes "") used by caption dropout."""
    _, words = _tables(1, caption_channels)
    text = np.zeros((text_len, caption_channels), np.float32)
    text[0] = words[_WORD_ID["<eos>"]]
    mask = np.zeros((text_len,), np.int32)
    mask[0] = 1
    return text, mask


def render_clip(colour: str, shape: str, direction: str, start: tuple[int, int],
                grid: tuple[int, int, int], channels: int) -> np.ndarray:
    """[F, H, W, C] latents: the shape's colour vector on its pixels, a constant background."""
    f, h, w = grid
    colours, _ = _tables(channels, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    size = max(1, min(h, w) // 3)
    dy, dx = DIRECTIONS[direction]
    out = np.full((f, h, w, channels), -0.5, np.float32)
    for i in range(f):
        cy, cx = (start[0] + dy * i) % h, (start[1] + dx * i) % w
        # Toroidal distances so a shape leaving one edge enters the other.
        ey = np.minimum(np.abs(yy - cy), h - np.abs(yy - cy))
        ex = np.minimum(np.abs(xx - cx), w - np.abs(xx - cx))
        if shape == "square":
            on = (ey <= size // 2) & (ex <= size // 2)
        elif shape == "circle":
            on = ey**2 + ex**2 <= max(1, size * size // 2)
        else:  # bar: long across the motion
            on = (ey <= size) & (ex == 0) if dx else (ex <= size) & (ey == 0)
        out[i][on] = colours[COLOURS.index(colour)]
    return out


class SyntheticClips:
    """A random-access source (grain `RandomAccessDataSource` protocol) of captioned clips.

    Example i has the latent grid of bucket `i % len(buckets)`; each element is a dict of numpy
    arrays: latents [F, H, W, C] float32, text [S, caption] float32, text_mask [S] int32.
    """

    def __init__(self, num_examples: int, buckets: Sequence[tuple[int, int, int]], *, channels: int,
                 caption_channels: int, text_len: int, seed: int = 0):
        self.num_examples, self.buckets = int(num_examples), [tuple(b) for b in buckets]
        self.channels, self.caption_channels, self.text_len, self.seed = channels, caption_channels, text_len, seed

    def __len__(self) -> int:
        return self.num_examples

    def bucket_of(self, index: int) -> int:
        return index % len(self.buckets)

    def caption(self, index: int) -> tuple[str, str, str, tuple[int, int]]:
        rng = np.random.default_rng([self.seed, index])
        grid = self.buckets[self.bucket_of(index)]
        colour = COLOURS[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
        start = (int(rng.integers(grid[1])), int(rng.integers(grid[2])))
        return colour, shape, direction, start

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(f"example {index} out of range [0, {self.num_examples})")
        colour, shape, direction, start = self.caption(index)
        latents = render_clip(colour, shape, direction, start, self.buckets[self.bucket_of(index)], self.channels)
        text, mask = embed_caption(caption_of(colour, shape, direction), self.text_len, self.caption_channels)
        return {"latents": latents, "text": text, "text_mask": mask}

    def null_text(self) -> tuple[np.ndarray, np.ndarray]:
        return null_caption(self.text_len, self.caption_channels)
