"""Lines baked into a render, found as what Freestyle drew: pixels of a line set's colour in
strokes no wider than its lines.  Only those pixels may change.

Freestyle paints each stroke's core in the line style's colour; a shaded render rarely
holds that exact colour, and where it does over an area (a shadow as dark as black lines)
the area is wider than any line and is left out.  So, unlike guessing "paper" from
luminance statistics, every other pixel of the render is kept bit for bit.  Where the
lines cannot be told from the render beneath them, :class:`BakedLinesError` says so and
the Freestyle pass is the way (it keeps the lines apart from the render).  One case no
colour test can settle: a render pixel of exactly the line colour touching a stroke (a
pitch-black pixel beside a black outline) is taken for part of the stroke.

Colours are compared in an sRGB-like space (``linear_to_srgb`` of linear input), where a
tolerance means the same to the eye in dark and light renders.  Only numpy: this runs in
Blender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Freestyle's stroke cores hold the line colour to float precision; 8-bit files round it.
TOLERANCE = 0.006
# Below this (median distance from the line colour of the pixels around the lines) the
# lines are too close to the render beneath them to be told apart.
MIN_CONTRAST = 0.08
_MAX_FILL_STEPS = 12


class BakedLinesError(ValueError):
    """The baked lines cannot be found reliably (one sentence for the user)."""


@dataclass
class BakedLines:
    """Where the lines are and what lies beneath them, all (H, W[, 3]) in the input's space."""

    mask: np.ndarray  # bool: stroke cores, the only pixels that may change
    coverage: np.ndarray  # float32: line coverage for the network (cores and their edges)
    background: np.ndarray  # float32 RGB: the render estimated beneath the lines
    ink: np.ndarray  # float32 RGB: the line colour at each pixel (nearest line set colour)
    # The render beneath in scene-linear values, where it is brighter than 1.0 somewhere (the
    # display values above are clipped there); None otherwise.
    background_linear: np.ndarray | None = None


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    out = np.full_like(a, fill)
    h, w = a.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):  # r steps of 3x3: a (2r+1)^2 square
        grown = out.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    grown |= _shift(out, dy, dx, False)
        out = grown
    return out


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~mask, r)


def _fill(rgb: np.ndarray, known: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the known colours into the unknown pixels, a 3x3 mean per step."""
    value = np.where(known[..., None], rgb, 0.0).astype(np.float32)
    known = known.copy()
    for _ in range(steps):
        todo = ~known
        if not todo.any():
            break
        total = np.zeros_like(value)
        count = np.zeros(known.shape, np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    k = _shift(known, dy, dx, False)
                    total += np.where(k[..., None], _shift(value, dy, dx, 0.0), 0.0)
                    count += k
        new = todo & (count > 0)
        value[new] = total[new] / count[new][:, None]
        known |= new
    return value, known


def find_lines(rgb: np.ndarray, line_colors, thickness_px: float,
               tolerance: float = TOLERANCE, linear: np.ndarray | None = None) -> BakedLines:
    """Find the strokes of ``line_colors`` (RGB triples, same space as ``rgb``) in ``rgb``
    (H, W, 3 float), lines at most ``thickness_px`` wide. ``linear``: the same image in
    scene-linear values, unclipped, for a float render (see BakedLines.background_linear)."""
    rgb = np.nan_to_num(np.asarray(rgb, np.float32)[..., :3], nan=0.0, posinf=1.0, neginf=0.0)
    colors = np.asarray(line_colors, np.float32).reshape(-1, 3)
    if colors.size == 0:
        raise BakedLinesError("No Freestyle line set has a line style; add one or use the Freestyle pass")
    dist = np.stack([np.abs(rgb - c).max(axis=-1) for c in colors])  # (K, H, W)
    nearest = dist.argmin(axis=0)
    near = dist.min(axis=0) <= tolerance
    # Areas of the line colour wider than a line are the render's, not strokes.
    r = int(np.ceil(max(float(thickness_px), 1.0) / 2.0)) + 1
    areas = _dilate(_erode(near, r), r)
    mask = near & ~areas  # empty when the image holds no strokes: the caller decides
    ink = colors[nearest]
    # The render beneath: grown inwards from pixels clear of every stroke and its soft edge.
    clear = ~_dilate(near, 1)
    background, known = _fill(rgb, clear, max(_MAX_FILL_STEPS, 2 * r + 2))
    ring = _dilate(mask, 2) & clear
    if mask.any() and ring.any():
        contrast = float(np.median(np.abs(rgb[ring] - ink[ring]).max(axis=-1)))
        if contrast < MIN_CONTRAST:
            raise BakedLinesError(
                "The Freestyle lines have nearly the colour of the render around them, so they cannot be "
                "told apart from it; turn on the Freestyle pass to refine them")
    # Coverage: how far each pixel near a stroke lies from the render towards the line colour.
    span = ink - background
    denom = np.maximum((span * span).sum(axis=-1), 1e-6)
    cov = ((rgb - background) * span).sum(axis=-1) / denom
    region = _dilate(mask, 1) & known
    coverage = np.where(region, np.clip(cov, 0.0, 1.0), 0.0).astype(np.float32)
    coverage[mask] = np.maximum(coverage[mask], 1.0 - tolerance)
    mask &= known
    background_linear = None
    if linear is not None:
        linear = np.nan_to_num(np.asarray(linear, np.float32)[..., :3], nan=0.0, posinf=1.0, neginf=0.0)
        if float(linear.max(initial=0.0)) > 1.0:  # a sky or a lamp brighter than the display's white
            background_linear, _ = _fill(linear, clear, max(_MAX_FILL_STEPS, 2 * r + 2))
    return BakedLines(mask=mask, coverage=coverage, background=background, ink=ink,
                      background_linear=background_linear)


def apply(rgb: np.ndarray, lines: BakedLines, coverage: np.ndarray, color=None) -> np.ndarray:
    """``rgb`` with the stroke cores redrawn at ``coverage`` (0..1, already blended with the
    original); every pixel outside ``lines.mask`` is returned as it was, bit for bit."""
    out = np.array(rgb, copy=True)
    m = lines.mask
    ink = lines.ink[m] if color is None else np.broadcast_to(np.asarray(color, np.float32), (int(m.sum()), 3))
    bg = lines.background[m]
    c = np.clip(coverage[m], 0.0, 1.0)[:, None]
    out[..., :3][m] = (bg + c * (ink - bg)).astype(out.dtype)
    return out
