"""Data: synthetic clips, bucket schedule agreement across hosts, exact iterator resume, shards."""

import numpy as np
import pytest

from ltx_jax.config import load_config
from ltx_jax.data import build_steps, make_iterator
from ltx_jax.data.pipeline import BucketSchedule, StepBatches
from ltx_jax.data.records import ShardSource, write_shards
from ltx_jax.data.synthetic import SyntheticClips, caption_of

CFG = "configs/smoke.yaml"
TWO_BUCKETS = ["data.buckets=[[2, 4, 4], [1, 4, 6], [3, 2, 2]]", "data.batch_sizes=[8, 4, 4]", "data.num_examples=96"]


def test_synthetic_clips_are_deterministic_and_captioned():
    src = SyntheticClips(10, [(2, 4, 4)], channels=8, caption_channels=24, text_len=8, seed=3)
    a, b = src[5], SyntheticClips(10, [(2, 4, 4)], channels=8, caption_channels=24, text_len=8, seed=3)[5]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["latents"].shape == (2, 4, 4, 8) and a["text"].shape == (8, 24)
    colour, shape, direction, _ = src.caption(5)
    assert a["text_mask"].sum() == len(caption_of(colour, shape, direction).split()) + 1  # words + <eos>
    # The shape moves: frame 1 is frame 0 shifted by one cell in the named direction.
    lat = a["latents"]
    shift = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[direction]
    np.testing.assert_array_equal(np.roll(lat[0], shift, axis=(0, 1)), lat[1])
    with pytest.raises(IndexError, match="out of range"):
        src[10]


def test_buckets_agree_across_hosts_and_split_the_global_batch():
    cfg = load_config(CFG, TWO_BUCKETS)
    hosts = [build_steps(cfg, h, 2)[0] for h in range(2)]
    single = build_steps(cfg, 0, 1)[0]
    buckets_seen = set()
    for s in range(40):
        (b0, rows0), (b1, rows1), (b, rows) = hosts[0].indices(s), hosts[1].indices(s), single.indices(s)
        assert b0 == b1 == b  # the same bucket on every host at every step
        assert rows0 + rows1 == rows  # the hosts' rows tile the global batch
        buckets_seen.add(b)
        assert len(rows) == cfg.data.batch_sizes[b]
    assert buckets_seen == {0, 1, 2}
    grids = [tuple(single[s]["latents"].shape[1:4]) for s in range(6)]
    assert set(grids) <= {(2, 4, 4), (1, 4, 6), (3, 2, 2)}


def test_epochs_cover_every_example_once():
    sched_src = StepBatches(list(range(20)), [np.arange(20)], [5], seed=0)
    first_epoch = sorted(i for s in range(4) for i in sched_src.indices(s)[1])
    assert first_epoch == list(range(20))
    assert sched_src.indices(4)[1] != sched_src.indices(0)[1]  # reshuffled next epoch


def test_bucket_schedule_counts_are_consistent():
    sched = BucketSchedule([6, 2, 4], seed=1)
    seen = [0, 0, 0]
    for s in range(200):
        b, k = sched(s)
        assert k == seen[b]  # the k-th batch of bucket b, no gaps or repeats
        seen[b] += 1


@pytest.mark.parametrize("workers", [0, 1])
def test_iterator_resume_yields_exactly_the_remaining_batches(workers):
    cfg = load_config(CFG, TWO_BUCKETS)
    steps, _ = build_steps(cfg)
    it = make_iterator(steps, num_workers=workers)
    straight = [next(it) for _ in range(6)]
    it = make_iterator(steps, num_workers=workers)
    for _ in range(2):
        next(it)
    state = it.get_state()
    assert it.get_state() == state  # reading the state does not advance
    resumed = make_iterator(steps, num_workers=workers, state=state)
    for want in straight[2:]:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_arrayrecord_shards_round_trip_through_the_pipeline(tmp_path):
    src = SyntheticClips(12, [(2, 4, 4), (1, 4, 6)], channels=8, caption_channels=24, text_len=8)
    write_shards(tmp_path / "shards", ((src[i], f"clip {i}") for i in range(12)), src.null_text(), per_shard=5)
    shards = ShardSource([tmp_path / "shards"])
    assert len(shards) == 12 and shards.grids[1] == (1, 4, 6)
    for k, v in src[7].items():
        np.testing.assert_array_equal(shards[7][k], v)
    cfg = load_config(CFG, ["data.source=arrayrecord", f"data.paths=[{tmp_path / 'shards'}]",
                            "data.buckets=[[2, 4, 4], [1, 4, 6]]", "data.batch_sizes=[2, 3]"])
    steps, (null_text, null_mask) = build_steps(cfg)
    np.testing.assert_array_equal(null_mask, src.null_text()[1])
    batch = steps[0]
    assert batch["latents"].shape[0] in (2, 3)
    with pytest.raises(ValueError, match="match no example"):
        build_steps(load_config(CFG, ["data.source=arrayrecord", f"data.paths=[{tmp_path / 'shards'}]",
                                      "data.buckets=[[9, 9, 9]]"]))
