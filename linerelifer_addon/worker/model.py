"""The networks: the compact line generator, the seed's generator, and the discriminator.

Everything is built from stock Keras layers so style files load in safe mode with no
custom code. The generator folds 4×4 pixels into channels with a stride-4 convolution and
works at 1/4 and 1/8 resolution, because small channel counts at full resolution are
memory-bound on CPUs; a stride-4 transposed convolution unfolds the result and a 1×1 path
from the input carries the original lines through. A thin full-resolution layer before the
fold gives the network sharp per-pixel features (how dark, how wide), which it needs to tell a
drawn dot from a speck.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import keras
from keras import layers

ARCHS = ("field", "lite", "seed")
LITE_WIDTHS = (48, 96)  # channels at 1/4 and 1/8 resolution
LITE_STEM = 8  # full-resolution 3×3 features before the fold
FIELD_WIDTHS = (32, 64)  # the field generator's trunk: its full-resolution part costs the rest of 0.5 s
FIELD_STEM = 4
FIELD_BASIS = 12  # learned full-resolution filters of the input (half 5×5, half 5×5 dilated)
# widths, stem, basis (None: the architecture has no such part)
ARCH_DEFAULTS = {"lite": (LITE_WIDTHS, LITE_STEM, None), "field": (FIELD_WIDTHS, FIELD_STEM, FIELD_BASIS)}


def _conv(x: Any, ch: int, k: int = 3, stride: int = 1, act: str | None = "relu", name: str | None = None) -> Any:
    return layers.Conv2D(ch, k, strides=stride, padding="same", activation=act, name=name)(x)


def _trunk(x: Any, widths: tuple[int, int], depth: int) -> Any:
    """Fold 4×4 pixels into channels, a small U-Net at 1/4 and 1/8 resolution; 1/4-res features out."""
    c1, c2 = widths
    e1 = layers.Conv2D(c1, 4, strides=4, padding="valid", activation="relu", name="fold")(x)
    e1 = _conv(e1, c1, name="enc1")
    e2 = _conv(e1, c2, stride=2, name="down")
    for i in range(depth):
        e2 = _conv(e2, c2, name=f"mid{i}")
    u1 = layers.Conv2DTranspose(c1, 2, strides=2, padding="same", activation="relu", name="up")(e2)
    d1 = layers.Concatenate(name="skip")([u1, e1])
    return _conv(d1, c1, name="dec1")


def build_lite(widths: tuple[int, int] = LITE_WIDTHS, depth: int = 3, stem: int = LITE_STEM) -> keras.Model:
    """U-Net-like generator at 1/4 and 1/8 resolution; total stride 8.

    `stem` > 0 adds that many full-resolution 3×3 features before the fold: the fold is linear,
    so without them a faint speck and a solid dot of the same size look alike to the network.
    """
    inp = keras.Input((None, None, 1), name="coverage")
    x = inp
    if stem:
        x = layers.Concatenate(name="stem_join")([inp, _conv(inp, stem, name="stem")])
    d1 = _trunk(x, widths, depth)
    logits = layers.Conv2DTranspose(1, 8, strides=4, padding="same", name="unfold")(d1)
    direct = layers.Conv2D(1, 1, name="direct")(inp)
    out = layers.Activation("sigmoid", name="refined")(layers.Add(name="merge")([logits, direct]))
    return keras.Model(inp, out, name="linerelifer_lite")


def build_field(widths: tuple[int, int] = FIELD_WIDTHS, depth: int = 3, stem: int = FIELD_STEM,
                basis: int = FIELD_BASIS) -> keras.Model:
    """Shift-stable generator: full-resolution filters of the input, mixed per pixel by weights
    that a stride-8 trunk predicts and linear upsampling spreads smoothly.

    A network that unfolds its result with a learned stride-4 transposed convolution draws
    each pixel from one of 16 phases, so moving the frame by a pixel changes the lines
    (animations shimmer). Here every sharp detail comes from full-resolution convolutions of
    the input, which move with it exactly; the trunk only decides, smoothly over ~4 px, how
    to weigh them (thicker here, gone there). A 4×4 box blur before the fold keeps the trunk's
    view from aliasing; training adds a shift-consistency loss for what is left of the trunk's
    phase dependence.
    """
    inp = keras.Input((None, None, 1), name="coverage")
    feats = _conv(inp, stem, name="stem")
    joined = layers.Concatenate(name="stem_join")([inp, feats])
    near = _conv(inp, basis - basis // 2, k=5, act=None, name="basis")
    # 5×5 taps 2 px apart reach ±4 px: across a 4 px gap from both ends, past a thick line's edge
    far = layers.Conv2D(basis // 2, 5, dilation_rate=2, padding="same", name="basis_wide")(inp)
    sharp = layers.Concatenate(name="sharp")([joined, near, far])
    x = layers.AveragePooling2D(4, strides=1, padding="same", name="antialias")(joined)
    d1 = _trunk(x, widths, depth)
    n = sharp.shape[-1]
    mix = _smooth_up(_conv(d1, n, k=1, act=None, name="mix"), "mix")
    bias = _smooth_up(_conv(d1, 1, k=1, act=None, name="bias"), "bias")
    mixed = layers.Conv2D(1, 1, use_bias=False, name="blend")(layers.Multiply(name="weigh")([mix, sharp]))
    out = layers.Activation("sigmoid", name="refined")(layers.Add(name="merge")([mixed, bias]))
    return keras.Model(inp, out, name="linerelifer_field")


def _smooth_up(x: Any, name: str) -> Any:
    """×4 upsampling that is linear interpolation: a fixed, untrainable repeat of each value
    over its 4×4 block, then a 4×4 box. Nothing training does can make it blocky, and both
    run as delegated LiteRT ops (UpSampling2D exports as slow dynamic reshapes)."""
    ch = x.shape[-1]
    repeat = layers.Conv2DTranspose(ch, 4, strides=4, padding="valid", use_bias=False, trainable=False,
                                    name=f"{name}_up")
    x = repeat(x)
    repeat.set_weights([np.broadcast_to(np.eye(ch, dtype=np.float32), (4, 4, ch, ch)).copy()])
    return layers.AveragePooling2D(4, strides=1, padding="same", name=f"{name}_smooth")(x)


def build_seed() -> keras.Model:
    """The seed project's generator: 64-channel conv and 4 residual blocks at full resolution."""
    inp = keras.Input((None, None, 1), name="coverage")
    x = _conv(inp, 64, name="head")
    for i in range(4):
        y = _conv(x, 64, name=f"res{i}a")
        y = _conv(y, 64, act=None, name=f"res{i}b")
        x = layers.Activation("relu")(layers.Add()([x, y]))
    out = _conv(x, 1, act="sigmoid", name="refined")
    return keras.Model(inp, out, name="linerelifer_seed")


