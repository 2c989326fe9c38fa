"""The TensorFlow backend: a `.keras` style loaded in safe mode, run in graph mode.

The graph has a `[1, None, None, 1]` signature, so it is traced once whatever the tile size;
the tile loop is shared with the other backends (worker.tiled).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.backends import keras_path
from ..core.styles import StyleError
from .tiled import BLANK_TOLERANCE, TiledEngine  # noqa: F401 - BLANK_TOLERANCE is part of this module's API

# float32, bfloat16, or auto (bfloat16 where the CPU computes it natively).
PRECISION_ENV = "LINERELIFER_PRECISION"
PRECISIONS = ("float32", "bfloat16")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 dot products (AVX512-BF16 or AMX).

    Elsewhere bfloat16 is emulated and slower than float32. Only Linux tells us cheaply;
    other systems stay on float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(requested: str | None = None) -> str:
    """The precision to run styles in: bfloat16 nearly halves the time where it is native.

    Its results stay within about 0.01 of float32; tile seams, exact in float32, stay within
    0.002 (tile shapes change how the bfloat16 sums are blocked).
    """
    choice = (requested or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if choice == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    if choice not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV}={choice!r} is not one of float32, bfloat16 or auto; fix the setting")
    return choice


def with_precision(model: Any, precision: str) -> Any:
    """The same network and weights computing in `precision` (float32 returns the model itself)."""
    if precision == "float32":
        return model
    config = model.get_config()
    # Layers that make one channel (the output and its last steps) stay float32, so coverage
    # keeps float32 resolution; they are a sliver of the work.
    single = {layer.name for layer in model.layers if tuple(layer.output.shape)[-1:] == (1,)}
    for layer in config.get("layers", []):
        policy = layer.get("config", {}).get("dtype")
        if isinstance(policy, dict) and policy.get("class_name") == "DTypePolicy":
            policy["config"]["name"] = "float32" if layer.get("name") in single else "mixed_bfloat16"
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def configure_threads(threads: int | None) -> None:
    """Set TensorFlow's thread pools; must run before the first op."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _load_failure_cause(exc: BaseException) -> str:
    """The telling sentence of a Keras load error (its messages run to several paragraphs)."""
    text = str(exc).strip()
    if "Exception encountered:" in text:  # a wrapped error: the inner one names the cause
        text = text.rsplit("Exception encountered:", 1)[1].strip()
    if not text:
        return type(exc).__name__
    first = text.splitlines()[0].strip()
    end = first.find(". ")
    sentence = first[:end] if end > 0 else first.rstrip(".")
    return sentence if len(sentence) <= 200 else sentence[:197] + "..."


def load_style_model(path: str | os.PathLike) -> Any:
    """Load a .keras style in safe mode; StyleError names the file on any failure.

    Safe mode refuses Lambda layers holding Python code; custom or unknown classes fail to
    resolve. Either way nothing from the file is executed.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise StyleError(f"style file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise StyleError(f"style file {path} is not a .keras file (not a zip archive); re-export the style")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for broken or unsafe files
        raise StyleError(f"style file {path} could not be loaded safely ({_load_failure_cause(exc)})") from None
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    shapes = [tuple(t.shape) for t in (*inputs, *outputs)]
    if len(inputs) != 1 or len(outputs) != 1 or any(len(sh) != 4 or sh[-1] != 1 for sh in shapes):
        raise StyleError(f"style file {path} is not a line style (it maps {shapes[:len(inputs)]} to "
                         f"{shapes[len(inputs):]}, not one [batch, H, W, 1] coverage image to another)")
    return model


class Engine(TiledEngine):
    """A style's `.keras` network run by TensorFlow, compiled once for any tile size."""

    backend = "tensorflow"

    def __init__(self, style_path: str | os.PathLike, model: Any | None = None,
                 meta: dict[str, Any] | None = None, precision: str | None = None) -> None:
        import tensorflow as tf

        super().__init__(style_path, meta)
        self.precision = choose_precision(precision)
        self.model = with_precision(model if model is not None else load_style_model(keras_path(self.path)),
                                    self.precision)

        def graph(dtype: Any) -> Any:
            # float16 tiles (the worker's transfer format) are cast inside the graph, where the
            # cast is vectorised; numpy's float16 conversion cost a third of a 1080p frame.
            return tf.function(
                lambda x: tf.cast(self.model(tf.cast(x, tf.float32), training=False), dtype),
                input_signature=[tf.TensorSpec([1, None, None, 1], dtype)],
                reduce_retracing=True,
                # No Python control flow to convert; autograph would also leave a generated
                # module file in the temp folder at every worker start.
                autograph=False,
            )

        self._fns = {np.dtype(np.float32): graph(tf.float32), np.dtype(np.float16): graph(tf.float16)}

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """One tile through the network; float16 in gives float16 out, else float32."""
        fn = self._fns.get(x.dtype)
        if fn is None:
            x, fn = x.astype(np.float32), self._fns[np.dtype(np.float32)]
        return fn(x[None, :, :, None]).numpy()[0, :, :, 0]
