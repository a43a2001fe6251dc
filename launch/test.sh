#!/usr/bin/env bash
# Set up .venv with the test extras and run the default test suite (CPU, 8 simulated devices),
# in two worker processes (one per core; a test file stays in one worker, so its module fixtures
# compile once). Extra arguments go to pytest, e.g. `bash launch/test.sh tests/dit -x -n 0`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/env.sh test
export LTX_JAX_LIBTPU_PATH="${LTX_JAX_LIBTPU_PATH:-$PWD/.venv/libtpu-aot}"  # TPU-topology AOT tests
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
