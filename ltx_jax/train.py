"""Train the DiT from a YAML config: `ltx-jax train CONFIG.yaml [key=value ...]`.

Reads top to bottom: process setup -> config -> mesh -> data -> abstract state and shardings ->
restore or init -> loop. The same command runs on one CPU, a GPU node or every worker of a TPU
pod (multi-host through `jax.distributed`); the launch scripts add no hyperparameters.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import numpy as np

from ltx_jax.config import RunConfig, dump_config, load_config


def add_arguments(p) -> None:
    p.add_argument("config", help="run config YAML (configs/smoke.yaml, configs/ltxv-2b-pretrain.yaml, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. steps=100 run_dir=runs/x optim.lr=3e-4 mesh.fsdp=8")


def main(args) -> int:
    init_distributed(os.environ)  # before anything touches a JAX backend
    return train(load_config(args.config, args.overrides))


def init_distributed(env, mode: str | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when the environment names a multi-process cluster.

    Recognised: JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID), SLURM with more than
    one task, multi-worker TPU VMs and multi-slice (MEGASCALE_*). LTX_JAX_DISTRIBUTED=on|off forces it.
    """
    mode = mode or env.get("LTX_JAX_DISTRIBUTED", "auto")
    cluster = (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
        or "MEGASCALE_COORDINATOR_ADDRESS" in env
    )
    if mode == "off" or (mode == "auto" and not cluster) or jax.distributed.is_initialized():
        return False
    kwargs: dict[str, Any] = {}
    if "JAX_NUM_PROCESSES" in env:
        kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in env:
        kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    return True


class NonFiniteAbort(RuntimeError):
    """Too many non-finite updates in a row."""


