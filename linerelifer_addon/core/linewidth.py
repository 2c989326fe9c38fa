"""A frame's typical line width, and resampling so the network sees lines at its own width.

A style learns strokes of a few pixels; a Freestyle frame may hold 1 px or 12 px lines. The
network then guesses (thick lines come out grey, hollow or as two edges). Scaling the frame
so its lines arrive at the style's native width, refining, and scaling back avoids that
without retraining. Only numpy: this runs inside Blender too.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .styles import StyleError, meta_number, read_meta

DEFAULT_NATIVE_WIDTH = 2.5  # px; styles without `native_width` in their metadata
# Resample only when the width is this far off (ratio); near-native frames pass untouched, and
# up to TOLERANCE² the scale eases in (native_scale).
TOLERANCE = 1.3
# Only ever scale down: thin lines go to the network as they are (scaling a frame up would
# also multiply its memory), and at most by 8 per side.
MIN_SCALE, MAX_SCALE = 0.125, 1.0
_BLOCK_PIXELS = 1 << 20
_CELL = 32  # px: line_width's local cells
_SUB = 8  # px: ... placed on a grid this fine


def line_width(coverage: np.ndarray) -> float:
    """Typical stroke width in px (0 if no ink): twice the ink mass over the edge length.

    For a line of width w and length L the mass is w·L and the edges add up to 2·L, whatever
    its darkness; edges are the total variation (forward differences), which reads thin
    anti-aliased lines ~20 % wide and thick slanted ones ~4 % narrow. The ratio is taken per
    32 px cell and the median by edge length kept, so a filled region (much mass, little
    edge) does not make a frame of thin lines read as thick. That median is averaged over the
    16 placements of the cell grid in 8 px steps: with one grid, moving a frame by 1-7 px
    moved the reading by up to 8.7 % (an aliased 2 px render), and with it every width the nib
    and the resampling draw; averaged, by at most 1.5 % there. In blocks of rows: a 16k frame
    needs no full-size temporaries.
    """
    c = np.asarray(coverage)
    h, w = c.shape
    if min(h, w) < 3:
        return 0.0
    cw = -(-(w - 1) // _SUB)
    step = max(_CELL, (_BLOCK_PIXELS // max(w, 1)) // _CELL * _CELL)
    masses, edges = [], []
    for y0 in range(0, h - 1, step):
        blk = np.asarray(c[y0:min(h, y0 + step + 1)], np.float32)  # one row of overlap
        gx = np.diff(blk[:-1], axis=1)
        gy = np.diff(blk, axis=0)[:, :-1]
        np.multiply(gx, gx, out=gx)  # the gradient's length, in place (np.hypot is slower)
        gx += gy * gy
        np.sqrt(gx, out=gx)
        for values, out in ((blk[:-1, :-1], masses), (gx, edges)):
            r = values.shape[0]
            padded = np.zeros((-(-r // _SUB) * _SUB, cw * _SUB), np.float32)
            padded[:r, :w - 1] = values
            rows = padded.reshape(-1, _SUB, cw * _SUB).sum(axis=1)  # rows first: contiguous, 5x faster
            out.append(rows.reshape(-1, cw, _SUB).sum(axis=2, dtype=np.float64))
    n = _CELL // _SUB
    mass, edge = (_integral(np.concatenate(a), n) for a in (masses, edges))  # of the 8 px squares
    readings = []
    for oy in range(n):
        for ox in range(n):
            grid = [_cells(a, oy, ox, n) for a in (mass, edge)]
            # a filled region's inside has no edges (the table's rounding leaves ~1e-10 there);
            # the weights favour long edges
            keep = grid[1] > 1e-6
            if keep.any():
                readings.append(_weighted_median(2.0 * grid[0][keep] / grid[1][keep], grid[1][keep]))
    return float(np.mean(readings)) if readings else 0.0


def _integral(sub: np.ndarray, n: int) -> np.ndarray:
    """Summed-area table of `sub` with n squares of zeros all round (`_cells` reads it)."""
    p = np.zeros((sub.shape[0] + 2 * n + 1, sub.shape[1] + 2 * n + 1))
    p[n + 1:n + 1 + sub.shape[0], n + 1:n + 1 + sub.shape[1]] = sub
    return p.cumsum(axis=0).cumsum(axis=1)


def _cells(table: np.ndarray, oy: int, ox: int, n: int) -> np.ndarray:
    """Sums over cells of n x n squares, the grid starting (oy, ox) squares before the frame's
    first, from an `_integral` table."""
    ys, xs = np.arange(n - oy, table.shape[0], n), np.arange(n - ox, table.shape[1], n)
    c = table[np.ix_(ys, xs)]
    return (c[1:, 1:] - c[:-1, 1:] - c[1:, :-1] + c[:-1, :-1]).ravel()


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-correct resampling of a 2-D float image to `shape` (box filter down, linear up).

    Separable, each output row/column a weighted sum of a few input ones with weights that
    sum to one, so coverage per unit area is kept: a line neither thins nor greys from the
    resampling itself. Memory: the output plus one input-sized pass.
    """
    out = np.asarray(img, np.float32)
    for axis, n in enumerate(shape):
        out = _resample_axis(out, n, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def _resample_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = a.shape[axis]
    if n_out == n_in:
        return a
    idx, wts = _taps(n_in, n_out)
    moved = np.moveaxis(a, axis, 0)
    out = np.zeros((n_out,) + moved.shape[1:], np.float32)
    for k in range(idx.shape[1]):
        out += wts[:, k].reshape((-1,) + (1,) * (moved.ndim - 1)) * moved[idx[:, k]]
    return np.moveaxis(out, 0, axis)


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (n_out, taps): the input cells each output cell covers (down)
    or the two input pixel centres around it (up)."""
    scale = n_in / n_out
    if n_out < n_in:
        taps = int(np.ceil(scale)) + 1
        lo = np.arange(n_out) * scale
        first = np.floor(lo).astype(int)
        idx = np.minimum(first[:, None] + np.arange(taps)[None, :], n_in - 1)
        cells = first[:, None] + np.arange(taps)[None, :]
        overlap = np.clip(np.minimum(lo[:, None] + scale, cells + 1) - np.maximum(lo[:, None], cells), 0.0, None)
        overlap[cells >= n_in] = 0.0
        return idx, (overlap / scale).astype(np.float32)
    c = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    i0 = np.floor(c).astype(int)
    f = (c - i0).astype(np.float32)
    return np.stack([i0, np.minimum(i0 + 1, n_in - 1)], 1), np.stack([1.0 - f, f], 1)


def native_scale(width: float, native_width: float) -> float:
    """Factor to resample a frame by so that lines of `width` reach `native_width` (1 = leave it).

    Continuous in `width`: frames up to TOLERANCE x the native width pass untouched, from
    TOLERANCE² x on they are scaled to the native width, and in between the scale eases from 1
    to that. A jump there (to 1 / TOLERANCE at once) made frames whose width reads near the
    edge flip between two looks as a pan or an animation moved their lines: 2.6-3.6 % of the
    ink changed under 1-7 px shifts on 12 px architecture lines reading 13-17 px.
    """
    if not (np.isfinite(width) and width > 0 and native_width > 0):
        return 1.0
    r, a = float(np.log(width / native_width)), float(np.log(TOLERANCE))
    if r <= a:  # near the native width, or thinner (never scaled up)
        return 1.0
    log_scale = -r if r >= 2 * a else -2.0 * (r - a)  # the same at r = 2a: -2a
    return float(np.clip(np.exp(log_scale), MIN_SCALE, MAX_SCALE))


def refine_at_width(coverage: np.ndarray, native_width: float,
                    refine: Callable[[np.ndarray], np.ndarray], edge_gain: float = 1.0,
                    width: float | None = None) -> np.ndarray:
    """`refine(coverage)`, run on a copy resampled so its lines have `native_width`, and brought back.

    Frames whose lines are already near the native width go straight to `refine`. `edge_gain`
    (the style's, > 1) steepens the result's edges about half coverage (see sharpen), at least
    as much as scaling back up spread them. `width`: the frame's `line_width`, when the caller
    has read it already (thick-thin needs it too).
    """
    coverage = np.asarray(coverage, np.float32)
    scale = native_scale(line_width(coverage) if width is None else width, native_width)
    if scale == 1.0:
        out = refine(coverage)
        return sharpen(np.array(out, np.float32), edge_gain) if edge_gain > 1.0 else out
    h, w = coverage.shape
    small = (max(8, round(h * scale)), max(8, round(w * scale)))
    out = resize(np.asarray(refine(resize(coverage, small)), np.float32), (h, w))
    return sharpen(out, max(1.0 / scale, edge_gain))


def sharpen(coverage: np.ndarray, gain: float) -> np.ndarray:
    """Steepen edges that scaling up by `gain` spread over `gain` px back to about one pixel.

    A linear ramp about the half-coverage contour: line widths (where coverage crosses 0.5)
    stay where they are, soft edges turn crisp, and cores the network left at 0.8 turn solid
    (as a pen's would be); faint residue under ~0.3 vanishes. Works in place, by rows.
    """
    out = np.asarray(coverage, np.float32)
    g = np.float32(max(gain, 1.0))
    for y0 in range(0, out.shape[0], max(1, _BLOCK_PIXELS // max(out.shape[1], 1))):
        blk = out[y0:y0 + max(1, _BLOCK_PIXELS // max(out.shape[1], 1))]
        blk -= 0.5
        blk *= g
        blk += 0.5
        np.clip(blk, 0.0, 1.0, out=blk)
    return out


def width_settings(style_path: str | os.PathLike) -> tuple[float, float]:
    """The style's native line width (px, `native_width`) and edge gain (`edge_gain`, at least
    1), from one read of its metadata; each falls back to its default when absent or unusable.

    A missing or broken metadata file is the worker's to report (it names the file), so
    here it just means the defaults.
    """
    try:
        meta = read_meta(style_path)
    except StyleError:
        return DEFAULT_NATIVE_WIDTH, 1.0
    return (meta_number(meta, "native_width", DEFAULT_NATIVE_WIDTH, lambda v: v > 0),
            meta_number(meta, "edge_gain", 1.0, lambda v: v >= 1.0))
