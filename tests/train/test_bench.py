"""`ltx-jax bench train`: AOT compile + memory + timed steps on CPU devices; TPU topology compile."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

from ltx_jax.train_bench import add_bench_arguments, run_bench
from tests.train.common import FAST, ROOT

SMALL = ["--config", "configs/smoke.yaml", "--variant", "tiny", "--frames", "9", "--height", "128",
         "--width", "128", "--text-len", "8"]


def test_bench_train_on_cpu_devices_reports_memory_flops_and_mfu_fields():
    p = argparse.ArgumentParser()
    add_bench_arguments(p)
    # The smoke run's shapes and overrides: the 8-device FSDP and the single-device baseline
    # programs are the ones test_step.py compiles (memoised per process).
    args = p.parse_args(SMALL + ["--mesh", "fsdp=-1", "--iters", "2", *FAST])
    r = run_bench(args)
    json.dumps(r)  # JSON-able
    assert r["mesh"] == {"data": 1, "fsdp": 8, "seq": 1, "tensor": 1} and r["devices"] == 8
    assert r["latent_grid"] == [2, 4, 4] and r["global_batch"] == 8
    assert r["memory_per_device"]["temp_size_in_bytes"] > 0 and r["per_device_gib"] > 0
    assert r["flops_per_step"] > 0 and r["step_time_s"] > 0 and r["tokens_per_s"] > 0
    assert r["collectives"]["all-reduce"] + r["collectives"]["reduce-scatter"] > 0  # gradients are reduced
    assert r["mfu"] is None  # no peak FLOP/s for a CPU
    # Outputs aliased to the donated state are not counted twice.
    assert 0 < r["memory_per_device"]["alias_size_in_bytes"] <= r["memory_per_device"]["argument_size_in_bytes"]
    # Same-process baseline: the same global batch on one device.
    base = r["baseline"]
    assert base["kind"] == "single_device" and base["devices"] == 1 and base["step_time_s"] > 0
    assert r["speedup_vs_baseline"] == base["step_time_s"] / r["step_time_s"]
    assert r["memory_ratio_vs_baseline"] < 1  # sharded weights and optimizer state


def test_bench_train_topology_compiles_for_tpu_without_a_tpu():
    # libtpu is an optional extra; LTX_JAX_LIBTPU_PATH may point at a `pip install --target` folder.
    env = dict(os.environ, JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1", XLA_FLAGS="")
    extra = os.environ.get("LTX_JAX_LIBTPU_PATH", "")
    if extra:
        env["PYTHONPATH"] = extra
    has_libtpu = bool(extra) or importlib.util.find_spec("libtpu") is not None
    p = subprocess.run([sys.executable, "-m", "ltx_jax", "bench", "train", *SMALL, "--topology", "v5p:2x2x1",
                        "--mesh", "fsdp=-1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if not has_libtpu:
        assert p.returncode == 2 and "needs libtpu" in p.stderr, p.stderr[-2000:]
        return
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["hardware"]["device_kind"].startswith("TPU v5") and r["devices"] == 4
    assert r["hbm_gib"] == 95.74 and r["fits"] is True
    assert r["mesh"]["fsdp"] == 4 and r["collectives"]["all-gather"] + r["collectives"]["all-reduce"] > 0
