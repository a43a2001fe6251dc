"""`ltx-jax train` end to end: files, retention, SIGTERM and resume, crash mid-save, NaN abort, two
processes with jax.distributed, restore onto another mesh, init from converted weights.

Subprocesses (2 CPU devices each) share a persistent compilation cache, so only the first run of
each program compiles; one straight / killed / resumed trio serves four tests. In-process runs (8
devices) reuse the FSDP step test_step.py compiled (`Trainer` memoises programs per process).
"""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import portpicker
import pytest
from flax import nnx

from ltx_jax import sharding as shd
from ltx_jax.checkpoint import Checkpointer, abstract_with_shardings
from ltx_jax.config import dit_config, load_config
from ltx_jax.metrics import read_metrics
from ltx_jax.train import train
from ltx_jax.train_step import Trainer
from tests.train.common import FAST, ROOT, SMOKE

N = 30  # steps of the straight run; checkpoints every 6, keep 2, keep every 12
COMMON = [f"steps={N}", "checkpoint.every=6", "checkpoint.keep=2", "checkpoint.keep_every=12"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def _env(cache_dir, devices=2, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               LTX_JAX_DISTRIBUTED="auto", **extra)
    return env


def _cmd(run_dir, *overrides):
    return [sys.executable, "-m", "ltx_jax", "train", SMOKE, f"run_dir={run_dir}", *FAST, *overrides]


def _ok(p):
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p


def _train(cache_dir, run_dir, *overrides, **env):
    return _ok(subprocess.run(_cmd(run_dir, *overrides), cwd=ROOT, env=_env(cache_dir, **env),
                              capture_output=True, text=True, timeout=300))


def _here(run_dir, *overrides) -> int:
    """The same run in this process (8 devices, mesh fsdp=8)."""
    return train(load_config(SMOKE, [f"run_dir={run_dir}", *FAST, *overrides]))


def _state(run_dir, step):
    return ocp.PyTreeCheckpointer().restore(os.path.join(run_dir, "checkpoints", str(step), "state"))


def _steps_saved(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _series(rows, key):
    return [(r["step"], r[key]) for r in rows]


@pytest.fixture(scope="module")
def trio(tmp_path_factory, cache_dir):
    """A straight run; the same run killed by SIGTERM; a fake half-written later checkpoint; the resume."""
    tmp = tmp_path_factory.mktemp("trio")
    straight, killed = tmp / "straight", tmp / "killed"
    _train(cache_dir, straight, *COMMON)
    proc = subprocess.Popen(_cmd(killed, *COMMON), cwd=ROOT, env=_env(cache_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        path = killed / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=240)
    k = max(_steps_saved(killed))
    # What a kill during the save of step k + 1 leaves behind: an uncommitted temp folder.
    partial = killed / "checkpoints" / f"{k + 1}.orbax-checkpoint-tmp-1234567"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "junk").write_bytes(b"\0" * 100)
    resumed = _train(cache_dir, killed, *COMMON)
    return dict(straight=straight, killed=killed, k=k, kill=(proc.returncode, out, err), resumed=resumed)


def test_run_dir_holds_config_metrics_and_retained_checkpoints(trio):
    straight = trio["straight"]
    assert load_config(straight / "config.yaml") == load_config(SMOKE, [f"run_dir={straight}", *FAST, *COMMON])
    assert [r["step"] for r in read_metrics(straight)] == list(range(1, N + 1))
    # keep=2 keeps 24 and 30; keep_every=12 also keeps 12 (6 and 18 are deleted).
    assert _steps_saved(straight) == [12, 24, 30]


def test_sigterm_saves_and_resume_equals_straight_run(trio):
    code, out, err = trio["kill"]
    assert code == 0, err[-3000:]
    assert "preempted" in out, out[-2000:]
    k = trio["k"]
    assert 3 <= k < N
    assert f"step {k}" in trio["resumed"].stdout  # rerunning the same command resumed from step k
    rows, rows_k = read_metrics(trio["straight"]), read_metrics(trio["killed"])
    assert [r["step"] for r in rows_k] == list(range(1, N + 1))
    for key in ("loss", "grad_norm", "param_norm", "update_norm"):
        assert _series(rows_k, key) == _series(rows, key)  # bit-identical on CPU
    jax.tree.map(np.testing.assert_array_equal, _state(trio["straight"], N), _state(trio["killed"], N))


def test_crash_mid_save_leaves_previous_checkpoint_usable(trio):
    # The resume above started from k, the last committed step, past the half-written k + 1,
    # and the manager deleted the temp folder.
    assert f"resumed from {trio['killed'] / 'checkpoints'} step {trio['k']}" in trio["resumed"].stdout
    names = {q.name for q in (trio["killed"] / "checkpoints").iterdir()}
    assert N in _steps_saved(trio["killed"]) and not any("tmp" in x for x in names)


def test_restore_onto_a_different_mesh(trio, tmp_path, capsys):
    """The 2-device checkpoint restores onto 8 devices under another preset; training goes on."""
    cfg = load_config(SMOKE, [*FAST, "mesh.fsdp=4", "mesh.tensor=2", "mesh.preset=fsdp_tp"])
    mesh, trainer = shd.make_mesh(cfg.mesh), Trainer.create(cfg)
    null = (np.zeros((8, 24), np.float32), np.zeros((8,), np.int32))
    abstract = jax.eval_shape(trainer.init_state, *null)
    target = abstract_with_shardings(abstract, shd.named(mesh, trainer.state_specs(abstract, mesh)))
    with jax.set_mesh(mesh):
        state, data_state, meta = Checkpointer(trio["straight"] / "checkpoints", cfg.checkpoint).restore(target)
    assert meta["step"] == N and data_state is not None
    kernel = state["params"]["transformer_blocks"]["ff"]["proj_in"]["kernel"]
    assert kernel.sharding.mesh.devices.size == 8 and kernel.sharding.spec == jax.sharding.PartitionSpec(
        None, "fsdp", "tensor")
    got, want = jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(_state(trio["straight"], N))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # And a run resumes from it on this process's 8-device FSDP mesh.
    run = tmp_path / "reshard"
    assert _here(run, f"steps={N + 2}", f"checkpoint.resume_from={trio['straight']}") == 0
    assert f"resumed from {trio['straight'] / 'checkpoints'}" in capsys.readouterr().out
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [N + 1, N + 2]
    last = read_metrics(trio["straight"])[-1]["loss"]
    assert all(np.isfinite(r["loss"]) and r["loss"] < 2 * last + 0.5 for r in rows)


def test_init_from_converted_weights(tmp_path, capsys):
    from ltx_jax.convert.transformer import save_transformer
    from ltx_jax.dit.transformer import Transformer3D
    from ltx_jax.nn.layers import jit_init
    from ltx_jax.train import _load_params

    model = jit_init(lambda: Transformer3D(dit_config("tiny"), rngs=nnx.Rngs(7)))
    save_transformer(model, tmp_path / "transformer")
    saved = nnx.to_pure_dict(nnx.state(model))
    cfg = load_config(SMOKE, [*FAST, f"checkpoint.init_from={tmp_path / 'transformer'}"])
    jax.tree.map(np.testing.assert_array_equal, _load_params(cfg, None), saved)
    run = tmp_path / "run"
    lr = cfg.optim.lr
    assert _here(run, "steps=2", f"checkpoint.init_from={tmp_path / 'transformer'}") == 0
    assert "initialised from" in capsys.readouterr().out
    # Two AdamW steps move each weight by at most about 2 x lr: training started from the file.
    params = _state(run, 2)["params"]
    drift = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(saved)))
    assert 0 < drift <= 2.5 * lr
    with pytest.raises(ValueError, match="does not match model"):
        _load_params(load_config(SMOKE, [f"checkpoint.init_from={tmp_path / 'transformer'}",
                                         "model.num_layers=3"]), None)


def test_nonfinite_updates_skip_then_abort_naming_the_step(tmp_path, capsys):
    run = tmp_path / "nan"
    code = _here(run, "steps=10", "train.inject_nan_steps=[3, 5, 6]", "optim.max_consecutive_skips=2")
    assert code == 3
    assert "step 6: 2 non-finite updates in a row" in capsys.readouterr().err
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

    outs = both(2)
    assert "2 process(es), 4 devices" in outs[0][0]
    outs = both(4)
    assert "resumed" in outs[0][0] and "step 2" in outs[0][0]
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 5))
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_smoke_run_learns(tmp_path):
    # The tiny config learns the synthetic dataset: the loss falls clearly within a few hundred
    # steps (the README records a 300-step curve). Same compiled step as the other in-process runs.
    run = tmp_path / "learn"
    assert _here(run, "steps=80", "checkpoint.every=1000") == 0
    losses = np.array([r["loss"] for r in read_metrics(run)])
    assert len(losses) == 80 and np.all(np.isfinite(losses))
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < 0.6 * first, (first, last)
