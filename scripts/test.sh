#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (real bpy, real worker, real TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
