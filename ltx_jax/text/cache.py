"""Prompt-embedding cache on disk, so a run need not hold T5 on the device.

Each prompt's T5 features are one safetensors file, `<directory>/<key>.safetensors`, holding
`embeds` [S, D] and `mask` [S] (int32), where the key is a hash of the encoder's fingerprint, the
padded length S and the stripped prompt. The metadata repeats the prompt, the encoder fingerprint
and S, and a lookup checks all three, so a hash collision or a stale file is a miss, never a wrong
answer. Writes are atomic, so concurrent runs may share a directory.

The encoder fingerprint comes from `encoder_hash` (the loaded parameters) or `folder_hash` (the
`text_encoder/` and `tokenizer/` folders, without loading T5).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from ltx_jax.convert.safetensors_io import CheckpointError, SafetensorsFile, save_file

_CHUNK = 16 * 2**20


def encoder_hash(encoder: nnx.Module) -> str:
    """Hex fingerprint of an encoder's config and every parameter's name, dtype, shape and bytes."""
    h = hashlib.sha256(repr(getattr(encoder, "cfg", None)).encode())
    for path, var in nnx.to_flat_state(nnx.state(encoder, nnx.Param)):
        a = np.asarray(jax.device_get(var.get_value()))
        h.update(f"{'.'.join(map(str, path))}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).view(np.uint8).data)
    return h.hexdigest()[:32]


def folder_hash(*folders: str | os.PathLike, contents: bool = True) -> str:
    """Hex fingerprint of the files in folders (e.g. `text_encoder/` and `tokenizer/`).

    Args:
      folders: one or more folders; every file below them counts (its relative name and bytes).
      contents: False reads only the header and size of `.safetensors` files (seconds instead of
        minutes for T5-XXL); a re-trained checkpoint with the same layout then hashes the same.

    Raises:
      FileNotFoundError: a folder does not exist.
    """
    h = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder to fingerprint not found: {folder}")
        h.update(b"\0folder\0")
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(folder).as_posix()}|{f.stat().st_size}|".encode())
            with open(f, "rb") as fh:
                if not contents and f.suffix == ".safetensors":
                    n = int.from_bytes(fh.read(8), "little")
                    h.update(fh.read(min(n, _CHUNK * 4)))
                    continue
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
    return h.hexdigest()[:32]


class PromptEmbeddingCache:
    """T5 features per prompt on disk, for one encoder and one padded length.

    Args:
      directory: where the entries live (created if needed).
      encoder_key: the encoder fingerprint (`encoder_hash` or `folder_hash`).
      max_length: S, the padded prompt length the features were computed with.
    """

    def __init__(self, directory: str | os.PathLike, encoder_key: str, max_length: int):
        if not encoder_key:
            raise ValueError("encoder_key must be a non-empty fingerprint (see encoder_hash / folder_hash)")
        if not isinstance(max_length, (int, np.integer)) or max_length < 1:
            raise ValueError(f"max_length={max_length!r} must be a positive integer (LTX-Video uses 128 or 256)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.encoder_key = encoder_key
        self.max_length = int(max_length)

    def path(self, prompt: str) -> Path:
        text = f"{self.encoder_key}\0{self.max_length}\0{prompt.strip()}"
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:40]}.safetensors"

    def _metadata(self, prompt: str) -> dict[str, str]:
        return {"prompt": prompt.strip(), "encoder": self.encoder_key, "max_length": str(self.max_length)}

    def lookup(self, prompt: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(embeds [S, D], mask int32 [S]) for a cached prompt, else None."""
        path = self.path(prompt)
        if not path.is_file():
            return None
        try:
            f = SafetensorsFile(path)
        except CheckpointError:
            return None  # a truncated entry (e.g. a killed writer on a filesystem without rename)
        if f.metadata != self._metadata(prompt) or set(f.keys()) != {"embeds", "mask"}:
            return None
        return f.get("embeds"), f.get("mask")

    def store(self, prompt: str, embeds: np.ndarray, mask: np.ndarray) -> None:
        """Writes one prompt's features: embeds [S, D] (any float dtype, kept), mask [S]."""
        embeds, mask = np.asarray(jax.device_get(embeds)), np.asarray(jax.device_get(mask))
        if embeds.ndim != 2 or embeds.shape[0] != self.max_length or mask.shape != (self.max_length,):
            raise ValueError(
                f"a cache entry is embeds [S, D] and mask [S] with S = max_length = {self.max_length}; "
                f"got embeds {embeds.shape} and mask {mask.shape}"
            )
        save_file({"embeds": embeds, "mask": mask.astype(np.int32)}, self.path(prompt), self._metadata(prompt))

    def encode(
        self,
        prompts: str | Sequence[str],
        encode_fn: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features for prompts, computing (in one batch) and storing only the missing ones.

        Args:
          prompts: one prompt or a non-empty list.
          encode_fn: `encode_fn(prompts) -> (embeds [b, S, D], mask [b, S])` for the missing
            prompts (tokenize + T5); only called when something is missing.

        Returns:
          (embeds [B, S, D], mask int32 [B, S]) as numpy, in the order of `prompts`.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ValueError("the prompt cache needs at least one prompt; got an empty list")
        found = {p: self.lookup(p) for p in dict.fromkeys(prompts)}
        missing = [p for p, hit in found.items() if hit is None]
        if missing:
            embeds, mask = encode_fn(missing)
            embeds, mask = np.asarray(jax.device_get(embeds)), np.asarray(jax.device_get(mask))
            if embeds.shape[0] != len(missing) or mask.shape[0] != len(missing):
                raise ValueError(
                    f"encode_fn returned {embeds.shape[0]} embeddings and {mask.shape[0]} masks "
                    f"for {len(missing)} prompts"
                )
            for i, p in enumerate(missing):
                self.store(p, embeds[i], mask[i])
                found[p] = (embeds[i], mask[i].astype(np.int32))
        return (np.stack([found[p][0] for p in prompts]), np.stack([found[p][1] for p in prompts]))
