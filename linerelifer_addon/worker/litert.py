"""The LiteRT backend: a style's `.tflite` file run by TensorFlow Lite's runtime (XNNPACK).

It needs only numpy and the `ai-edge-litert` wheel, so it runs in Blender's own Python and
starts in a tenth of a second. A `.tflite` file is a flatbuffer of built-in operators and
weights: no Python code, and custom operators are refused because none are registered.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..core.backends import tflite_path
from ..core.styles import StyleError
from .tiled import TiledEngine


class LiteRTEngine(TiledEngine):
    """A style's `.tflite` network; the input is resized to each tile size when it changes."""

    backend = "litert"
    precision = "float32"

    def __init__(self, style_path: str | os.PathLike, meta: dict[str, Any] | None = None,
                 threads: int | None = None) -> None:
        super().__init__(style_path, meta)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise StyleError(f"LiteRT (ai-edge-litert) is not installed in this Python ({exc}); "
                             "install it or set LINERELIFER_BACKEND=tensorflow") from None
        model = tflite_path(self.path)
        if not model.is_file():
            raise StyleError(f"style file {model} does not exist; convert the style with `python -m training export`")
        self.threads = int(threads or os.cpu_count() or 1)
        try:
            self._interp = Interpreter(model_path=str(model), num_threads=self.threads)
        except (ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise StyleError(f"style file {model} is not a LiteRT model ({first}); re-export it with "
                             "`python -m training export`") from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if (len(inputs) != 1 or len(outputs) != 1
                or any(len(d["shape"]) != 4 or d["shape"][-1] != 1 or d["dtype"] != np.float32
                       for d in (*inputs, *outputs))):
            raise StyleError(f"style file {model} is not a line style (it does not map one float32 "
                             "[1, H, W, 1] coverage image to another)")
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self._shape: tuple[int, int] | None = None

    @property
    def max_tile(self) -> int:
        # XNNPACK keeps an 8-byte pointer per kernel tap per output pixel for every convolution and
        # pooling. The field network's export runs at 1/4 resolution (training/tflite.field_graph):
        # 154 MB for one 896² tile, 265 MB for 1280². Other networks keep full-resolution filters
        # (lite: 350 MB worker peak with 1184² tiles, 232 MB with 896², 4K frame).
        return super().max_tile if self.meta.get("arch") == "field" else min(896, super().max_tile)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        shape = x.shape[:2]
        if shape != self._shape:  # re-planned once per tile size, not per tile
            self._interp.resize_tensor_input(self._in, [1, *shape, 1], strict=False)
            self._interp.allocate_tensors()
            self._shape = shape
        self._interp.set_tensor(self._in, x.astype(np.float32, copy=False)[None, :, :, None])
        self._interp.invoke()
        y = self._interp.get_tensor(self._out)[0, :, :, 0]
        return y.astype(np.float16) if x.dtype == np.float16 else y
