"""`ltx-jax preprocess`: videos + captions -> ArrayRecord shards of VAE latents and T5 embeddings.

Sources: a manifest of local video files (JSONL lines `{"video": path, "caption": text}` or a CSV
with `video,caption` columns; relative paths are relative to the manifest), or a TFDS dataset read
through `tfds.data_source` (random access, no TensorFlow input pipeline; needs the optional
tensorflow-datasets package). Each clip is fitted to a bucket (F, H, W): the bucket whose aspect
ratio is closest among those the clip has enough frames for; its first F frames are centre-cropped
to the bucket's aspect ratio and resized bilinearly, mapped to [-1, 1], encoded with the VAE
(posterior mean) and normalised into diffusion space (`vae.normalize`), which is what the trainer's
loss expects. Captions go through the T5 tokenizer (fixed length, `--text-len`) and encoder.

The output folder is what `data.source=arrayrecord data.paths=[OUT]` reads (`ltx_jax.data.records`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ltx_jax.data.records import write_shards

_VIDEO_KEYS = ("video", "path", "file", "video_path")
_CAPTION_KEYS = ("caption", "text", "prompt")


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="JSONL or CSV of (video path, caption) rows")
    src.add_argument("--tfds", metavar="NAME", help="a TFDS dataset name read with tfds.data_source")
    p.add_argument("--tfds-split", default="train")
    p.add_argument("--tfds-dir", default=None, help="TFDS data_dir (prepared datasets; nothing is downloaded)")
    p.add_argument("--tfds-video-key", default="video")
    p.add_argument("--tfds-caption-key", default="caption")
    p.add_argument("--vae", required=True, help="VAE folder or file (ltx_jax.load_vae)")
    p.add_argument("--text-encoder", required=True, help="T5 encoder folder (ltx_jax.load_text_encoder)")
    p.add_argument("--tokenizer", required=True, help="T5 tokenizer folder")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--bucket", action="append", default=None, metavar="FxHxW",
                   help="pixel size of a bucket, e.g. 121x512x768 (repeatable); default 121x512x768")
    p.add_argument("--text-len", type=int, default=128, help="T5 tokens per caption")
    p.add_argument("--per-shard", type=int, default=1024, help="examples per ArrayRecord file")
    p.add_argument("--limit", type=int, default=0, help="stop after this many clips (0: all)")


def main(args) -> int:
    buckets = [parse_bucket(b) for b in (args.bucket or ["121x512x768"])]
    if args.manifest:
        rows = read_manifest(args.manifest)
    else:
        rows = tfds_rows(args.tfds, args.tfds_split, args.tfds_dir, args.tfds_video_key, args.tfds_caption_key)
    enc = Encoders(args.vae, args.text_encoder, args.tokenizer, args.text_len)
    for f, h, w in buckets:
        enc.check_bucket(f, h, w)
    count = [0]

    def examples():
        for i, (video, caption) in enumerate(rows):
            if args.limit and i >= args.limit:
                return
            frames = load_frames(video) if isinstance(video, (str, os.PathLike)) else np.asarray(video)
            example = enc.example(fit_to_bucket(frames, buckets), caption)
            count[0] += 1
            if count[0] % 50 == 0:  # a long encode shows it is moving
                print(f"  encoded {count[0]} clips", file=sys.stderr, flush=True)
            yield example, caption

    index = write_shards(args.out, examples(), enc.text([""]), per_shard=args.per_shard)
    grids = sorted({tuple(g) for g in index["grids"]})
    print(f"wrote {count[0]} examples in {len(index['shards'])} shard(s) to {args.out}; latent grids {grids}",
          file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------- sources


def read_manifest(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(video path, caption) rows of a JSONL or CSV manifest; paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest not found: {path}")
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif path.suffix.lower() in (".csv", ".tsv"):
        records = list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    else:
        raise ValueError(f"manifest {path}: unknown format {path.suffix!r}; use .jsonl or .csv")
    rows = []
    for n, rec in enumerate(records, 1):
        video = next((rec[k] for k in _VIDEO_KEYS if rec.get(k)), None)
        caption = next((rec[k] for k in _CAPTION_KEYS if k in rec), None)
        if video is None or caption is None:
            raise ValueError(f"manifest {path} row {n}: needs a video path (one of {_VIDEO_KEYS}) and a "
                             f"caption (one of {_CAPTION_KEYS}); got keys {sorted(rec)}")
        p = Path(video) if Path(video).is_absolute() else path.parent / video
        if not p.is_file():
            raise ValueError(f"manifest {path} row {n}: video file not found: {p}")
        rows.append((str(p), str(caption)))
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    return rows


def tfds_rows(name: str, split: str, data_dir: str | None, video_key: str, caption_key: str
              ) -> Iterator[tuple[np.ndarray, str]]:
    """(uint8 [F, H, W, 3] frames, caption) from a prepared TFDS dataset via `tfds.data_source`."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(f"--tfds {name} needs tensorflow-datasets (pip install tensorflow-datasets); "
                         "or write a manifest of video files and captions") from None
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return _tfds_examples(source, name, video_key, caption_key)


