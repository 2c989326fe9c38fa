"""A style's LiteRT file: the same network, rewritten so XNNPACK runs all of it.

Keras' Conv2DTranspose converts to TRANSPOSE_CONV with an output shape computed at run time
(SHAPE, STRIDED_SLICE, MUL, PACK), which XNNPACK cannot take: those layers fell back to
LiteRT's reference kernels and a 1080p frame took 0.65 s instead of 0.3 s. A stride-s
transposed convolution equals a plain convolution to s·s phases of its output followed by
depth-to-space, so the exported graph uses that; the weights are rearranged, not retrained,
and the result agrees with the `.keras` network to float32 rounding (checked at export).

The field generator is rewritten further (`field_graph`): all of it runs on 4×4-folded
channels, because XNNPACK's per-pixel bookkeeping for full-resolution filters cost more memory
than the network's own activations.
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
    from keras import layers

    class PhaseConvTranspose(layers.Layer):
        def __init__(self, src: Any, **kw: Any) -> None:
            super().__init__(name=src.name, **kw)
            self.ops = PhaseConvTransposeOps(src)

        def call(self, x: Any) -> Any:
            return self.ops(x)

    def swap(layer: Any) -> Any:
        if isinstance(layer, layers.Conv2DTranspose):
            return PhaseConvTranspose(layer)
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(gen, clone_function=swap)
    for src, dst in zip(gen.layers, clone.layers):
        if not isinstance(src, layers.Conv2DTranspose) and src.weights:
            dst.set_weights(src.get_weights())
    return clone


def _s2d_conv(kernel: np.ndarray, offsets: tuple[int, int], cin_index, cout_index, n_in: int, n_out: int,
              phases: int = 4) -> np.ndarray:
    """A 3×3 conv at 1/4 resolution, on and to 4×4-folded channels, equal to a full-resolution one.

    `kernel` (kh, kw, ci, co) reads input offsets offsets[0]..offsets[0]+kh-1 (rows; likewise
    columns) from each output pixel; `cin_index(ci, phase)` and `cout_index(co, phase)` name
    the folded channels. Full-resolution offsets of at most ±4 land in the 3×3 block around.
    `phases` 1 computes only each block's first pixel (a stride-4 convolution's output).
    """
    kh, kw, ci_n, co_n = kernel.shape
    out = np.zeros((3, 3, n_in, n_out), np.float32)
    for ry in range(phases):
        for rx in range(phases):
            for a in range(kh):
                sy = ry + offsets[0] + a
                for b in range(kw):
                    sx = rx + offsets[1] + b
                    by, bx = sy // 4, sx // 4
                    for ci in range(ci_n):
                        i = cin_index(ci, (sy % 4) * 4 + sx % 4)
                        for co in range(co_n):
                            out[by + 1, bx + 1, i, cout_index(co, ry * 4 + rx)] += kernel[a, b, ci, co]
    return out


def _smooth_up_weights() -> np.ndarray:
    """Depthwise 3×3 weights (multiplier 16) equal to `model._smooth_up` away from the edges:
    output phase r of a 4×4 block takes a_r(B) of the block B to its side."""
    a = np.array([[1, 3, 0], [0, 4, 0], [0, 3, 1], [0, 2, 2]], np.float32) / 4.0  # a[r][B + 1]
    w = np.zeros((3, 3, 1, 16), np.float32)
    for ry in range(4):
        for rx in range(4):
            w[:, :, 0, ry * 4 + rx] = np.outer(a[ry], a[rx])
    return w


def field_graph(gen: Any) -> Any:
    """The field generator computed entirely on 4×4-folded channels at 1/4 resolution.

    XNNPACK keeps an indirection buffer of 8 bytes per kernel tap per output pixel for every
    convolution and pooling, so the field network's full-resolution 3×3 and 5×5 filters and
    4×4 box blurs held about 550 bytes per pixel (476 MB for one 896² tile). The same linear
    maps, rewritten as 3×3 convolutions between folded channels, leave only the input and the
    output at full resolution. Equal to the Keras network except within a few pixels of the
    tile's edge, where the box blurs' edge rule differs; those lie inside the tiling margin.
    """
    import keras
    import tensorflow as tf
    from keras import layers

    L = {layer.name: layer for layer in gen.layers}
    W = {name: [np.asarray(w, np.float32) for w in L[name].get_weights()] for name in L if L[name].weights}
    stem_k, stem_b = W["stem"]
    near_k, near_b = W["basis"]
    far_k, far_b = W["basis_wide"]
    far_k = _dilated_dense(far_k, L["basis_wide"].dilation_rate[0])
    S, nn, nf = stem_k.shape[-1], near_k.shape[-1], far_k.shape[-1]
    n = 1 + S + nn + nf
    # folded channel of feature c at phase p: c * 16 + p (what a depth-multiplier-16 depthwise conv makes)
    cm = lambda c, p: c * 16 + p  # noqa: E731
    w_stem = _s2d_conv(stem_k, (-1, -1), lambda c, p: p, cm, 16, 16 * S)
    lin_k = np.zeros((9, 9, 1, nn + nf), np.float32)
    lin_k[2:7, 2:7, :, :nn] = near_k
    lin_k[:, :, :, nn:] = far_k
    w_lin = _s2d_conv(lin_k, (-4, -4), lambda c, p: p, cm, 16, 16 * (nn + nf))
    b_stem, b_lin = np.repeat(stem_b, 16), np.repeat(np.concatenate([near_b, far_b]), 16)
    # box blur 4×4 ('same': rows i-1..i+2) then the 4×4 stride-4 fold = one 7×7 map from offset -1
    fold_k, fold_b = W["fold"]
    comp = np.zeros((7, 7, *fold_k.shape[2:]), np.float32)
    for uy in range(4):
        for ux in range(4):
            comp[uy:uy + 4, ux:ux + 4] += fold_k / 16.0
    w_fold = _s2d_conv(comp, (-1, -1), cm, lambda c, p: c, 16 * (1 + S), fold_k.shape[-1],
                    phases=1)
    # mix and bias: 1×1 at 1/4 resolution, then the smooth ×4 upsampling as a depthwise conv
    smooth = _smooth_up_weights()
    mix_k, mix_b = W["mix"]
    bias_k, bias_b = W["bias"]
    blend = W["blend"][0][0, 0, :, 0]
    w_blend = np.zeros((1, 1, 16 * n, 16), np.float32)
    for c in range(n):
        for p in range(16):
            w_blend[0, 0, cm(c, p), p] = blend[c]
    up = PhaseConvTransposeOps(L["up"])

    class FoldedField(layers.Layer):
        def call(self, x: Any) -> Any:
            conv = lambda t, w, b=None: (tf.nn.conv2d(t, w, 1, "SAME") if b is None  # noqa: E731
                                         else tf.nn.conv2d(t, w, 1, "SAME") + b)
            X = tf.nn.space_to_depth(x, 4)
            stem = tf.nn.relu(conv(X, w_stem, b_stem))
            lin = conv(X, w_lin, b_lin)
            joined = tf.concat([X, stem], -1)
            e1 = tf.nn.relu(conv(joined, w_fold, fold_b))
            d1 = trunk_ops(e1)
            mix = conv(d1, mix_k, mix_b)
            mix = tf.nn.depthwise_conv2d(mix, np.tile(smooth, (1, 1, n, 1)), [1, 1, 1, 1], "SAME")
            bias = tf.nn.depthwise_conv2d(conv(d1, bias_k, bias_b), smooth, [1, 1, 1, 1], "SAME")
            logits = conv(mix * tf.concat([X, stem, lin], -1), w_blend) + bias
            return tf.nn.depth_to_space(tf.sigmoid(logits), 4)

    def trunk_ops(e1: Any) -> Any:
        act = tf.nn.relu
        conv = lambda t, name, s=1: act(tf.nn.conv2d(t, W[name][0], s, "SAME") + W[name][1])  # noqa: E731
        e1 = conv(e1, "enc1")
        e2 = conv(e1, "down", 2)
        i = 0
        while f"mid{i}" in W:
            e2 = conv(e2, f"mid{i}")
            i += 1
        return conv(tf.concat([up(e2), e1], -1), "dec1")

    inp = keras.Input((None, None, 1), name="coverage")
    return keras.Model(inp, FoldedField(name="folded_field")(inp))


class PhaseConvTransposeOps:
    """A 'same' transposed convolution as plain TF ops: a phase convolution + depth-to-space."""

    def __init__(self, src: Any) -> None:
        import keras

        weights = [np.asarray(w) for w in src.get_weights()]
        kernel = weights[0]
        k, self.stride = src.kernel_size[0], src.strides[0]
        # 'valid' with kernel == stride (a plain repeat) places outputs as 'same' does
        same = src.padding == "same" or k == self.stride
        if (src.kernel_size[0] != src.kernel_size[1] or src.strides[0] != src.strides[1]
                or not same or tuple(src.dilation_rate) != (1, 1)):
            raise ValueError(f"layer {src.name} is not a square 'same' transposed convolution")
        self.w, _ = _phase_kernel(kernel, self.stride, k)
        bias = weights[1] if src.use_bias else np.zeros(kernel.shape[2], np.float32)
        self.b = np.tile(bias.astype(np.float32), self.stride * self.stride)
        self.act = keras.activations.get(src.activation)

    def __call__(self, x: Any) -> Any:
        import tensorflow as tf

        return self.act(tf.nn.depth_to_space(tf.nn.conv2d(x, self.w, 1, "SAME") + self.b, self.stride))


def _dilated_dense(kernel: np.ndarray, rate: int) -> np.ndarray:
    """A dilated kernel as the plain kernel it equals (its taps `rate` apart, zeros between)."""
    kh, kw = kernel.shape[:2]
    out = np.zeros(((kh - 1) * rate + 1, (kw - 1) * rate + 1, *kernel.shape[2:]), kernel.dtype)
    out[::rate, ::rate] = kernel
    return out


def tflite_bytes(gen: Any, margin: int = 0) -> bytes:
    """The generator as a float32 LiteRT flatbuffer with a `[1, None, None, 1]` input.

    Goes through a SavedModel export: converting a bare concrete function instead silently
    dropped the weights once (a 17 KB file that computed NaN).
    """
    import tensorflow as tf

    graph = field_graph(gen) if gen.name == "linerelifer_field" else litert_graph(gen)
    with tempfile.TemporaryDirectory(prefix="linerelifer-export-") as tmp:
        graph.export(tmp, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32)])
        data = bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())
    check_against_keras(gen, data, margin)
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


def check_against_keras(gen: Any, data: bytes, border: int = 0) -> float:
    """Largest difference between the flatbuffer and Keras on a probe, `border` px in from its
    edges (tiling never uses the rest); ValueError past tolerance."""
    import keras

    rng = np.random.default_rng(0)
    n = max(EXPORT_CHECK_SIZE, 2 * border + 96)
    x = (rng.random((1, n, n + 24, 1)) * (rng.random((1, n, n + 24, 1)) > 0.8)).astype(np.float32)
    ref = keras.ops.convert_to_numpy(gen(x, training=False))
    b = border
    diff = float(np.abs(run_tflite(data, x) - ref)[:, b:n - b, b:n + 24 - b].max())
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"the LiteRT export differs from the Keras network by {diff:.2e}; it was not written")
    return diff
