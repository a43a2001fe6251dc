"""`ltx-jax bench train`: AOT-compile the real train step, report memory, FLOPs, collectives, MFU.

The step is compiled ahead of time (`lower().compile()`) on abstract inputs for the chosen variant,
mesh and preset; `memory_analysis()` gives per-device bytes. On local devices it then times
steady-state steps on synthetic data (step time, tokens/s, MFU). With `--topology v5p:4x4x8` it
compiles for compile-only TPU devices from `jax.experimental.topologies` (needs libtpu, no TPU):
per-chip memory against the chip's HBM, whether it fits, and the collectives after partitioning.
FLOPs are analytic (`ltx_jax.flops`): XLA's cost analysis counts a scanned layer once.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sharding as shd
from ltx_jax.bench import _memory, hardware
from ltx_jax.config import load_config
from ltx_jax.metrics import mfu, peak_flops, train_flops
from ltx_jax.sample import add_video_size_arguments, latent_grid
from ltx_jax.train_step import Trainer

# HBM per device (GiB) by device_kind prefix; TPU values are the limits libtpu reports in its OOM.
HBM_GIB = {"TPU v4": 32.0, "TPU v5 lite": 15.75, "TPU v5": 95.74, "TPU v6 lite": 31.25, "TPU7x": 192.0,
           "NVIDIA H100": 80.0, "NVIDIA H200": 141.0}
BASELINES = ("auto", "remat_none", "single_device", "none")
_COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


def add_bench_arguments(p) -> None:
    p.add_argument("--config", default="configs/ltxv-2b-pretrain.yaml", help="training config YAML")
    p.add_argument("--variant", default=None, help="override model.variant (ltxv-2b, ltxv-13b, tiny, ...)")
    add_video_size_arguments(p, 121, 512, 768)
    p.add_argument("--batch-per-device", type=float, default=1.0, help="samples per device (global = x devices)")
    p.add_argument("--text-len", type=int, default=128, help="text tokens per sample")
    p.add_argument("--mesh", default="", help="mesh sizes, e.g. 'fsdp=-1' or 'data=2,fsdp=-1,tensor=4'")
    p.add_argument("--preset", default=None, help="sharding preset (dp, fsdp, fsdp_tp, fsdp_seq, ...)")
    p.add_argument("--remat", default=None, help="remat policy name (none, full, dots, dots_no_batch)")
    p.add_argument("--topology", default=None, help="compile only for a TPU topology, e.g. v5p:4x4x8")
    p.add_argument("--num-slices", type=int, default=1, help="TPU slices for --topology")
    p.add_argument("--iters", type=int, default=5, help="timed steps (0: compile only)")
    p.add_argument("--baseline", default="auto", choices=BASELINES,
                   help="same-process baseline for the ratio: remat_none (same mesh, no remat), "
                        "single_device (the same global batch on one device), none; auto: remat_none "
                        "when a remat policy is set, else single_device when timing several local devices")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def run_bench(args) -> dict[str, Any]:
    overrides = list(args.overrides)
    if args.variant:
        overrides.append(f"model.variant={args.variant}")
    if args.remat:
        overrides.append(f"model.remat_policy={args.remat}")
    if args.preset:
        overrides.append(f"mesh.preset={args.preset}")
    for item in filter(None, args.mesh.split(",")):
        overrides.append(f"mesh.{item.strip()}")
    cfg = load_config(args.config, overrides)
    devices = _topology_devices(args.topology, args.num_slices) if args.topology else jax.devices()
    grid = latent_grid(args.frames, args.height, args.width)
    batch = max(1, int(round(args.batch_per_device * len(devices))))
    iters = 0 if args.topology else args.iters
    result = bench_train(cfg, devices, grid=grid, batch=batch, text_len=args.text_len, iters=iters,
                         topology=args.topology)
    kind = _baseline_kind(args.baseline, cfg, devices, iters)
    if kind is None or "error" in result:
        return result
    if kind == "remat_none":
        base_cfg, base_devices = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, remat_policy="none")), devices
    else:
        base_cfg, base_devices = dataclasses.replace(cfg, mesh=dataclasses.replace(
            cfg.mesh, data=1, fsdp=1, seq=1, tensor=1, dcn_data=1)), devices[:1]
    base = bench_train(base_cfg, base_devices, grid=grid, batch=batch, text_len=args.text_len, iters=iters,
                       topology=args.topology)
    result["baseline"] = {"kind": kind, **{k: base.get(k) for k in (
        "mesh", "remat", "devices", "per_device_gib", "fits", "compile_s", "step_time_s", "tokens_per_s", "error")
        if k in base}}
    if result.get("per_device_gib") and base.get("per_device_gib"):
        result["memory_ratio_vs_baseline"] = result["per_device_gib"] / base["per_device_gib"]
    if result.get("step_time_s") and base.get("step_time_s"):
        # remat_none: the recompute cost (> 1); single_device: the speed-up from sharding (ideal = devices).
        result["speedup_vs_baseline"] = base["step_time_s"] / result["step_time_s"]
    return result


def _baseline_kind(choice: str, cfg, devices, iters: int) -> str | None:
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    if cfg.model.remat_policy != "none":
        return "remat_none"
    local = all(d.process_index == jax.process_index() for d in devices)
    return "single_device" if iters > 0 and len(devices) > 1 and local else None


def bench_train(cfg, devices, *, grid, batch, text_len, iters=5, topology=None) -> dict[str, Any]:
    """Compiles the train step for `devices` and (when they are local) times it."""
    mesh = shd.make_mesh(cfg.mesh, devices)
    trainer = Trainer.create(cfg)
    m = cfg.model
    null = (jax.ShapeDtypeStruct((text_len, m.caption_channels), jnp.float32),
            jax.ShapeDtypeStruct((text_len,), jnp.int32))
    abstract = jax.eval_shape(trainer.init_state, *null)
    shapes = {"latents": (batch, *grid, m.in_channels), "text": (batch, text_len, m.caption_channels),
              "text_mask": (batch, text_len)}
    dtypes = {"latents": jnp.float32, "text": jnp.float32, "text_mask": jnp.int32}
    state_sh = shd.named(mesh, trainer.state_specs(abstract, mesh))
    batch_sh = trainer.batch_shardings(mesh, shapes)
    abs_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh)
    abs_batch = {k: jax.ShapeDtypeStruct(shapes[k], dtypes[k], sharding=batch_sh[k]) for k in shapes}
    step = trainer.compile_train_step(mesh, abstract, shapes)
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
        lowered = step.lower(abs_state, abs_batch)
        try:
            compiled = lowered.compile()
        except Exception as e:  # noqa: BLE001 - a compile-time OOM is an answer, not a crash
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            return {"bench": "train", "variant": m.variant, "mesh": dict(mesh.shape), "preset": cfg.mesh.preset,
                    "devices": len(devices), "global_batch": batch, "latent_grid": list(grid), "fits": False,
                    "error": str(e).splitlines()[0][:500], "compile_s": round(time.perf_counter() - t0, 2)}
    compile_s = time.perf_counter() - t0

    kind = devices[0].device_kind
    tokens = batch * int(np.prod(grid))
    flops = train_flops(m, batch=batch, video_tokens=int(np.prod(grid)), text_tokens=text_len)
    memory = _memory(compiled)
    if memory is not None:  # outputs aliased to donated inputs (the state) are not extra memory
        memory["alias_size_in_bytes"] = int(getattr(compiled.memory_analysis(), "alias_size_in_bytes", 0))
    per_device = None if memory is None else (memory.get("argument_size_in_bytes", 0)
                                              + memory.get("temp_size_in_bytes", 0)
                                              + memory.get("output_size_in_bytes", 0)
                                              - memory["alias_size_in_bytes"])
    hbm = next((v for k, v in sorted(HBM_GIB.items(), key=lambda kv: -len(kv[0])) if kind.startswith(k)), None)
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract["params"]))
    result: dict[str, Any] = {
        "bench": "train", "hardware": hardware() if topology is None else {"topology": topology, "device_kind": kind},
        "variant": m.variant, "params": n_params, "mesh": dict(mesh.shape), "preset": cfg.mesh.preset,
        "remat": m.remat_policy, "dtype": m.dtype, "global_batch": batch, "latent_grid": list(grid),
        "tokens_per_sample": int(np.prod(grid)), "text_len": text_len, "devices": len(devices),
        "compile_s": round(compile_s, 2), "memory_per_device": memory,
        "per_device_gib": None if per_device is None else round(per_device / 2**30, 3),
        "hbm_gib": hbm, "fits": None if (hbm is None or per_device is None) else per_device / 2**30 <= hbm,
        "flops_per_step": flops, "collectives": _collectives(compiled),
    }
    if iters > 0:
        result.update(_time_steps(trainer, step, mesh, state_sh, batch_sh, shapes, null, iters, flops, tokens, kind,
                                  len(devices)))
    return result


def _time_steps(trainer, step, mesh, state_sh, batch_sh, shapes, null, iters, flops, tokens, kind, n):
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), jax.eval_shape(trainer.init_state, *null))
    with jax.set_mesh(mesh):
        state = trainer.compile_init(mesh, abstract)(jnp.zeros(null[0].shape), jnp.ones(null[1].shape, jnp.int32))
        key = jax.random.key(0)
        batch = {
            "latents": jax.device_put(jax.random.normal(key, shapes["latents"]), batch_sh["latents"]),
            "text": jax.device_put(jax.random.normal(key, shapes["text"]), batch_sh["text"]),
            "text_mask": jax.device_put(jnp.ones(shapes["text_mask"], jnp.int32), batch_sh["text_mask"]),
        }
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        first = time.perf_counter() - t0
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    return {"first_step_s": round(first, 4), "step_time_s": step_s, "tokens_per_s": tokens / step_s,
            "mfu": mfu(flops, step_s, kind, n), "peak_flops_per_device": peak_flops(kind),
            "loss": float(metrics["loss"])}


def _collectives(compiled) -> dict[str, int]:
    """Collective op counts in the partitioned program (TPU merges some; see aot_compile.md)."""
    try:
        text = compiled.as_text()
    except Exception:  # noqa: BLE001
        return {}
    return {op: len(re.findall(rf"\b{op}(?:-start)?\(", text)) for op in _COLLECTIVES}


def _topology_devices(name: str, num_slices: int = 1):
    try:
        import libtpu  # noqa: F401
    except ImportError:
        raise ValueError(
            f"--topology {name} needs libtpu (pip install 'jax[tpu]' or libtpu; no TPU is needed)"
        ) from None
    from jax.experimental import topologies

    try:
        desc = topologies.get_topology_desc(platform="tpu", topology_name=name, num_slices=num_slices)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"--topology {name!r}: {e} (examples: v5p:4x4x8, v6e:16x16, v5e:2x2)") from None
    return desc.devices
