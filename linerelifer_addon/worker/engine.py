"""Inference: a style loaded once, run over fixed-shape tiles in graph mode.

One tile shape means the graph is traced once; the tile grid and margins come from
`core.tiling`, so the tiled result equals the whole-image one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core import tiling
from ..core.styles import StyleError, read_meta

# A blank tile is skipped (left blank) only when the style maps blank to blank this closely.
BLANK_TOLERANCE = 1e-3


def configure_threads(threads: int | None) -> None:
    """Set TensorFlow's thread pools; must run before the first op."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)


def load_style_model(path: str | os.PathLike) -> Any:
    """Load a .keras style in safe mode; StyleError names the file on any failure."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise StyleError(f"style file {path} does not exist")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for broken or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StyleError(f"style file {path} could not be loaded safely ({first[:200]})") from None


class Engine:
    """A loaded style and its compiled tile function."""

    def __init__(self, style_path: str | os.PathLike, model: Any | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        self.path = Path(style_path)
        self.meta = meta if meta is not None else read_meta(self.path)
        self.model = model if model is not None else load_style_model(self.path)
        self.margin = int(self.meta["margin"])
        self.align = int(self.meta["align"])
        self._fn = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32)],
            reduce_retracing=True,
        )
        self._blank_max: dict[int, float] = {}

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return self._fn(x[None, :, :, None]).numpy()[0, :, :, 0]

    def blank_output(self, tile: int) -> float:
        """Largest output for a blank tile (measured once per tile size)."""
        if tile not in self._blank_max:
            self._blank_max[tile] = float(self._infer(np.zeros((tile, tile), np.float32)).max())
        return self._blank_max[tile]

    def default_tile(self) -> int:
        return int(self.meta.get("tile", 512))

    def refine(
        self,
        coverage: np.ndarray,
        tile: int | None = None,
        skip_blank: bool = True,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        out_dtype: np.dtype = np.float32,
    ) -> np.ndarray | None:
        """Refined coverage by exact tiling; None when stopped."""
        tile = int(tile or self.default_tile())
        tile = tiling.round_up(max(tile, 2 * self.margin + self.align), self.align)
        image = coverage if coverage.dtype in (np.float16, np.float32) else coverage.astype(np.float32)
        skip = skip_blank and self.blank_output(tile) <= BLANK_TOLERANCE
        return tiling.run_tiled(image, self._infer, tile, self.margin, self.align, skip_blank=skip,
                                progress=progress, should_stop=should_stop, out_dtype=out_dtype)

    def refine_whole(self, coverage: np.ndarray) -> np.ndarray:
        """The reference: one pass over the blank-padded image (what tiling must equal)."""
        h, w = coverage.shape
        ph, pw = tiling.whole_size(h, w, self.margin, self.align)
        canvas = np.zeros((ph, pw), np.float32)
        canvas[self.margin:self.margin + h, self.margin:self.margin + w] = coverage
        return self._infer(canvas)[self.margin:self.margin + h, self.margin:self.margin + w]
