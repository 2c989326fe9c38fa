#!/usr/bin/env bash
# Set up if needed, then run the whole test suite (real bpy, real worker, real TensorFlow
# and LiteRT): everything on .venv (bpy 5.0.1), then the Blender tests again on each extra
# Blender version (.venv-bpy42: 4.2 LTS, .venv-bpy45: 4.5 LTS), whose venvs have no
# TensorFlow: there the worker runs the LiteRT wheel the extension bundles, in that venv's
# Python, as it does in Blender. With arguments, only `pytest ARGS` on .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
if [ $# -gt 0 ]; then
  bash scripts/setup.sh
  exec .venv/bin/python -m pytest "$@"
fi
bash scripts/setup.sh --blender-versions
.venv/bin/python -m pytest
for req in requirements/bpy*.txt; do
  venv=".venv-$(basename "$req" .txt)"
  echo "== Blender tests on $("$venv/bin/python" -c 'import importlib.metadata as m; print("bpy", m.version("bpy"))') ($venv)"
  "$venv/bin/python" -m pytest -p no:cacheprovider tests/test_blender_extension.py tests/test_blender_imports.py
done
