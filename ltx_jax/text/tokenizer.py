"""The T5 tokenizer, read from a local folder with transformers (never downloaded).

`encode_prompts` tokenizes as both reference pipelines do: `</s>` appended, padded to `max_length`
and truncated to it. The official pipeline strips each prompt of surrounding whitespace first
(`_text_preprocessing`); diffusers does not (`strip=False`). The two differ for whitespace the T5
normaliser keeps, e.g. the ASCII separators U+001C-U+001F, which `str.strip` removes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

# Files transformers can build a T5 tokenizer from (any one is enough).
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")


def load_tokenizer(path: str | os.PathLike):
    """A transformers tokenizer from a local `tokenizer/` folder (`tokenizer.json` or `spiece.model`).

    Raises:
      FileNotFoundError: the folder does not exist or holds no tokenizer files.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        hint = ""
        if (path / "tokenizer").is_dir():
            hint = f"; did you mean {path / 'tokenizer'}?"
        raise FileNotFoundError(
            f"{path}: no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}) in this folder{hint}"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def encode_prompts(tokenizer, prompts: str | Sequence[str], max_length: int, *,
                   strip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizes prompts to fixed-length ids and mask.

    Args:
      tokenizer: a transformers tokenizer (from `load_tokenizer`).
      prompts: one prompt or a non-empty list of prompts (the empty string is a valid prompt:
        just `</s>`).
      max_length: S, the padded and truncated length (128 or 256 for LTX-Video).
      strip: strip each prompt of surrounding whitespace first (the official pipeline; diffusers
        passes prompts as given).

    Returns:
      (ids, mask): int32 numpy [B, S]; mask is 1 for tokens and 0 for padding.

    Raises:
      ValueError: an empty prompt list, a non-string prompt, or max_length < 1.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("encode_prompts needs at least one prompt; got an empty list")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    if not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"max_length={max_length!r} must be a positive integer (LTX-Video uses 128 or 256)")
    enc = tokenizer(
        [p.strip() for p in prompts] if strip else prompts,
        padding="max_length",
        max_length=int(max_length),
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="np",
    )
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
