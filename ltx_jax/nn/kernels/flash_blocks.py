"""Tile sizes of the Pallas flash-attention kernels: the per-GPU table and autotuned records.

`default_block_sizes(head_dim)` answers, in order: an autotuned entry for this GPU generation and
head dim from the JSON record named by $LTX_JAX_FLASH_BLOCKS (written by `ltx-jax bench
attention --autotune`, see bench_attention.py), else the built-in BLOCK_TABLE, else (off a GPU,
where the kernels run in interpret mode) small blocks so tiny test inputs span several blocks.
The record also holds the tuned kernel's and cuDNN's measured times, from which
`measured_fastest` tells attention's impl="auto" which of the two to use on this GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import jax

MIN_BLOCK = 16  # Triton's smallest dot operand dimension.
BWD_MODES = ("fused", "split")
RECORD_ENV = "LTX_JAX_FLASH_BLOCKS"


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes and Triton launch parameters of the kernels.

    block_q/block_k tile the forward; block_q_dkv/block_k_dkv the dk-dv kernel (one program per
    key block, looping over query blocks); block_q_dq/block_k_dq the dq kernel (one program per
    query block, looping over key blocks), used when bwd is "split". All blocks are powers of two
    >= 16. bwd: "fused" (dq by atomic adds in the dk-dv kernel) or "split" (bit-reproducible).
    """

    block_q: int = 128
    block_k: int = 64
    block_q_dkv: int = 64
    block_k_dkv: int = 128
    block_q_dq: int = 128
    block_k_dq: int = 64
    warps_fwd: int = 4
    stages_fwd: int = 3
    warps_bwd: int = 8
    stages_bwd: int = 2
    bwd: str = "fused"

    def __post_init__(self):
        if self.bwd not in BWD_MODES:
            raise ValueError(f"BlockSizes.bwd={self.bwd!r} must be one of {BWD_MODES}")
        for f in ("block_q", "block_k", "block_q_dkv", "block_k_dkv", "block_q_dq", "block_k_dq"):
            x = getattr(self, f)
            if x < MIN_BLOCK or x & (x - 1):
                lo = max(MIN_BLOCK, 1 << max(x.bit_length() - 1, 0))
                raise ValueError(f"BlockSizes.{f}={x} must be a power of two >= {MIN_BLOCK}; nearest: {lo}, {2 * lo}")


# Per GPU generation (CUDA compute capability major) and head dim. NOT YET MEASURED with this
# kernel (no GPU in the sessions that wrote it): the Hopper (H100/H200) hd-64 forward is the
# Triton fused-attention tutorial's H100 tiling (128x64, 4 warps, 3 stages), the fused backward
# FlashAttention-2's (64 queries x 128 keys, 8 warps); the others scale them for register
# pressure. Run the autotuner on each GPU and copy its "best" here.
BLOCK_TABLE: dict[tuple[str, int], BlockSizes] = {
    ("9", 64): BlockSizes(block_q=128, block_k=64, warps_fwd=4, stages_fwd=3, block_q_dkv=64,
                          block_k_dkv=128, block_q_dq=128, block_k_dq=32, warps_bwd=8, stages_bwd=2),
    ("9", 128): BlockSizes(block_q=128, block_k=64, warps_fwd=8, stages_fwd=3, block_q_dkv=64,
                           block_k_dkv=64, block_q_dq=64, block_k_dq=64, warps_bwd=8, stages_bwd=2),
    ("8", 64): BlockSizes(block_q=128, block_k=64, warps_fwd=4, stages_fwd=2, block_q_dkv=64,
                          block_k_dkv=64, block_q_dq=64, block_k_dq=32, warps_bwd=4, stages_bwd=2),
    ("8", 128): BlockSizes(block_q=128, block_k=32, warps_fwd=8, stages_fwd=2, block_q_dkv=32,
                           block_k_dkv=64, block_q_dq=64, block_k_dq=32, warps_bwd=8, stages_bwd=2),
}
# Interpret mode (CPU tests): small blocks so tiny inputs still span several blocks.
INTERPRET_BLOCKS = BlockSizes(16, 16, 16, 16, 16, 16)