def train(cfg: RunConfig) -> int:
    # ============================================================================ process setup
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags outside absl.app.run
    jax.config.update("jax_threefry_partitionable", True)

    from ltx_jax import sharding as shd
    from ltx_jax.checkpoint import Checkpointer, PreemptionFlag, abstract_with_shardings
    from ltx_jax.data import build_steps, make_iterator
    from ltx_jax.data.pipeline import global_batch_shapes
    from ltx_jax.metrics import MetricsWriter, StepTimer, mfu, train_flops
    from ltx_jax.train_step import Trainer

    pidx, pcount = jax.process_index(), jax.process_count()
    log = (lambda *a: print(*a, flush=True)) if pidx == 0 else (lambda *a: None)
    run_dir = os.path.abspath(cfg.run_dir)

    # ============================================================================ mesh
    mesh = shd.make_mesh(cfg.mesh)
    shd.get_preset(cfg.mesh.preset)  # an unknown preset fails before any data or compile work
    log(f"mesh {dict(mesh.shape)} preset {cfg.mesh.preset!r}; {pcount} process(es), {jax.device_count()} devices")

    # ============================================================================ data
    steps, (null_text, null_mask) = build_steps(cfg, pidx, pcount)

    # ============================================================================ abstract state, shardings
    trainer = Trainer.create(cfg)
    abstract = jax.eval_shape(trainer.init_state, null_text, null_mask)
    state_sh = shd.named(mesh, trainer.state_specs(abstract, mesh))

    # ============================================================================ restore or init
    # Precedence: a checkpoint in RUN_DIR (resume after preemption), then checkpoint.resume_from
    # (a run folder or its checkpoints folder), then checkpoint.init_from (converted LTX-Video
    # weights, fresh optimizer), then random init.
    ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), cfg.checkpoint)
    target = abstract_with_shardings(abstract, state_sh)
    data_state = None
    with jax.set_mesh(mesh):
        if ckpt.latest_step() is not None:
            state, data_state, _ = ckpt.restore(target)
            log(f"resumed from {ckpt.directory} step {ckpt.latest_step()}")
        elif cfg.checkpoint.resume_from:
            other = _resume_dir(cfg.checkpoint.resume_from)
            state, data_state, _ = Checkpointer(other, cfg.checkpoint).restore(target)
            log(f"resumed from {other}")
        elif cfg.checkpoint.init_from:
            params = _load_params(cfg, abstract["params"])
            state = jax.jit(trainer.state_from_params, out_shardings=state_sh,
                            compiler_options=trainer.compiler_options())(params, null_text, null_mask)
            log(f"initialised from {cfg.checkpoint.init_from}")
        else:
            state = trainer.compile_init(mesh, abstract)(null_text, null_mask)
    start = int(jax.device_get(state["step"]))
    if pidx == 0:
        dump_config(cfg, os.path.join(run_dir, "config.yaml"))

    # ============================================================================ loop
    it = make_iterator(steps, num_workers=cfg.data.num_workers, state=data_state)
    metrics_out = MetricsWriter(run_dir, enabled=pidx == 0)
    timer, preempted = StepTimer(), PreemptionFlag()
    compiled: dict[tuple, Any] = {}
    pending = None  # the previous step's consecutive-skip counter, read one step late
    prof = cfg.train.profile_steps
    max_skips = cfg.optim.max_consecutive_skips
    step = start
    try:
        for step in range(start + 1, cfg.steps + 1):
            if len(prof) == 2 and step == prof[0]:
                jax.profiler.start_trace(os.path.join(run_dir, "profile"))
            local = next(it)
            shapes = global_batch_shapes(local, pcount)
            key = tuple(sorted((k, v) for k, v in shapes.items()))
            if key not in compiled:
                compiled[key] = (trainer.compile_train_step(mesh, abstract, shapes), trainer.batch_shardings(mesh, shapes))
            step_fn, batch_sh = compiled[key]
            batch = {k: jax.make_array_from_process_local_data(batch_sh[k], np.asarray(v), shapes[k])
                     for k, v in local.items()}
            with jax.set_mesh(mesh):
                state, metrics = step_fn(state, batch)
            if pending is not None:
                _check_skips(pending, step - 1, max_skips)
            pending = metrics["consecutive_skips"]
            timer.tick()
            if len(prof) == 2 and step == prof[1]:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
            if step % cfg.train.log_every == 0 or step == cfg.steps:
                row = jax.device_get(metrics)
                step_time = timer.read()
                b, f, h, w = shapes["latents"][:4]
                flops = train_flops(cfg.model, batch=b, video_tokens=f * h * w, text_tokens=shapes["text"][1])
                row.update(flops_per_step=flops, bucket=[int(f), int(h), int(w)], batch=int(b))
                if step_time is not None:
                    kind = jax.devices()[0].device_kind
                    row.update(step_time_s=step_time, tokens_per_s=b * f * h * w / step_time,
                               mfu=mfu(flops, step_time, kind, jax.device_count()))
                metrics_out.write(step, row)
                log(f"step {step} loss {float(row['loss']):.5f} grad_norm {float(row['grad_norm']):.4f}"
                    + (f" skipped {int(row['skipped'])}" if row["skipped"] else ""))
            stop = preempted(step)
            if ckpt.should_save(step, final=step == cfg.steps, preempted=stop):
                ckpt.save(step, state, it.get_state(), {"config": cfg.name, "train_time_s": timer.total_s})
            if stop:
                log(f"preempted: checkpoint saved at step {step}; rerun the same command to resume")
                break
        if pending is not None:
            _check_skips(pending, step, max_skips)
    except NonFiniteAbort as e:
        print(f"ltx-jax train: error: {e}", file=sys.stderr, flush=True)
        return 3
    finally:
        ckpt.close()
        metrics_out.close()
        preempted.close()
    return 0


def _check_skips(counter, step: int, max_skips: int) -> None:
    n = int(jax.device_get(counter))
    if max_skips > 0 and n >= max_skips:
        raise NonFiniteAbort(
            f"step {step}: {n} non-finite updates in a row (optim.max_consecutive_skips={max_skips}); "
            "parameters are those of the last finite step"
        )


def _resume_dir(path: str) -> str:
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path


def _load_params(cfg: RunConfig, abstract_params) -> dict:
    """Converted LTX-Video weights (diffusers or Lightricks layout) as a params pure dict."""
    from flax import nnx

    from ltx_jax.convert.transformer import load_transformer

    model = load_transformer(cfg.checkpoint.init_from)
    got = dataclasses.replace(model.config, variant=cfg.model.variant, dtype=cfg.model.dtype,
                              param_dtype=cfg.model.param_dtype, attention_impl=cfg.model.attention_impl,
                              attention_inner_impl=cfg.model.attention_inner_impl,
                              scan_layers=cfg.model.scan_layers, remat_policy=cfg.model.remat_policy)
    if got != cfg.model:
        diff = {f.name: (getattr(cfg.model, f.name), getattr(got, f.name)) for f in dataclasses.fields(got)
                if getattr(cfg.model, f.name) != getattr(got, f.name)}
        raise ValueError(f"checkpoint.init_from={cfg.checkpoint.init_from!r} does not match model: (config, weights) {diff}")
    params = nnx.to_pure_dict(nnx.state(model))
    if abstract_params is not None:
        jax.tree.map(lambda a, p: None, abstract_params, params)  # same structure or a tree error
    return params
