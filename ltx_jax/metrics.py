"""Training metrics: JSON lines plus TensorBoard on process 0, a step timer, FLOPs and MFU.

MFU = model FLOPs per step / (step time x peak FLOP/s per chip x chips). Model FLOPs are the
analytic matmul count of `ltx_jax.flops` times 3 (forward + backward), without rematerialised
recompute, as MFU conventions do.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ltx_jax.config import DiTConfig
from ltx_jax.flops import dit_forward_flops

# Dense bf16 peak FLOP/s per chip (or per GPU), by `device.device_kind` prefix; vendor datasheets.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5": 459e12,  # v5p
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU7x": 2307e12,  # Ironwood (per chip)
    "NVIDIA H100": 989e12,  # SXM, dense
    "NVIDIA H200": 989e12,
    "NVIDIA B200": 2250e12,
    "NVIDIA A100": 312e12,
}


def peak_flops(device_kind: str) -> float | None:
    """Peak bf16 FLOP/s of one device of this kind (longest matching prefix), None if unknown."""
    best = max((k for k in PEAK_FLOPS if device_kind.startswith(k)), key=len, default=None)
    return PEAK_FLOPS[best] if best else None


def train_flops(cfg: DiTConfig, *, batch: int, video_tokens: int, text_tokens: int) -> int:
    """Model FLOPs of one optimizer step over a global batch (forward + backward = 3 forwards)."""
    return 3 * dit_forward_flops(cfg, batch=batch, video_tokens=video_tokens, text_tokens=text_tokens)


def mfu(flops_per_step: float, step_time_s: float, device_kind: str, num_devices: int) -> float | None:
    peak = peak_flops(device_kind)
    if peak is None or step_time_s <= 0:
        return None
    return flops_per_step / (step_time_s * peak * num_devices)


class StepTimer:
    """Mean seconds per step over the steps since the last read, the first (compile) step excluded."""

    def __init__(self):
        self._t = None
        self._n = 0
        self._sum = 0.0
        self.total_s = 0.0

    def tick(self) -> None:
        now = time.perf_counter()
        if self._t is not None:
            self._sum += now - self._t
            self._n += 1
            self.total_s += now - self._t
        self._t = now

    def read(self) -> float | None:
        mean = self._sum / self._n if self._n else None
        self._sum, self._n = 0.0, 0
        return mean


class MetricsWriter:
    """Appends one JSON object per logged step to RUN_DIR/metrics.jsonl (and TensorBoard)."""

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = os.path.join(os.fspath(run_dir), "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(os.fspath(run_dir), exist_ok=True)
            if tensorboard:
                try:  # optional dependency
                    from tensorboardX import SummaryWriter

                    self._tb = SummaryWriter(os.path.join(os.fspath(run_dir), "tb"))
                except ImportError:
                    self._tb = None

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    return v


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of RUN_DIR/metrics.jsonl."""
    with open(os.path.join(os.fspath(run_dir), "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
