"""Step-indexed Grain pipeline: buckets by latent grid, per-bucket batch sizes, per-host shards.

The batch for step s is a pure function of (seed, s, host): a fixed, seeded cycle of bucket ids
picks the bucket (so every host picks the same one at every step, with no communication), the
bucket's k-th global batch covers positions [k G, (k+1) G) of that bucket's endless stream of
examples (a fresh seeded permutation each epoch), and host h takes rows [h G/P, (h+1) G/P).
Grain turns this random-access "source of steps" into an iterator with worker processes and a
small JSON state (`{'next_index': s}`) that the checkpoint stores.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import grain
import numpy as np

# Longest bucket cycle; weights are rounded onto it.
_MAX_CYCLE = 64


class BucketSchedule:
    """Which bucket step s draws from, and how many batches of it came before (O(1) per step)."""

    def __init__(self, batches_per_epoch: Sequence[int], seed: int):
        if not batches_per_epoch or min(batches_per_epoch) < 1:
            raise ValueError(f"every bucket needs at least one batch per epoch, got {list(batches_per_epoch)}")
        g = functools.reduce(math.gcd, batches_per_epoch)
        counts = [n // g for n in batches_per_epoch]
        if sum(counts) > _MAX_CYCLE:  # keep proportions roughly, bounded cycle
            scale = _MAX_CYCLE / sum(counts)
            counts = [max(1, round(c * scale)) for c in counts]
        cycle = np.repeat(np.arange(len(counts)), counts)
        self.cycle = np.random.default_rng([seed, 7]).permutation(cycle)
        # before[b][i]: occurrences of bucket b in cycle[:i]
        self.before = np.stack([np.concatenate([[0], np.cumsum(self.cycle == b)]) for b in range(len(counts))])
        self.counts = counts

    def __call__(self, step: int) -> tuple[int, int]:
        n = len(self.cycle)
        rounds, pos = divmod(int(step), n)
        b = int(self.cycle[pos])
        return b, rounds * self.counts[b] + int(self.before[b, pos])


class StepBatches:
    """Random-access source whose element s is this host's batch for step index s (from 0).

    Args:
      source: random-access examples (dicts of numpy arrays).
      bucket_members: for each bucket, the example indices with that latent grid.
      batch_sizes: global batch size per bucket.
      seed: shuffle seed.
      process_index, process_count: this host and the number of hosts.
      num_steps: length of the step stream.
    """

    def __init__(self, source, bucket_members: Sequence[np.ndarray], batch_sizes: Sequence[int], *, seed: int,
                 process_index: int = 0, process_count: int = 1, num_steps: int = 1 << 40):
        if len(bucket_members) != len(batch_sizes):
            raise ValueError(f"{len(bucket_members)} buckets but {len(batch_sizes)} batch sizes (data.batch_sizes)")
        for b, g in enumerate(batch_sizes):
            if g % process_count:
                raise ValueError(f"bucket {b}: global batch {g} does not divide by {process_count} hosts")
            if len(bucket_members[b]) == 0:
                raise ValueError(f"bucket {b} has no examples")
        self.source, self.members = source, [np.asarray(m) for m in bucket_members]
        self.batch_sizes, self.seed = [int(g) for g in batch_sizes], seed
        self.host, self.hosts, self.num_steps = process_index, process_count, num_steps
        per_epoch = [max(1, len(m) // g) for m, g in zip(self.members, self.batch_sizes)]
        self.schedule = BucketSchedule(per_epoch, seed)

    def __len__(self) -> int:
        return self.num_steps

    @functools.lru_cache(maxsize=16)
    def _perm(self, bucket: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, bucket, epoch]).permutation(len(self.members[bucket]))

    def indices(self, step: int) -> tuple[int, list[int]]:
        """(bucket, example indices of this host's rows) for a step index."""
        b, k = self.schedule(step)
        g, n = self.batch_sizes[b], len(self.members[b])
        local = g // self.hosts
        rows = range(k * g + self.host * local, k * g + (self.host + 1) * local)
        return b, [int(self.members[b][self._perm(b, q // n)[q % n]]) for q in rows]

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        _, idx = self.indices(int(step))
        examples = [self.source[i] for i in idx]
        return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def make_iterator(steps: StepBatches, *, num_workers: int = 0, state: dict | None = None):
    """A Grain iterator over `steps` (worker processes when num_workers > 0), resumed at `state`."""
    ds = grain.MapDataset.source(steps).to_iter_dataset()
    if num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
    it = iter(ds)
    if state is not None:
        it.set_state(state)
    return it


def global_batch_shapes(example: dict[str, np.ndarray], process_count: int) -> dict[str, tuple[int, ...]]:
    """Global shapes of a host-local batch (rows times hosts)."""
    return {k: (v.shape[0] * process_count, *v.shape[1:]) for k, v in example.items()}


def summarize(steps: StepBatches, count: int) -> list[Any]:
    """The (bucket, rows) of the first `count` steps (for cross-host agreement checks)."""
    return [steps.indices(s) for s in range(count)]
