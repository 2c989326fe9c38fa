"""Pixels <-> line coverage.

The network only ever sees line coverage (float32, 0 = paper, 1 = ink). This module
turns the two kinds of images users bring into coverage and back again, so that the
result is written in the convention it came in:

* a Freestyle pass: RGBA with transparency, line colour in RGB, coverage in alpha;
* a line drawing: lines on a plain background (dark on light or light on dark), gray,
  gray+alpha, RGB or opaque RGBA, 8/16-bit or float.

Alpha is straight (not premultiplied) throughout. Only numpy: this runs inside Blender.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PASS = "pass"
DRAWING = "drawing"

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
# Fewer transparent pixels than this and an RGBA image is an opaque drawing.
_TRANSPARENT_FRACTION = 0.01
# Below this contrast between paper and ink the image holds no lines.
_MIN_CONTRAST = 0.05


@dataclass
class LineImage:
    """An input image reduced to coverage, with what is needed to restore its convention."""

    coverage: np.ndarray
    mode: str
    dtype: np.dtype
    channels: int  # 0 for a 2-D array
    rgb: np.ndarray | None = None  # pass mode: the input colour (H, W, 3), float32
    alpha: np.ndarray | None = None  # drawing mode with an alpha channel: kept as is
    line_color: np.ndarray | None = None  # float32 (3,): typical ink colour
    paper_color: np.ndarray | None = None  # drawing mode: background colour


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Any supported dtype to float32 in [0, 1]; NaN and inf become 0 or 1."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(a.astype(np.float32) / float(info.max), 0.0, 1.0)
    if np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(f, 0.0, 1.0)
    raise ValueError(f"pixel type {a.dtype} is not supported; use 8/16-bit integers or floats")


def from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 [0, 1] back to the input's dtype, rounding integers."""
    dtype = np.dtype(dtype)
    v = np.clip(values, 0.0, 1.0)
    if dtype == np.uint8:
        return np.rint(v * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(v * 65535.0).astype(np.uint16)
    if dtype == bool:
        return v >= 0.5
    if np.issubdtype(dtype, np.integer):
        return np.rint(v * float(np.iinfo(dtype).max)).astype(dtype)
    return v.astype(dtype)


def _split(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(colour as H×W×3 float, alpha or None, channel count)."""
    if pixels.ndim == 2:
        f = to_float(pixels)
        return np.repeat(f[:, :, None], 3, axis=2), None, 0
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"image shape {pixels.shape} is not an image; expected H×W or H×W×1..4")
    f = to_float(pixels)
    c = f.shape[2]
    if c == 1:
        return np.repeat(f, 3, axis=2), None, 1
    if c == 2:
        return np.repeat(f[:, :, :1], 3, axis=2), f[:, :, 1], 2
    if c == 3:
        return f, None, 3
    return f[:, :, :3], f[:, :, 3], 4


def to_coverage(pixels: np.ndarray) -> LineImage:
    """Detect the convention of `pixels` and reduce it to line coverage."""
    pixels = np.asarray(pixels)
    if pixels.ndim < 2 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"image shape {pixels.shape} is empty")
    rgb, alpha, channels = _split(pixels)
    if alpha is not None and float(np.mean(alpha < 0.99)) >= _TRANSPARENT_FRACTION:
        inked = alpha > 0.5
        if inked.any():
            line_color = rgb[inked].mean(axis=0)
        else:
            line_color = np.zeros(3, np.float32)
        return LineImage(
            coverage=alpha.astype(np.float32), mode=PASS, dtype=pixels.dtype, channels=channels,
            rgb=rgb, line_color=line_color.astype(np.float32),
        )
    lum = rgb @ _LUMA
    paper = float(np.median(lum))
    # Ink lies on the far side of the paper: the darkest pixels on light paper, else the lightest.
    light_paper = paper >= 0.5
    # Ink: the extreme of the pixels that clearly differ from the paper (robust to JPEG noise).
    candidates = lum[np.abs(lum - paper) > 2 * _MIN_CONTRAST]
    ink = float(np.percentile(candidates, 2 if light_paper else 98)) if candidates.size else paper
    contrast = paper - ink if light_paper else ink - paper
    if contrast < _MIN_CONTRAST:
        coverage = np.zeros(lum.shape, np.float32)
        ink_color = np.full(3, 0.0 if light_paper else 1.0, np.float32)
    else:
        coverage = np.clip((lum - paper) / (ink - paper), 0.0, 1.0).astype(np.float32)
        strong = coverage > 0.9
        ink_color = rgb[strong].mean(axis=0) if strong.any() else np.full(3, ink, np.float32)
    paper_mask = coverage < 0.02
    paper_color = rgb[paper_mask].mean(axis=0) if paper_mask.any() else np.full(3, paper, np.float32)
    return LineImage(
        coverage=coverage, mode=DRAWING, dtype=pixels.dtype, channels=channels, alpha=alpha,
        line_color=np.asarray(ink_color, np.float32), paper_color=np.asarray(paper_color, np.float32),
        rgb=rgb,
    )


def blend(original: np.ndarray, refined: np.ndarray, strength: float) -> np.ndarray:
    """Mix original and refined coverage; strength 0 keeps the original, 1 the refined."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} is outside [0, 1]")
    if refined.shape != original.shape:
        raise ValueError(f"refined coverage {refined.shape} does not match the input {original.shape}")
    return np.clip(original + (refined.astype(np.float32) - original) * np.float32(strength), 0.0, 1.0)


def from_coverage(
    src: LineImage,
    coverage: np.ndarray,
    strength: float = 1.0,
    color: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Write refined coverage back in the input's convention, shape and dtype."""
    cov = blend(src.coverage, coverage, strength)
    h, w = cov.shape
    if src.mode == PASS:
        if color is not None:
            rgb = np.broadcast_to(np.asarray(color, np.float32), (h, w, 3)).copy()
        else:
            # Keep the input's own colour where it had lines; new ink takes the typical colour.
            rgb = np.where((src.coverage > 0.01)[:, :, None], src.rgb, src.line_color)
        out = np.concatenate([rgb, cov[:, :, None]], axis=2)
    else:
        ink = np.asarray(color, np.float32) if color is not None else src.line_color
        if color is None and src.channels in (0, 1, 2):
            ink = np.full(3, float(ink @ _LUMA), np.float32)
        # Untouched paper keeps its exact pixels; elsewhere mix paper and ink colours.
        mixed = src.paper_color * (1.0 - cov[:, :, None]) + ink * cov[:, :, None]
        exact = (np.abs(cov - src.coverage) < 1e-6)[:, :, None]
        rgb = np.where(exact, src.rgb, mixed) if src.rgb is not None else mixed
        out = rgb
        if src.alpha is not None:
            out = np.concatenate([rgb, src.alpha[:, :, None]], axis=2)
    out = _shape_like(out, src.channels)
    return from_float(out, src.dtype)


def _shape_like(rgb_or_rgba: np.ndarray, channels: int) -> np.ndarray:
    if channels == 0:
        return rgb_or_rgba[:, :, :3] @ _LUMA
    if channels == 1:
        return (rgb_or_rgba[:, :, :3] @ _LUMA)[:, :, None]
    if channels == 2:
        return np.stack([rgb_or_rgba[:, :, :3] @ _LUMA, rgb_or_rgba[:, :, 3]], axis=2)
    if channels == 3:
        return rgb_or_rgba[:, :, :3]
    return rgb_or_rgba


def over(top_rgba: np.ndarray, bottom_rgba: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' of straight-alpha float RGBA images (lines over a render)."""
    ta = top_rgba[..., 3:4]
    ba = bottom_rgba[..., 3:4]
    out_a = ta + ba * (1.0 - ta)
    num = top_rgba[..., :3] * ta + bottom_rgba[..., :3] * ba * (1.0 - ta)
    rgb = np.where(out_a > 1e-8, num / np.maximum(out_a, 1e-8), 0.0)
    return np.concatenate([rgb, out_a], axis=-1).astype(np.float32)
