"""Lazy safetensors reading and writing, one tensor at a time.

The safetensors format is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets}, "__metadata__": {...}}`) and the raw bytes. We read it
ourselves with `numpy.memmap` because the `safetensors` package's numpy backend cannot return
bfloat16 or float8 tensors (released LTX-Video checkpoints use both); `ml_dtypes` supplies those
numpy dtypes. A tensor is only read when asked for, so converting a 13B checkpoint never holds more
than the tensor being placed. Writing goes through the `safetensors` package. Pickle files are
never read.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterator, Mapping

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, truncated, or not matching the model."""


class SafetensorsFile:
    """One `.safetensors` file opened lazily: `keys()`, `shape(k)`, `dtype(k)`, `get(k)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"no such safetensors file: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{self.path}: not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(
                    f"{self.path}: truncated or not a safetensors file (header of {n} bytes, "
                    f"file of {size} bytes)"
                )
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{self.path}: unreadable safetensors header ({e})") from None
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._entries: dict[str, dict] = header
        self._base = 8 + n
        end = max((e["data_offsets"][1] for e in header.values()), default=0)
        if self._base + end > size:
            raise CheckpointError(
                f"{self.path}: truncated: tensors need {self._base + end} bytes, file has {size}"
            )
        for k, e in header.items():
            if e["dtype"] not in _DTYPES:
                raise CheckpointError(f"{self.path}: tensor {k} has unsupported dtype {e['dtype']}")
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r") if size else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key]["shape"])

    def dtype(self, key: str) -> np.dtype:
        return _DTYPES[self._entries[key]["dtype"]]

    def get(self, key: str) -> np.ndarray:
        """The tensor as a numpy array (a copy, so the file can be closed or rewritten)."""
        e = self._entries[key]
        start, end = e["data_offsets"]
        raw = self._mm[self._base + start : self._base + end]
        return np.array(raw.view(_DTYPES[e["dtype"]]).reshape(e["shape"]))


class TensorSource:
    """All tensors of a checkpoint, from one file or several (sharded) files, read lazily.

    `path` is a `.safetensors` file or a folder holding `*.safetensors` (with or without a
    `*.safetensors.index.json`). A key prefix can be stripped (`model.diffusion_model.`).
    """

    def __init__(self, path: str | os.PathLike, *, prefix: str = "", filename_glob: str = "*.safetensors"):
        path = Path(path)
        if path.is_dir():
            files = sorted(path.glob(filename_glob))
            if not files:
                raise CheckpointError(f"{path}: no {filename_glob} files in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise CheckpointError(f"no such file or folder: {path}")
        self.files = [SafetensorsFile(f) for f in files]
        self.metadata: dict[str, str] = {}
        self._where: dict[str, tuple[SafetensorsFile, str]] = {}
        for f in self.files:
            self.metadata.update(f.metadata)
            for k in f.keys():
                if k.startswith(prefix):
                    self._where[k[len(prefix):]] = (f, k)

    def keys(self) -> list[str]:
        return list(self._where)

    def view(self, prefix: str = "", *, exclude: tuple[str, ...] = ()) -> "TensorSource":
        """The tensors whose names start with `prefix` (stripped), minus names starting with any
        of `exclude`; shares the opened files (no second header read)."""
        out = object.__new__(TensorSource)
        out.files, out.metadata = self.files, self.metadata
        out._where = {
            k[len(prefix):]: v for k, v in self._where.items()
            if k.startswith(prefix) and not k[len(prefix):].startswith(exclude)
        }
        return out

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        f, k = self._where[key]
        return f.shape(k)

    def get(self, key: str) -> np.ndarray:
        f, k = self._where[key]
        return f.get(k)


def check_keys(
    path: str | os.PathLike, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> None:
    """Raises one CheckpointError listing every missing, unexpected and mis-shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(
        k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k])
    )
    if not (missing or unexpected or misshaped):
        return
    lines = [f"checkpoint {path} does not match the model:"]

    def show(title, keys, fmt):
        if keys:
            lines.append(f"  {title} ({len(keys)}):")
            lines.extend(f"    {fmt(k)}" for k in keys[:20])
            if len(keys) > 20:
                lines.append(f"    ... and {len(keys) - 20} more")

    show("missing", missing, lambda k: f"{k} {list(expected[k])}")
    show("unexpected", unexpected, lambda k: f"{k} {list(found[k])}")
    show("wrong shape", misshaped, lambda k: f"{k}: file {list(found[k])}, model {list(expected[k])}")
    raise CheckpointError("\n".join(lines))


def save_file(tensors: Mapping[str, np.ndarray], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Writes a safetensors file atomically (temporary name, then rename)."""
    from safetensors.numpy import save_file as _save

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    _save({k: np.asarray(v, order="C") for k, v in tensors.items()}, str(tmp), metadata=dict(metadata or {}))
    os.replace(tmp, path)


def iter_items(source: TensorSource) -> Iterator[tuple[str, np.ndarray]]:
    for k in source.keys():
        yield k, source.get(k)
