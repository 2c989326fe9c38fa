#!/usr/bin/env bash
# Set up if needed, then render a Freestyle scene with bpy, refine it, write before/after images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python demo.py "$@"
