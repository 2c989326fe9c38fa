"""Which Python runs the worker, and whether it can.

The worker needs TensorFlow, which Blender's Python lacks, so the interpreter is chosen
explicitly (a preference or --python), else $LINERELIFER_PYTHON, else the current one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

REQUIREMENTS = ["tensorflow-cpu==2.21.0", "keras==3.15.1", "numpy==1.26.4"]

_PROBE = (
    "import json, sys, numpy, keras, tensorflow as tf\n"
    "print(json.dumps({'python': sys.version.split()[0], 'tensorflow': tf.__version__,"
    " 'keras': keras.__version__, 'numpy': numpy.__version__}))\n"
)


def resolve_python(explicit: str | os.PathLike | None = None) -> str:
    """The interpreter to start the worker with (not checked here; see probe_python)."""
    for candidate in (explicit, os.environ.get("LINERELIFER_PYTHON")):
        if candidate:
            path = os.path.expanduser(str(candidate))
            found = shutil.which(path) if os.sep not in path else path
            return found or path
    return sys.executable


def probe_python(path: str) -> dict[str, Any]:
    """Versions the interpreter reports; RuntimeError (one sentence) when it cannot run the worker."""
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"worker Python {path!r} does not exist; set the path in the preferences or LINERELIFER_PYTHON")
    try:
        proc = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"worker Python {path} could not be run ({exc})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"worker Python {path} cannot import TensorFlow/Keras ({last}); install the runtime")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"worker Python {path} gave no version report") from None
