"""Attention benchmark and block-size autotuner: TFLOP/s per implementation, as a JSON-able dict.

`bench_attention` times `attention(..., impl=...)` for each implementation and shape, forward and
forward+backward (one `jax.vjp` call: forward, then the backward at a random cotangent), and
reports compile time, steady-state milliseconds, TFLOP/s and the ratio to a baseline (cuDNN on a
GPU, splash on a TPU). Sequence-parallel impls ("ring:pallas", "ulysses:cudnn", ...) run on a mesh
with every local device on `seq`; their TFLOP/s are for all devices together. FLOPs count the
matmuls only, 2 per multiply-add: forward 4*B*N*Lq*Lk*K (q k^T and p v), backward 2.5x that
(five matmuls: the recomputed q k^T, dv, dp, dq, dk), the FlashAttention papers' convention.

`autotune_blocks` sweeps flash_blocks.BlockSizes candidates on the current GPU and returns the
fastest forward and backward tilings; `ltx-jax bench attention --autotune --record PATH` writes
them into the JSON record that $LTX_JAX_FLASH_BLOCKS=PATH makes the kernel's default
(flash_blocks.default_block_sizes), and its "best" is what BLOCK_TABLE holds per generation.
`check_accuracy` compares the Pallas kernel with a float32 'highest'-precision XLA reference at
a realistic shape. `python -m ltx_jax.nn.kernels.bench_attention OUT.json` runs all three.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ltx_jax.nn.attention import SEQ_PARALLEL_IMPLS, attention
from ltx_jax.sharding import MESH_AXES
from ltx_jax.nn.kernels.flash_blocks import RECORD_ENV, BlockSizes, default_block_sizes, record_blocks
from ltx_jax.nn.kernels.flash_gpu import flash_attention

# (B, L, N, K): LTX-2B self-attention at 6144 tokens (768x512x121) and longer clips; 13B heads.
DEFAULT_SHAPES = ((2, 6144, 32, 64), (2, 4096, 32, 64), (2, 8192, 32, 64), (2, 16384, 32, 64),
                  (2, 32768, 32, 64), (2, 6144, 32, 128))
BWD_FLOPS_FACTOR = 2.5


def attention_flops(b: int, lq: int, lk: int, n: int, kd: int, mode: str = "fwd") -> float:
    """Matmul FLOPs of one attention call; mode "fwd" or "fwd_bwd"."""
    fwd = 4.0 * b * n * lq * lk * kd
    return fwd if mode == "fwd" else fwd * (1 + BWD_FLOPS_FACTOR)


def _hardware() -> dict[str, Any]:
    dev = jax.devices()[0]
    try:
        from ltx_jax.bench import hardware  # the DiT benchmark's description of the machine

        info = hardware()
    except Exception:  # e.g. a GPU box without the model's dependencies: the essentials only
        info = {"platform": dev.platform, "device_kind": dev.device_kind, "jax": jax.__version__}
    info["compute_capability"] = getattr(dev, "compute_capability", None)
    return info


def _inputs(shape, dtype, seed=0):
    """Random q, k, v and an output cotangent of shape [B, L, N, K]."""
    keys = jax.random.split(jax.random.key(seed), 4)
    return [jax.random.normal(kk, shape, jnp.float32).astype(dtype) for kk in keys]


def _make(fn: Callable, mode: str) -> Callable:
    """(q, k, v, do) -> the forward output, or the three gradients of a vjp at `do`."""
    if mode == "fwd":
        return lambda q, k, v, do: fn(q, k, v)
    return lambda q, k, v, do: jax.vjp(fn, q, k, v)[1](do)


def time_compiled(fn: Callable, args: Sequence, iters: int = 20, repeats: int = 3) -> dict[str, float]:
    """AOT-compiles `fn`, then the median over `repeats` of the mean of `iters` back-to-back calls."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(iters):
            out = compiled(*args)
        jax.block_until_ready(out)
        per_call.append((time.perf_counter() - t0) / iters)
    return {"compile_s": compile_s, "ms": 1e3 * float(np.median(per_call)), "ms_min": 1e3 * float(np.min(per_call))}


