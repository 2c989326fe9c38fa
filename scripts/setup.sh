#!/usr/bin/env bash
# Create (or refresh) .venv with the pinned packages; a no-op when it is already current.
set -euo pipefail
cd "$(dirname "$0")/.."
pick_python() {
  for c in "${PYTHON:-}" python3.11 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$c"; return 0
    fi
  done
  echo "error: Python 3.11 is needed (bpy 5.0.1 is built for it); set PYTHON=/path/to/python3.11" >&2
  return 1
}
if [ -x .venv/bin/python ] && cmp -s requirements.txt .venv/.requirements.txt; then
  exit 0
fi
PY=$(pick_python)
echo "setting up .venv with $PY (pinned packages from requirements.txt)"
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
cp requirements.txt .venv/.requirements.txt
