#!/usr/bin/env bash
# Set up .venv with the test extras and run the default test suite (CPU, 8 simulated devices).
# Extra arguments go to pytest, e.g. `bash launch/test.sh tests/dit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/env.sh test
exec .venv/bin/python -m pytest -q "$@"
