#!/usr/bin/env bash
# Create (or reuse) the project's environment in .venv at the repository root.
#   bash launch/env.sh          runtime only
#   bash launch/env.sh test     plus the parity oracles (torch CPU, diffusers, ltx-video)
# Re-running is cheap: a stamp records what was installed for the current pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ltx_jax needs Python 3.11 or newer")'
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.ltx_jax-$(cat pyproject.toml launch/env.sh | sha256sum | cut -c1-16)-${extra:-runtime}"
[ -f "$stamp" ] && exit 0

log="$(mktemp)"
pip() {  # quiet pip; on failure show its output (minus the local-mirror noise) and stop
  .venv/bin/python -m pip -q --disable-pip-version-check "$@" >"$log" 2>&1 \
    || { grep -v "is ignored" "$log" >&2; return 1; }
}
echo "setting up .venv (${extra:-runtime}) ..." >&2
pip install --upgrade pip
if [ "$extra" = "test" ]; then
  # torch pinned first: the CPU build where a local wheel exists, else PyPI's default build.
  # An unpinned torch could pull several GB of CUDA packages.
  pip install "torch==2.13.0" || pip install torch
  pip install -e ".[test]"
  # The original Lightricks package is the second oracle; its pins conflict with
  # transformers 5, and only its model and scheduler modules are used, so no deps.
  pip install --no-deps "ltx-video==0.1.2"
  .venv/bin/python -c "import torch, diffusers, ltx_video"
  # libtpu lets `bench train --topology` compile for TPU pods on this CPU (no TPU needed). It goes
  # to its own folder, not the venv, so plain runs never try to start a TPU backend; the version
  # is the one the installed jax pins for its [tpu] extra.
  libtpu_req="$(.venv/bin/python -c 'import importlib.metadata as m; print(next(r.split(";")[0] for r in m.requires("jax") if r.startswith("libtpu")))')"
  pip install --no-deps --upgrade --target .venv/libtpu-aot "$libtpu_req"
else
  pip install -e .
fi
.venv/bin/python -c "import ltx_jax, jax, flax"
rm -f .venv/.ltx_jax-*-"${extra:-runtime}" "$log"
touch "$stamp"