def default_impls(platform: str | None = None, devices: int | None = None) -> tuple[str, ...]:
    """The implementations worth timing here: single-device kernels of the platform, plus the
    sequence-parallel ones (over all local devices, inner kernel after the colon) when there are
    several devices. Interpret-mode kernels (pallas off a GPU, splash off a TPU) are left out."""
    platform = platform or jax.default_backend()
    devices = jax.device_count() if devices is None else devices
    single = {"gpu": ("pallas", "cudnn", "xla"), "tpu": ("splash", "xla")}.get(platform, ("xla",))
    inner = {"gpu": ("cudnn", "pallas"), "tpu": ("splash", "xla")}.get(platform, ("xla",))
    parallel = ("ring:pallas" if platform == "gpu" else "ring:xla",) + tuple(f"ulysses:{i}" for i in inner)
    return single + (parallel if devices > 1 else ())


def baseline_impl(platform: str | None = None) -> str:
    """What the summary's ratios divide by: cuDNN on a GPU, splash on a TPU, XLA elsewhere."""
    return {"gpu": "cudnn", "tpu": "splash"}.get(platform or jax.default_backend(), "xla")


def bench_attention(
    shapes: Sequence[tuple[int, int, int, int]] = DEFAULT_SHAPES,
    impls: Sequence[str | tuple[str, Callable]] | None = None,
    *,
    dtype: str = "bfloat16",
    modes: Sequence[str] = ("fwd", "fwd_bwd"),
    iters: int = 20,
    baseline: str | None = None,
) -> dict[str, Any]:
    """TFLOP/s of `attention(impl=...)` per shape, implementation and mode.

    Args:
      shapes: (B, L, N, K) self-attention shapes (Lq = Lk = L, no mask).
      impls: attention implementations to time, by name ("ring:pallas" is impl "ring" with
        inner_impl "pallas"; "ring" / "ulysses" run on a mesh with every local device on `seq`,
        inputs sharded along L) or as (name, fn(q, k, v)) pairs (e.g. the Pallas kernel with other
        block sizes); default `default_impls()`. A failure is recorded, not raised.
      dtype: input dtype name.
      modes: "fwd" and/or "fwd_bwd".
      iters: calls per timing repeat.
      baseline: the impl the summary's ratios divide by; default `baseline_impl()`.

    Returns:
      {"bench": "attention", "hardware", "dtype", "baseline", "results": [{shape, impl, mode,
      compile_s, ms, tflops_per_s} or {.., "error"}], "summary": [{shape, mode, ratio vs the
      baseline per impl, bwd_over_fwd per impl}]}.
    """
    impls = default_impls() if impls is None else impls
    baseline = baseline or baseline_impl()
    results = []
    for shape in shapes:
        b, length, n, kd = shape
        args = _inputs(shape, jnp.dtype(dtype))
        for impl in impls:
            impl, fn = impl if isinstance(impl, tuple) else (impl, _by_name(impl))
            mesh = _seq_mesh() if impl.split(":")[0] in SEQ_PARALLEL_IMPLS else None
            for mode in modes:
                row = {"shape": list(shape), "impl": impl, "mode": mode}
                try:
                    if mesh is None:
                        row.update(time_compiled(_make(fn, mode), args, iters))
                    else:
                        with jax.set_mesh(mesh):
                            sharded = [jax.device_put(a, NamedSharding(mesh, P(None, "seq"))) for a in args]
                            row.update(time_compiled(_make(fn, mode), sharded, iters))
                        row["devices"] = mesh.size
                    row["tflops_per_s"] = attention_flops(b, length, length, n, kd, mode) / (row["ms"] * 1e-3) / 1e12
                except Exception as e:  # noqa: BLE001 - an impl that cannot run here is a result
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                results.append(row)
        del args
    return {"bench": "attention", "hardware": _hardware(), "dtype": dtype, "baseline": baseline,
            "flops": "matmul only; fwd 4*B*N*L*L*K, bwd 2.5x fwd (all devices together for ring/ulysses)",
            "results": results, "summary": _summary(results, shapes, modes, baseline)}