def generation(device: Any) -> str:
    """A GPU's CUDA compute capability major, the table's first key ("9" for Hopper); other
    platforms by name (a CPU autotune record is keyed "cpu" and never used on a GPU)."""
    if device.platform != "gpu":
        return device.platform
    return str(getattr(device, "compute_capability", "9.0")).split(".")[0]


def _record_key(device: Any, head_dim: int) -> str:
    return f"{generation(device)}:{64 if head_dim <= 64 else 128}"


def load_record(path: str | os.PathLike, source: str = "") -> dict[str, Any]:
    """The autotune record at `path`: {"gen:head_dim": {"blocks": {...}, ...}}; {} if absent.
    `source` says where the path came from, for the error message."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
        for key, entry in record.items():
            BlockSizes(**entry["blocks"])  # every entry must describe valid blocks
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}{source} is not a flash-attention block record: {e}") from e
    return record


@functools.lru_cache(maxsize=8)
def _cached_record(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    # Keyed on the file's mtime and size: read once per version, not at every traced attention.
    return load_record(path, f" (from ${RECORD_ENV})")


def record_blocks(path: str | os.PathLike, blocks: BlockSizes, head_dim: int, device: Any = None,
                  **measured: Any) -> dict[str, Any]:
    """Writes `blocks` (plus what was measured) as this GPU generation's entry for `head_dim`
    into the record at `path`, keeping the other entries; atomic (write, then rename)."""
    device = device or jax.devices()[0]
    path = Path(path)
    record = load_record(path)
    record[_record_key(device, head_dim)] = {
        "blocks": dataclasses.asdict(blocks), "device_kind": getattr(device, "device_kind", "?"), **measured}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return record


def _recorded(head_dim: int, device: Any) -> dict[str, Any] | None:
    """This generation's record entry for `head_dim`, if $LTX_JAX_FLASH_BLOCKS names a record."""
    path = os.environ.get(RECORD_ENV)
    if not path:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _cached_record(path, stat.st_mtime_ns, stat.st_size).get(_record_key(device, head_dim))


def measured_fastest(head_dim: int, device: Any = None) -> str | None:
    """The attention impl ("pallas" or "cudnn") the autotune record measured fastest for this GPU
    generation and head dim (forward+backward at the tuned shape), or None if it has no timing
    of both; attention's impl="auto" asks this before its built-in preference."""
    entry = _recorded(head_dim, device or jax.devices()[0])
    timed = {k: v for k, v in (entry or {}).get("impl_ms", {}).items() if isinstance(v, (int, float))}
    return min(timed, key=timed.get) if {"pallas", "cudnn"} <= set(timed) else None


def default_block_sizes(head_dim: int, device: Any = None) -> BlockSizes:
    """The tiling for `device` (default: the first device) and a head dim: the autotune record
    named by $LTX_JAX_FLASH_BLOCKS if it has this generation, else BLOCK_TABLE (unknown
    generations get Hopper's entry); INTERPRET_BLOCKS off a GPU. When XLA is asked for
    deterministic GPU results (deterministic_requested), the backward is the split one."""
    device = device or jax.devices()[0]
    if device.platform != "gpu":
        return INTERPRET_BLOCKS
    entry = _recorded(head_dim, device)
    if entry is not None:
        blocks = BlockSizes(**entry["blocks"])
    else:
        major = generation(device)
        major = major if any(g == major for g, _ in BLOCK_TABLE) else "9"
        blocks = BLOCK_TABLE[(major, 64 if head_dim <= 64 else 128)]
    return dataclasses.replace(blocks, bwd="split") if deterministic_requested() else blocks


def deterministic_requested() -> bool:
    """True when XLA_FLAGS asks XLA for run-to-run identical GPU results
    (--xla_gpu_deterministic_ops or --xla_gpu_exclude_nondeterministic_ops): the same switch then
    keeps the fused backward's atomic adds, whose order varies, out of our kernel."""
    flags = os.environ.get("XLA_FLAGS", "").replace("'", "").replace('"', "").split()
    on = {f"--xla_gpu_{name}={v}" for name in ("deterministic_ops", "exclude_nondeterministic_ops")
          for v in ("true", "True", "1")}
    return any(f in on for f in flags)
