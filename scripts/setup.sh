#!/usr/bin/env bash
# Create (or refresh) .venv with the pinned packages; with --blender-versions also one small
# venv per extra Blender version the tests cover (requirements/bpy*.txt -> .venv-bpy*: bpy,
# numpy, pytest only; the worker runs there with the LiteRT wheel the extension bundles). A no-op when they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
pick_python() {
  for c in "${PYTHON:-}" python3.11 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$c"; return 0
    fi
  done
  echo "error: Python 3.11 is needed (bpy 4.2 to 5.0 is built for it); set PYTHON=/path/to/python3.11" >&2
  return 1
}
make_venv() {  # make_venv DIR REQUIREMENTS
  local dir=$1 req=$2
  if [ -x "$dir/bin/python" ] && cmp -s "$req" "$dir/.requirements.txt"; then
    return 0
  fi
  local py
  py=$(pick_python)
  echo "setting up $dir with $py (pinned packages from $req)"
  "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  "$dir/bin/python" -m pip install --quiet -r "$req"
  cp "$req" "$dir/.requirements.txt"
}
make_venv .venv requirements.txt
if [ "${1:-}" = "--blender-versions" ]; then
  for req in requirements/bpy*.txt; do
    make_venv ".venv-$(basename "$req" .txt)" "$req"
  done
fi