def _by_name(impl: str) -> Callable:
    impl, _, inner = impl.partition(":")
    return lambda q, k, v: attention(q, k, v, impl=impl, inner_impl=inner or "auto")


def _seq_mesh():
    """Every local device on the `seq` axis."""
    return jax.make_mesh((1, 1, jax.device_count(), 1), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 4)


def _summary(results, shapes, modes, baseline="cudnn"):
    ms = {(tuple(r["shape"]), r["impl"], r["mode"]): r["ms"] for r in results if "ms" in r}
    impls = sorted({r["impl"] for r in results})
    out = []
    for shape in shapes:
        for mode in modes:
            row: dict[str, Any] = {"shape": list(shape), "mode": mode}
            base = ms.get((tuple(shape), baseline, mode))
            for impl in impls:
                t = ms.get((tuple(shape), impl, mode))
                if t is not None and base is not None and impl != baseline:
                    row[f"{impl}_vs_{baseline}"] = base / t  # > 1: faster than the baseline
                fwd = ms.get((tuple(shape), impl, "fwd"))
                if mode == "fwd_bwd" and t is not None and fwd is not None:
                    row[f"{impl}_bwd_over_fwd"] = (t - fwd) / fwd
            out.append(row)
    return out


FWD_CANDIDATES = (  # (block_q, block_k, warps, stages)
    (128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 4, 3), (128, 32, 4, 4),
    (64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 4, 4), (256, 64, 8, 3),
)
BWD_CANDIDATES = (  # (bwd, block_q_dkv, block_k_dkv, block_q_dq, block_k_dq, warps, stages)
    ("fused", 64, 128, 128, 64, 8, 2), ("fused", 64, 128, 128, 64, 4, 3), ("fused", 32, 128, 128, 32, 4, 3),
    ("fused", 64, 64, 64, 64, 4, 2), ("fused", 128, 128, 128, 128, 8, 2), ("fused", 32, 64, 64, 32, 4, 3),
    ("split", 64, 128, 128, 64, 8, 2), ("split", 32, 128, 128, 32, 4, 3), ("split", 64, 64, 64, 64, 4, 2),
    ("split", 128, 64, 64, 128, 8, 2),
)


def autotune_blocks(
    shape: tuple[int, int, int, int] = (2, 6144, 32, 64),
    *,
    dtype: str = "bfloat16",
    fwd_candidates=FWD_CANDIDATES,
    bwd_candidates=BWD_CANDIDATES,
    iters: int = 10,
    budget_s: float = 240.0,
) -> dict[str, Any]:
    """Times tilings of the Pallas kernel at one shape; returns every timing and the best BlockSizes.

    The forward candidates are timed on the forward alone; the backward candidates (fused
    atomic-dq and split bit-reproducible backward) on forward+backward with the best forward
    tiling. Stops early after `budget_s` seconds.
    """
    t_start = time.perf_counter()
    b, length, n, kd = shape
    args = _inputs(shape, jnp.dtype(dtype))
    base = default_block_sizes(kd)

    def run(blocks: BlockSizes, mode: str) -> dict[str, Any]:
        row: dict[str, Any] = {"blocks": dataclasses.asdict(blocks), "mode": mode}
        try:
            fn = lambda q, k, v: flash_attention(q, k, v, block_sizes=blocks)  # noqa: E731
            row.update(time_compiled(_make(fn, mode), args, iters))
            row["tflops_per_s"] = attention_flops(b, length, length, n, kd, mode) / (row["ms"] * 1e-3) / 1e12
        except Exception as e:  # noqa: BLE001 - e.g. a tiling that overflows shared memory
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(row), flush=True)
        return row

    def best(rows, fallback):
        ok = [r for r in rows if "ms" in r]
        return BlockSizes(**min(ok, key=lambda r: r["ms"])["blocks"]) if ok else fallback

    fwd_rows = []
    for bq, bk, w, s in fwd_candidates:
        if time.perf_counter() - t_start > budget_s / 2:
            break
        fwd_rows.append(run(dataclasses.replace(base, block_q=bq, block_k=bk, warps_fwd=w, stages_fwd=s), "fwd"))
    best_fwd = best(fwd_rows, base)
    bwd_rows = []
    for mode, qkv, kkv, qdq, kdq, w, s in bwd_candidates:
        if time.perf_counter() - t_start > budget_s:
            break
        bwd_rows.append(run(dataclasses.replace(best_fwd, bwd=mode, block_q_dkv=qkv, block_k_dkv=kkv, block_q_dq=qdq,
                                                block_k_dq=kdq, warps_bwd=w, stages_bwd=s), "fwd_bwd"))
    return {"bench": "attention_autotune", "hardware": _hardware(), "shape": list(shape), "dtype": dtype,
            "default": dataclasses.asdict(base), "best": dataclasses.asdict(best(bwd_rows, best_fwd)),
            "fwd": fwd_rows, "fwd_bwd": bwd_rows}


