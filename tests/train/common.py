"""Overrides every train test shares, so that runs in one pytest process reuse one compiled step.

`Trainer.compile_train_step` / `compile_init` memoise per process on what a program depends on:
with the same overrides, the 8-device FSDP program of test_step.py is the one the in-process runs
of test_run.py and test_preprocess.py and the bench test use. The smoke config already compiles at
`xla_backend_optimization_level: 0`; a constant schedule with a short warmup makes the program independent of `steps`;
two microbatches keep gradient accumulation in every run.
"""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
FAST = ["optim.schedule=constant", "optim.warmup_steps=2", "train.grad_accum=2"]
