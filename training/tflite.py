"""A style's LiteRT file: the same network, rewritten so XNNPACK runs all of it.

Keras' Conv2DTranspose converts to TRANSPOSE_CONV with an output shape computed at run time
(SHAPE, STRIDED_SLICE, MUL, PACK), which XNNPACK cannot take: those layers fell back to
LiteRT's reference kernels and a 1080p frame took 0.65 s instead of 0.3 s. A stride-s
transposed convolution equals a plain convolution to s·s phases of its output followed by
depth-to-space, so the exported graph uses that; the weights are rearranged, not retrained,
and the result agrees with the `.keras` network to float32 rounding (checked at export).
"""
from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

EXPORT_CHECK_SIZE = 200  # px; the export refuses a file that disagrees with Keras on this probe
EXPORT_TOLERANCE = 1e-4


def _phase_kernel(kernel: np.ndarray, stride: int, k: int) -> tuple[np.ndarray, int]:
    """Conv2D weights (taps, taps, in, s·s·out) equal to a 'same' Conv2DTranspose's.

    Transposed: out[i·s + t - p] += x[i]·W[t], p = (k - s) // 2. For output o = q·s + r the
    terms are x[q - m]·W[m·s + r + p]; m runs over the input offsets a conv reads.
    """
    s = stride
    p = max(k - s, 0) // 2
    cout, cin = kernel.shape[2], kernel.shape[3]
    ms = [m for m in range(-k, k + 1) if any(0 <= m * s + r + p < k for r in range(s))]
    reach = max(abs(min(ms)), abs(max(ms)))
    taps = 2 * reach + 1
    out = np.zeros((taps, taps, cin, s, s, cout), np.float32)
    for a in range(taps):
        my = reach - a  # input row offset a - reach reads x[q - my]
        for b in range(taps):
            mx = reach - b
            for ry in range(s):
                ty = my * s + ry + p
                if not 0 <= ty < k:
                    continue
                for rx in range(s):
                    tx = mx * s + rx + p
                    if 0 <= tx < k:
                        out[a, b, :, ry, rx, :] = kernel[ty, tx].T  # (out, in) -> (in, out)
    return out.reshape(taps, taps, cin, s * s * cout), reach


def litert_graph(gen: Any) -> Any:
    """A copy of `gen` whose transposed convolutions are phase convolutions + depth-to-space."""
    import keras
    import tensorflow as tf
    from keras import layers

    class PhaseConvTranspose(layers.Layer):
        def __init__(self, src: Any, **kw: Any) -> None:
            super().__init__(name=src.name, **kw)
            weights = [np.asarray(w) for w in src.get_weights()]
            kernel = weights[0]
            bias = weights[1] if src.use_bias else np.zeros(kernel.shape[2], np.float32)
            k, stride = src.kernel_size[0], src.strides[0]
            # 'valid' with kernel == stride (a plain repeat) places outputs as 'same' does
            same = src.padding == "same" or k == stride
            if (src.kernel_size[0] != src.kernel_size[1] or src.strides[0] != src.strides[1]
                    or not same or src.dilation_rate != (1, 1)):
                raise ValueError(f"layer {src.name} is not a square 'same' transposed convolution")
            w, self.reach = _phase_kernel(kernel, stride, k)
            self.stride = stride
            self.w = tf.constant(w)
            self.b = tf.constant(np.tile(bias.astype(np.float32), stride * stride))
            self.act = keras.activations.get(src.activation)

        def call(self, x: Any) -> Any:
            y = tf.nn.conv2d(x, self.w, strides=1, padding="SAME") + self.b
            return self.act(tf.nn.depth_to_space(y, self.stride))

    def swap(layer: Any) -> Any:
        if isinstance(layer, layers.Conv2DTranspose):
            return PhaseConvTranspose(layer)
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(gen, clone_function=swap)
    for src, dst in zip(gen.layers, clone.layers):
        if not isinstance(src, layers.Conv2DTranspose) and src.weights:
            dst.set_weights(src.get_weights())
    return clone


def tflite_bytes(gen: Any) -> bytes:
    """The generator as a float32 LiteRT flatbuffer with a `[1, None, None, 1]` input.

    Goes through a SavedModel export: converting a bare concrete function instead silently
    dropped the weights once (a 17 KB file that computed NaN).
    """
    import tensorflow as tf

    graph = litert_graph(gen)
    with tempfile.TemporaryDirectory(prefix="linerelifer-export-") as tmp:
        graph.export(tmp, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32)])
        data = bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())
    check_against_keras(gen, data)
    return data


def run_tflite(data: bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """One [1, H, W, 1] float32 input through a LiteRT flatbuffer."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    it = Interpreter(model_content=data, num_threads=threads)
    idx = it.get_input_details()[0]["index"]
    it.resize_tensor_input(idx, list(x.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(idx, x.astype(np.float32))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def check_against_keras(gen: Any, data: bytes) -> float:
    """Largest difference between the flatbuffer and Keras on a probe; ValueError past tolerance."""
    import keras

    rng = np.random.default_rng(0)
    n = EXPORT_CHECK_SIZE
    x = (rng.random((1, n, n + 24, 1)) * (rng.random((1, n, n + 24, 1)) > 0.8)).astype(np.float32)
    ref = keras.ops.convert_to_numpy(gen(x, training=False))
    diff = float(np.abs(run_tflite(data, x) - ref).max())
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"the LiteRT export differs from the Keras network by {diff:.2e}; it was not written")
    return diff