def check_accuracy(shape=(2, 2000, 4, 64), dtype: str = "bfloat16", seed: int = 0, bwd: str = "fused") -> dict[str, Any]:
    """Relative L2 error of the Pallas kernel's output and gradients against XLA in float32.

    The reference runs on the same (dtype-rounded) inputs upcast to float32 at 'highest' matmul
    precision, with a random key mask and one batch row fully masked. `bwd` picks the backward.
    """
    b, length, n, kd = shape
    q, k, v, do = _inputs(shape, jnp.dtype(dtype), seed)
    keep = jax.random.uniform(jax.random.key(seed + 1), (b, length)) > 0.3
    keep = keep.at[-1].set(False) if b > 1 else keep
    blocks = dataclasses.replace(default_block_sizes(kd), bwd=bwd)

    def outputs(fn, *xs):
        out, vjp = jax.vjp(fn, *xs[:3])
        return (out, *vjp(xs[3]))

    pallas = lambda q, k, v: flash_attention(q, k, v, keep, block_sizes=blocks)  # noqa: E731
    xla = lambda q, k, v: attention(q, k, v, mask=keep, impl="xla")  # noqa: E731
    got = jax.jit(lambda *xs: outputs(pallas, *xs))(q, k, v, do)
    with jax.default_matmul_precision("highest"):
        ref = jax.jit(lambda *xs: outputs(xla, *xs))(*(x.astype(jnp.float32) for x in (q, k, v, do)))
    errs = {}
    for name, g, r in zip(("out", "dq", "dk", "dv"), got, ref):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        errs[name] = float(np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-30))
        errs[f"{name}_finite"] = bool(np.all(np.isfinite(g)))
    return {"shape": list(shape), "dtype": dtype, "bwd": bwd, "rel_l2": errs}


def add_bench_arguments(p) -> None:
    """`ltx-jax bench attention`: TFLOP/s per implementation and shape (B, L, N, K)."""
    p.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES),
                   help="comma-separated BxLxNxK self-attention shapes")
    p.add_argument("--impls", default=None,
                   help="comma-separated attention impls; IMPL:INNER for ring/ulysses with an inner impl "
                        "(default: this platform's kernels, plus ring/ulysses over all devices if several)")
    p.add_argument("--baseline", default=None, help="impl the ratios divide by (default cudnn on GPU, splash on TPU, else xla)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"), help="input dtype")
    p.add_argument("--modes", default="fwd,fwd_bwd", help="fwd and/or fwd_bwd")
    p.add_argument("--iters", type=int, default=20, help="calls per timing repeat")
    p.add_argument("--autotune", action="store_true",
                   help="instead of benchmarking, sweep the Pallas kernel's block sizes at the first shape of "
                        "each head dim in --shapes and record the fastest (see --record)")
    p.add_argument("--record", default=None,
                   help=f"JSON record the autotuned blocks are written into (default ${RECORD_ENV}); "
                        f"point ${RECORD_ENV} at it to make them the kernel's default")
    p.add_argument("--budget-s", type=float, default=240.0, help="autotune time limit per head dim")


