"""Which engine runs a style: LiteRT (the bundled runtime) or TensorFlow.

LiteRT runs a style's `.tflite` file in any Python that has numpy and the `ai-edge-litert`
wheel (Blender's own, with the wheel the extension bundles), starts in a tenth of a second
and stays small. TensorFlow runs the `.keras` file; it is the training tool and stays the
fallback for styles without a `.tflite` or when asked for by $LINERELIFER_BACKEND.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

BACKEND_ENV = "LINERELIFER_BACKEND"
BACKENDS = ("litert", "tensorflow")
LITERT_MODULE = "ai_edge_litert"


def requested_backend(requested: str | None = None) -> str:
    """`auto`, `litert` or `tensorflow`, from the argument or $LINERELIFER_BACKEND."""
    choice = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if choice not in ("auto", *BACKENDS):
        raise ValueError(f"{BACKEND_ENV}={choice!r} is not one of auto, litert or tensorflow; fix the setting")
    return choice


def tflite_path(style_path: str | os.PathLike) -> Path:
    """The LiteRT file of a style: NAME.tflite beside NAME.keras/NAME.json."""
    return Path(style_path).with_suffix(".tflite")


def keras_path(style_path: str | os.PathLike) -> Path:
    return Path(style_path).with_suffix(".keras")


def litert_site(module: str = LITERT_MODULE) -> str | None:
    """The site folder this interpreter finds LiteRT in (None when it cannot).

    Inside Blender that is the folder the extension's bundled wheel was installed to; the
    worker is given it explicitly, since a plain `python` does not search it.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]).parent)


def choose_backend(style_path: str | os.PathLike, requested: str | None = None,
                   litert_ok: bool = True) -> str:
    """The backend for a style: LiteRT when the style has a `.tflite` and LiteRT is there."""
    choice = requested_backend(requested)
    if choice != "auto":
        return choice
    return "litert" if litert_ok and tflite_path(style_path).is_file() else "tensorflow"
