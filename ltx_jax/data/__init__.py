"""Training data: the synthetic captioned-clip dataset, ArrayRecord shards and the Grain pipeline."""

from __future__ import annotations

import numpy as np

from ltx_jax.data.pipeline import StepBatches, make_iterator
from ltx_jax.data.records import ShardSource
from ltx_jax.data.synthetic import SyntheticClips


def build_steps(cfg, process_index: int = 0, process_count: int = 1):
    """(StepBatches, (null_text [S, caption], null_mask [S])) for a RunConfig's `data` section."""
    d, m = cfg.data, cfg.model
    if len(d.batch_sizes) != len(d.buckets):
        raise ValueError(
            f"data.batch_sizes has {len(d.batch_sizes)} entries but data.buckets has {len(d.buckets)}; "
            "give one global batch size per bucket"
        )
    if d.source == "synthetic":
        source = SyntheticClips(d.num_examples, d.buckets, channels=m.in_channels,
                                caption_channels=m.caption_channels, text_len=d.text_len, seed=d.seed)
        grids = [source.buckets[source.bucket_of(i)] for i in range(len(source))]
    elif d.source == "arrayrecord":
        source = ShardSource(d.paths)
        grids = source.grids
    else:
        raise ValueError(f"unknown data.source {d.source!r}; valid: ['arrayrecord', 'synthetic']")
    wanted = [tuple(b) for b in d.buckets]
    members = [np.flatnonzero([g == b for g in grids]) for b in wanted]
    empty = [b for b, mem in zip(wanted, members) if len(mem) == 0]
    if empty:
        found = sorted(set(grids))[:8]
        raise ValueError(f"data.buckets {empty} match no example; grids present: {found}")
    steps = StepBatches(source, members, d.batch_sizes, seed=cfg.seed * 1000003 + d.seed,
                        process_index=process_index, process_count=process_count)
    return steps, source.null_text()


__all__ = ["StepBatches", "ShardSource", "SyntheticClips", "build_steps", "make_iterator"]
