"""Orbax checkpoints of the whole train state, the data iterator position and run metadata.

One `CheckpointManager` under RUN_DIR/checkpoints with three items per step:

  state  the train-state pytree (params, optimizer state, EMA, step, counters, RNG key data)
  data   the Grain iterator state (JSON)
  meta   JSON: step, wall-clock, the step timer and the config name

Saves are async and atomic (Orbax writes into a `*.orbax-checkpoint-tmp*` folder and renames it on
commit; a crash mid-save leaves only that temp folder, which readers ignore and the next manager
deletes). Retention keeps the newest `keep` plus every multiple of `keep_every`. Restoring takes
abstract arrays with the *current* mesh's shardings, so a checkpoint written on one mesh restores
onto another.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from ltx_jax.config import CheckpointConfig


class Checkpointer:
    """Save policy (every N steps, every M minutes, final step, preemption) around one manager."""

    def __init__(self, directory: str | os.PathLike, cfg: CheckpointConfig):
        self.cfg = cfg
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max(1, cfg.keep),
            keep_period=cfg.keep_every or None,
            enable_async_checkpointing=cfg.async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data", "meta"), options=options)
        self._last_save = time.monotonic()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def should_save(self, step: int, *, final: bool = False, preempted: bool = False) -> bool:
        if final or preempted:
            return True
        if self.cfg.every > 0 and step % self.cfg.every == 0:
            return True
        minutes = self.cfg.every_minutes
        return minutes > 0 and time.monotonic() - self._last_save >= 60 * minutes

    def save(self, step: int, state: Any, data_state: Any, meta: dict) -> None:
        """Starts an (async) save of `step`; the device-to-host copy happens before it returns."""
        if step in (self.manager.all_steps() or []):
            return
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_jsonable(data_state)),
            meta=ocp.args.JsonSave({**meta, "step": int(step), "time": time.time()}),
        )
        self.manager.save(step, args=args, force=True)
        self._last_save = time.monotonic()

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, dict]:
        """(state, data_state, meta) of `step` (default newest), placed by `abstract_state`'s
        shardings (jax.ShapeDtypeStruct leaves)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no committed checkpoint to restore")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{self.directory}/{step}: the checkpoint does not fit the current train state "
                f"(model or optimizer config changed?): {e}"
            ) from None
        return out["state"], out["data"], dict(out["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, bytes):
        return x.decode()
    if hasattr(x, "item"):
        return x.item()
    return x


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings (the restore placement)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


class PreemptionFlag:
    """Set by SIGTERM (single process) or by JAX's preemption sync point (multi-host).

    With several processes JAX's own notifier catches SIGTERM and `reached_preemption_sync_point`
    makes every host agree on the same step; one process installs a Python handler instead.
    """

    def __init__(self):
        self._event = threading.Event()
        self._multihost = jax.process_count() > 1
        self._previous = None
        if not self._multihost and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)

    def close(self) -> None:
        """Puts the previous SIGTERM handler back (train() may run inside a longer process)."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handler(self, signum, frame):  # noqa: ARG002
        self._event.set()

    def __call__(self, step: int) -> bool:
        if self._multihost:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except Exception:  # noqa: BLE001 - no preemption service (e.g. CPU without it)
                return False
        return self._event.is_set()
