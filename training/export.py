"""Write a trained generator as a style: NAME.keras plus NAME.json metadata.

The metadata carries what inference needs (tiling margin and stride, default tile) and
how the style was made (command, seed, steps, wall time), so every shipped model can be
traced back to the command that produced it.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from linerelifer_addon.core.files import atomic_write

STYLE_FORMAT = 1


def style_metadata(gen: Any, arch: str, name: str, description: str, training: dict[str, Any],
                   tile: int = 512, native_width: float | None = None,
                   ink_tone: float | None = None) -> dict[str, Any]:
    import importlib

    import keras

    from linerelifer_addon.core import tiling
    from linerelifer_addon.worker import model as models

    align = models.total_stride(arch)
    radius = models.receptive_radius(gen)
    grid = max(align, 8)
    margin = tiling.round_up(max(radius, 1), grid)
    blank_out = keras.ops.convert_to_numpy(gen(np.zeros((1, tile, tile, 1), np.float32), training=False))
    # Only a tile's inner part reaches the result; its border sees the layers' zero padding.
    blank = float(blank_out[0, margin:tile - margin, margin:tile - margin, 0].max())
    backend = keras.backend.backend()
    look = {}
    if native_width is not None:  # line width the network was trained on (core/linewidth.py)
        look["native_width"] = round(float(native_width), 3)
    if ink_tone is not None:  # grey level of the drawings' ink (0 black, 1 white), drawn by the CLI
        look["ink_tone"] = round(float(ink_tone), 4)
    return {
        "format": STYLE_FORMAT,
        "name": name,
        "description": description,
        "version": "1.0",
        "arch": arch,
        "input": "line coverage, float32 in [0, 1], 1 = ink, shape [1, H, W, 1]",
        "output": "refined line coverage, same shape",
        "margin": margin,
        "align": grid,
        "tile": tile,
        "receptive_radius": radius,
        **look,
        "macs_per_pixel": round(models.macs_per_pixel(gen)),
        "parameters": int(gen.count_params()),
        "blank_output_max": blank,
        "training": {**training, "backend": backend,
                     backend: importlib.import_module(backend).__version__, "keras": keras.__version__,
                     "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }


def tflite_metadata(data: bytes) -> dict[str, Any]:
    import tensorflow as tf

    return {"file_bytes": len(data), "precision": "float32", "converter": f"tensorflow {tf.__version__}"}


def write_tflite(gen: Any, style_path: str | os.PathLike, margin: int) -> dict[str, Any]:
    """Write NAME.tflite beside NAME.keras; returns what the metadata records of it.

    `margin` is the style's tiling margin: only outputs farther than that from a tile's edge
    are used, so only they must agree with Keras."""
    from linerelifer_addon.core.backends import tflite_path

    from .tflite import tflite_bytes

    data = tflite_bytes(gen, margin)
    atomic_write(tflite_path(style_path), lambda tmp: Path(tmp).write_bytes(data))
    return tflite_metadata(data)


def _write_meta(style_path: Path, meta: dict[str, Any]) -> None:
    atomic_write(style_path.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))


def export_style(gen: Any, arch: str, out_dir: str | os.PathLike, name: str, description: str,
                 training: dict[str, Any], native_width: float | None = None,
                 ink_tone: float | None = None, tflite: bool = True) -> Path:
    """Save `gen` as `out_dir/name.keras` + `.tflite` + `.json`; returns the .keras path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = style_metadata(gen, arch, name, description, training, native_width=native_width, ink_tone=ink_tone)
    path = out_dir / f"{name}.keras"
    if not tflite:  # an older run's LiteRT file would be what the worker runs (it prefers LiteRT)
        from linerelifer_addon.core.backends import tflite_path

        tflite_path(path).unlink(missing_ok=True)
    atomic_write(path, lambda tmp: gen.save(tmp))
    if tflite:
        meta["tflite"] = write_tflite(gen, path, int(meta["margin"]))
    _write_meta(path, meta)
    return path


def convert_style(style_path: str | os.PathLike) -> Path:
    """Add the LiteRT file to an existing `.keras` style (and record it in its metadata)."""
    from linerelifer_addon.core.backends import tflite_path
    from linerelifer_addon.core.styles import read_meta
    from linerelifer_addon.worker.engine import load_style_model

    path = Path(style_path)
    meta = read_meta(path)
    meta["tflite"] = write_tflite(load_style_model(path), path, int(meta["margin"]))
    _write_meta(path, meta)
    return tflite_path(path)


def command_line() -> str:
    return "python -m training " + " ".join(sys.argv[1:])