def run_bench(args) -> dict[str, Any]:
    shapes = [_shape(s) for s in args.shapes.split(",")]
    if args.record and not args.autotune:
        raise ValueError(f"--record {args.record} only applies with --autotune (the benchmark records nothing)")
    if args.autotune:
        return run_autotune(shapes, args.dtype, args.iters, args.budget_s, args.record or os.environ.get(RECORD_ENV))
    impls = tuple(args.impls.split(",")) if args.impls else None
    return bench_attention(shapes, impls, dtype=args.dtype, modes=tuple(args.modes.split(",")),
                           iters=args.iters, baseline=args.baseline)


def _shape(text: str) -> tuple[int, int, int, int]:
    """'2x6144x32x64' -> (B, L, N, K), or an error naming the value and the format."""
    parts = text.strip().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--shapes entry {text!r} must be BxLxNxK with four positive integers, e.g. 2x6144x32x64")
    return tuple(int(p) for p in parts)


def run_autotune(shapes, dtype="bfloat16", iters=10, budget_s=240.0, record=None, **candidates) -> dict[str, Any]:
    """Autotunes at the first shape of each head dim; writes each best tiling into `record`."""
    by_head_dim = {}
    for shape in shapes:
        by_head_dim.setdefault(shape[3], shape)
    runs = []
    for kd, shape in by_head_dim.items():
        tuned = autotune_blocks(shape, dtype=dtype, iters=iters, budget_s=budget_s, **candidates)
        timed = [r for r in tuned["fwd_bwd"] if "ms" in r]
        if timed:
            best = min(timed, key=lambda r: r["ms"])
            # cuDNN at the same shape, so impl="auto" can take whichever was faster here.
            versus = bench_attention([shape], ("cudnn",), dtype=dtype, modes=("fwd_bwd",), iters=iters)["results"][0]
            tuned["impl_ms"] = {"pallas": best["ms"], "cudnn": versus.get("ms", versus.get("error"))}
            if record:
                record_blocks(record, BlockSizes(**tuned["best"]), kd, shape=list(shape), dtype=dtype,
                              fwd_bwd_tflops_per_s=best["tflops_per_s"], impl_ms=tuned["impl_ms"])
        runs.append(tuned)
    return {"bench": "attention_autotune", "hardware": _hardware(), "record": record, "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ltx_jax.nn.kernels.bench_attention [OUT.json]`: accuracy, autotune, benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {}

    def section(name, fn):
        try:
            report[name] = fn()
        except Exception as e:  # noqa: BLE001 - keep what the other sections measured
            report[name] = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
        print(json.dumps({name: report[name]})[:4000], flush=True)
        if argv:
            with open(argv[0], "w") as f:
                f.write(json.dumps(report, indent=2) + "\n")

    section("accuracy", lambda: [check_accuracy(s, d, bwd=m) for s, d, m in (
        ((2, 2000, 4, 64), "bfloat16", "fused"), ((2, 2000, 4, 64), "bfloat16", "split"),
        ((2, 1000, 4, 128), "float32", "fused"), ((1, 777, 2, 64), "float32", "split"))])
    # The tuned tilings go into $LTX_JAX_FLASH_BLOCKS when set, else beside OUT.json.
    record = os.environ.get(RECORD_ENV) or (f"{os.path.splitext(argv[0])[0]}_blocks.json" if argv else None)
    section("autotune", lambda: run_autotune([DEFAULT_SHAPES[0], DEFAULT_SHAPES[-1]], budget_s=120.0, record=record))
    runs = report["autotune"].get("runs") or [{}]
    tuned = BlockSizes(**runs[0]["best"]) if "best" in runs[0] else default_block_sizes(64)
    tuned_fn = lambda q, k, v: flash_attention(q, k, v, block_sizes=tuned)  # noqa: E731
    section("bench", lambda: bench_attention(DEFAULT_SHAPES[:1] + DEFAULT_SHAPES[-1:],
                                             ("pallas", ("pallas_tuned", tuned_fn), "cudnn"),
                                             baseline="cudnn"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
