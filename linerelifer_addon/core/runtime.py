"""Which Python runs the worker.

The worker needs numpy plus LiteRT (`ai-edge-litert`, for `.tflite` styles) or TensorFlow
(for `.keras` styles). The interpreter is chosen explicitly (a preference or --python), else
$LINERELIFER_PYTHON, else the current one; inside Blender the current one is Blender's own
Python, given the folder of the extension's bundled LiteRT wheel.
"""
from __future__ import annotations

import os
import shutil
import sys

# What a worker Python needs for the bundled style (TensorFlow is only for .keras-only styles).
REQUIREMENTS = ["numpy==1.26.4", "ai-edge-litert==2.3.0"]


def resolve_python(explicit: str | os.PathLike | None = None) -> str:
    """The interpreter to start the worker with (checked when the worker starts)."""
    for candidate in (explicit, os.environ.get("LINERELIFER_PYTHON")):
        if candidate:
            path = os.path.expanduser(str(candidate))
            found = shutil.which(path) if os.sep not in path else path
            return found or path
    return sys.executable