def _tfds_examples(source, name: str, video_key: str, caption_key: str) -> Iterator[tuple[np.ndarray, str]]:
    for i in range(len(source)):
        ex = source[i]
        if video_key not in ex or caption_key not in ex:
            raise ValueError(f"--tfds {name}: example has keys {sorted(ex)}; set --tfds-video-key/--tfds-caption-key")
        caption = ex[caption_key]
        yield np.asarray(ex[video_key]), caption.decode() if isinstance(caption, bytes) else str(caption)


def load_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video file as uint8 [F, H, W, 3] (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot decode video {path}: {e}") from None
    if not frames:
        raise ValueError(f"video {path} has no frames")
    return np.stack(frames)


# ------------------------------------------------------------------------------------- buckets


def parse_bucket(text: str) -> tuple[int, int, int]:
    try:
        f, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--bucket {text!r}: expected FRAMESxHEIGHTxWIDTH, e.g. 121x512x768") from None
    return f, h, w


def choose_bucket(frames: int, height: int, width: int, buckets) -> tuple[int, int, int]:
    """The bucket with the closest aspect ratio (log scale) among those with <= `frames` frames;
    ties go to more frames."""
    fitting = [b for b in buckets if b[0] <= frames]
    if not fitting:
        raise ValueError(f"a clip of {frames} frames is shorter than every bucket {sorted(buckets)}")
    aspect = np.log(width / height)
    return min(fitting, key=lambda b: (abs(np.log(b[2] / b[1]) - aspect), -b[0]))


def fit_to_bucket(frames: np.ndarray, buckets) -> np.ndarray:
    """uint8 [F0, H0, W0, 3] -> float32 [F, H, W, 3] in [-1, 1] for the chosen bucket."""
    from ltx_jax.pipeline_inputs import resize_crop_bilinear

    f, h, w = choose_bucket(*frames.shape[:3], buckets)
    clip = frames[:f].astype(np.float32) / 255.0
    return resize_crop_bilinear(clip, h, w) * 2.0 - 1.0  # frames act as the batch axis


# ------------------------------------------------------------------------------------- encoders


class Encoders:
    """The VAE and T5 (+ tokenizer), each compiled once per input shape."""

    def __init__(self, vae_path, text_encoder_path, tokenizer_path, text_len: int):
        import jax
        from flax import nnx

        from ltx_jax.convert.t5 import load_text_encoder
        from ltx_jax.convert.vae import load_vae
        from ltx_jax.text.tokenizer import load_tokenizer

        self.vae = load_vae(vae_path)
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.text_len = text_len
        vae_def, vae_state = nnx.split(self.vae)
        t5_def, t5_state = nnx.split(load_text_encoder(text_encoder_path))

        @jax.jit
        def encode_video(state, video):  # [1, F, H, W, 3] -> [1, F', H', W', C] diffusion space
            vae = nnx.merge(vae_def, state)
            return vae.normalize(vae.encode(video))

        @jax.jit
        def encode_text(state, ids, mask):  # [B, S] -> [B, S, D]
            return nnx.merge(t5_def, state)(ids, mask)

        self._video = lambda v: np.asarray(encode_video(vae_state, v))
        self._text = lambda ids, mask: np.asarray(encode_text(t5_state, ids, mask))

    def check_bucket(self, f: int, h: int, w: int) -> None:
        try:
            self.vae.check_video_shape((1, f, h, w, 3))
        except ValueError as e:
            raise ValueError(f"--bucket {f}x{h}x{w}: {e}") from None

    def text(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """[S, D] float32 embedding and [S] int32 mask of the first caption."""
        from ltx_jax.text.tokenizer import encode_prompts

        ids, mask = encode_prompts(self.tokenizer, captions, self.text_len)
        return self._text(ids, mask)[0].astype(np.float32), mask[0].astype(np.int32)

    def example(self, video: np.ndarray, caption: str) -> dict[str, np.ndarray]:
        """[F, H, W, 3] in [-1, 1] + caption -> the record fields the trainer reads."""
        latents = self._video(video[None])[0].astype(np.float32)  # [F', H', W', C]
        text, mask = self.text([caption])
        return {"latents": latents, "text": text, "text_mask": mask}
