"""`ltx-jax train` end to end in subprocesses: files, resume, SIGTERM, crash mid-save, NaN abort,
two processes with jax.distributed. All runs share a persistent compilation cache, so only the
first run of each program compiles."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import portpicker
import pytest

from ltx_jax.config import load_config
from ltx_jax.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A constant schedule keeps the compiled step independent of `steps`: one compile for most runs.
FAST = ["train.compiler_options={xla_backend_optimization_level: 0}", "optim.schedule=constant"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def _env(cache_dir, devices=2, **extra):
    env = dict(os.environ)
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               LTX_JAX_DISTRIBUTED="auto", **extra)
    env.pop("JAX_COORDINATOR_ADDRESS", None) if "JAX_COORDINATOR_ADDRESS" not in extra else None
    return env


def _cmd(run_dir, *overrides):
    return [sys.executable, "-m", "ltx_jax", "train", "configs/smoke.yaml", f"run_dir={run_dir}", *FAST, *overrides]


def _train(cache_dir, run_dir, *overrides, **env):
    p = subprocess.run(_cmd(run_dir, *overrides), cwd=ROOT, env=_env(cache_dir, **env), capture_output=True,
                       text=True, timeout=300)
    return p


def _ok(p):
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p


def _params(run_dir, step):
    state = ocp.PyTreeCheckpointer().restore(os.path.join(run_dir, "checkpoints", str(step), "state"))
    return state["params"], state["opt_state"]


def _series(rows, key):
    return [(r["step"], r[key]) for r in rows]


def test_kill_and_resume_equals_straight_run(tmp_path, cache_dir):
    n = 40
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = [f"steps={n}", "checkpoint.every=10", "checkpoint.keep=2"]
    _ok(_train(cache_dir, straight, *common))
    # The run directory: resolved config, one metrics row per step, the newest 2 checkpoints.
    assert load_config(straight / "config.yaml") == load_config(ROOT / "configs/smoke.yaml",
                                                                 [f"run_dir={straight}", *FAST, *common])
    rows = read_metrics(straight)
    assert [r["step"] for r in rows] == list(range(1, n + 1))
    assert sorted(int(p.name) for p in (straight / "checkpoints").iterdir() if p.name.isdigit()) == [n - 10, n]

    # SIGTERM mid-run: the process saves the step it is on and exits cleanly.
    proc = subprocess.Popen(_cmd(killed, *common), cwd=ROOT, env=_env(cache_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        path = killed / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "preempted" in out, out[-2000:]
    k = max(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert 3 <= k < n
    # Rerunning the same command resumes from step k and appends.
    resumed = _ok(_train(cache_dir, killed, *common))
    assert f"step {k}" in resumed.stdout
    rows_k = read_metrics(killed)
    assert [r["step"] for r in rows_k] == list(range(1, n + 1))
    for key in ("loss", "grad_norm", "param_norm", "update_norm"):
        assert _series(rows_k, key) == _series(rows, key)  # bit-identical on CPU
    (pa, oa), (pb, ob) = _params(straight, n), _params(killed, n)
    import jax

    jax.tree.map(np.testing.assert_array_equal, (pa, oa), (pb, ob))


def test_crash_mid_save_leaves_previous_checkpoint_usable(tmp_path, cache_dir):
    run = tmp_path / "run"
    _ok(_train(cache_dir, run, "steps=4", "checkpoint.every=2"))
    # What a kill during the save of step 6 leaves behind: an uncommitted temp folder.
    partial = run / "checkpoints" / "6.orbax-checkpoint-tmp-1234567"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "junk").write_bytes(b"\0" * 100)
    p = _ok(_train(cache_dir, run, "steps=6", "checkpoint.every=2"))
    assert "step 4" in p.stdout  # resumed from the last committed step
    names = {q.name for q in (run / "checkpoints").iterdir()}
    assert {"4", "6"} <= names and not any("tmp" in x for x in names)
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 7))


def test_nonfinite_updates_skip_then_abort_naming_the_step(tmp_path, cache_dir):
    run = tmp_path / "nan"
    p = _train(cache_dir, run, "steps=10", "train.inject_nan_steps=[3, 5, 6]", "optim.max_consecutive_skips=2")
    assert p.returncode == 3, p.stderr[-3000:]
    assert "step 6: 2 non-finite updates in a row" in p.stderr
    rows = {r["step"]: r for r in read_metrics(run)}
    assert rows[3]["skipped"] == 1 and rows[3]["consecutive_skips"] == 1
    assert rows[3]["param_norm"] == rows[2]["param_norm"]  # parameters untouched by the skipped step
    assert rows[4]["consecutive_skips"] == 0 and rows[4]["param_norm"] != rows[3]["param_norm"]
    assert rows[6]["skipped"] == 3 and max(rows) == 6


def test_two_processes_train_save_and_restore(tmp_path, cache_dir):
    run = tmp_path / "mh"

    def both(steps):
        port = portpicker.pick_unused_port()
        procs = [subprocess.Popen(_cmd(run, f"steps={steps}", "checkpoint.every=2"), cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=_env(cache_dir, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                           JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
                 for i in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-3000:]
        return outs

    outs = both(4)
    assert "2 process(es), 4 devices" in outs[0][0]
    outs = both(6)
    assert "resumed" in outs[0][0] and "step 4" in outs[0][0]
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in rows)