def build_generator(arch: str = "field", widths: tuple[int, int] | None = None, stem: int | None = None,
                    basis: int | None = None) -> keras.Model:
    """The generator `arch` names; widths, stem and basis default to that architecture's own."""
    if arch == "seed":
        return build_seed()
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    w, st, bs = ARCH_DEFAULTS[arch]
    widths, stem, basis = tuple(widths or w), st if stem is None else stem, bs if basis is None else basis
    return build_lite(widths, stem=stem) if arch == "lite" else build_field(widths, stem=stem, basis=basis)


def build_discriminator() -> keras.Model:
    """Conditional patch discriminator: judges (input, lines) pairs in ~22 px patches."""
    inp = keras.Input((None, None, 2), name="pair")
    x = inp
    for i, ch in enumerate((32, 64, 96)):
        x = layers.Conv2D(ch, 4, strides=2, padding="same", name=f"d{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
    out = layers.Conv2D(1, 3, padding="same", name="patch")(x)
    return keras.Model(inp, out, name="linerelifer_disc")


def total_stride(arch: str) -> int:
    """Tile origins must sit on this grid for tiling to be exact."""
    return {"field": 8, "lite": 8, "seed": 1}[arch]


def receptive_radius(model: keras.Model, size: int = 256, trials: int = 3, seed: int = 0, period: int = 8) -> int:
    """How far (px) an input pixel can influence an output pixel, measured by gradients.

    Random weights and random inputs leave no ReLU path dead by accident; the union over a few
    trials gives each output pixel's footprint. Output pixels at different positions within
    the network's stride reach differently far (the stride-4 unfold: 40 px at one, 46 at
    another), so every position of one stride `period` is measured and the largest kept.
    """
    rng = np.random.default_rng(seed)
    c0 = size // 2
    worst = 0
    # Gradients of the output vanish where a trained style's sigmoid saturates on random input
    # (a style trained from drawings measured 0 px); the logits before it do not.
    if any(layer.name == "merge" for layer in model.layers):
        model = keras.Model(model.inputs, model.get_layer("merge").output)
    for c in range(c0, c0 + period):
        reach = np.zeros((size, size), bool)
        for _ in range(trials):
            x = rng.random((1, size, size, 1), dtype=np.float32)
            reach |= _centre_gradient(model, x, c) != 0
        ys, xs = np.nonzero(reach)
        if ys.size:
            worst = max(worst, int(max(c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)))
    return worst


def _centre_gradient(model: keras.Model, x: np.ndarray, c: int) -> np.ndarray:
    """d output[c, c] / d input, on whichever backend Keras runs."""
    if keras.backend.backend() == "jax":
        import jax

        g = jax.grad(lambda inp: model(inp, training=False)[0, c, c, 0])(x)
        return np.asarray(g)[0, :, :, 0]
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        target = model(xt, training=False)[0, c, c, 0]
    return tape.gradient(target, xt).numpy()[0, :, :, 0]


def macs_per_pixel(model: keras.Model, size: int = 256) -> float:
    """Multiply-adds per input pixel, counted from the layers' shapes."""
    total = 0.0
    shapes: dict[str, Any] = {}
    x = keras.ops.zeros((1, size, size, model.inputs[0].shape[-1]))
    probe = keras.Model(model.inputs, [l.output for l in model.layers if isinstance(l, (layers.Conv2D, layers.Conv2DTranspose))])
    outs = probe(x)
    convs = [l for l in model.layers if isinstance(l, (layers.Conv2D, layers.Conv2DTranspose))]
    for layer, out in zip(convs, outs):
        kh, kw, cin, cout = layer.kernel.shape
        if isinstance(layer, layers.Conv2DTranspose):
            cin, cout = cout, cin  # kernel is (kh, kw, out, in)
            sh, sw = layer.strides
            positions = (out.shape[1] * out.shape[2]) * (kh * kw) / (sh * sw)
            total += positions * cin * cout
        else:
            total += out.shape[1] * out.shape[2] * kh * kw * cin * cout
    del shapes
    return total / (size * size)
