"""ArrayRecord shards of precomputed training examples (VAE latents + text embeddings).

Each record is one example serialised with safetensors (no pickle): `latents` [F, H, W, C],
`text` [S, caption], `text_mask` [S], plus the caption as metadata. A shard folder also holds
`index.json` (each record's latent grid, for bucketing without reading the records) and
`null_text.safetensors` (the empty-prompt embedding for caption dropout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import grain
import numpy as np
import safetensors.numpy as stn

INDEX = "index.json"
NULL_TEXT = "null_text.safetensors"


def encode_example(example: dict[str, np.ndarray], caption: str = "") -> bytes:
    return stn.save({k: np.ascontiguousarray(v) for k, v in example.items()}, metadata={"caption": caption})


def decode_example(record: bytes) -> dict[str, np.ndarray]:
    return dict(stn.load(record))


def write_shards(out_dir: str | os.PathLike, examples: Iterable[tuple[dict[str, np.ndarray], str]],
                 null_text: tuple[np.ndarray, np.ndarray], *, per_shard: int = 1024) -> dict:
    """Writes examples into `out_dir/shard-00000.array_record`, ... plus the index and null text."""
    from array_record.python.array_record_module import ArrayRecordWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grids, shards, writer = [], [], None
    for i, (example, caption) in enumerate(examples):
        if i % per_shard == 0:
            if writer is not None:
                writer.close()
            shards.append(f"shard-{len(shards):05d}.array_record")
            writer = ArrayRecordWriter(str(out / shards[-1]), "group_size:1")
        writer.write(encode_example(example, caption))
        grids.append(list(example["latents"].shape[:3]))
    if writer is not None:
        writer.close()
    stn.save_file({"text": null_text[0], "text_mask": null_text[1]}, str(out / NULL_TEXT))
    index = {"shards": shards, "grids": grids}
    tmp = out / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index))
    os.replace(tmp, out / INDEX)  # the index appears last: a folder with one is complete
    return index


class ShardSource:
    """Random-access decoded examples over one or more shard folders (grain source protocol)."""

    def __init__(self, folders: Sequence[str | os.PathLike]):
        if not folders:
            raise ValueError("data.paths is empty: name at least one folder written by `ltx-jax preprocess`")
        paths, self.grids, self.null = [], [], None
        for folder in map(Path, folders):
            if not (folder / INDEX).exists():
                raise FileNotFoundError(f"{folder}: no {INDEX}; is it a folder written by `ltx-jax preprocess`?")
            index = json.loads((folder / INDEX).read_text())
            paths += [str(folder / s) for s in index["shards"]]
            self.grids += [tuple(g) for g in index["grids"]]
            if self.null is None:
                null = stn.load_file(str(folder / NULL_TEXT))
                self.null = (null["text"], null["text_mask"])
        self._records = grain.sources.ArrayRecordDataSource(paths)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return decode_example(self._records[int(index)])

    def null_text(self) -> tuple[np.ndarray, np.ndarray]:
        return self.null
