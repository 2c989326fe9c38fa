"""No-reference metrics for refining a real render: the input's own lines are the reference.

A Freestyle render has no hand-inked target, so these judge the output against what the
input promises: the same lines (recall/precision), as dark and solid (darkness, hollow
cores), about as wide, with visible thick-thin and tapered free ends, and the same result
wherever the frame is shifted. Points are (y, x); ink = coverage > metrics.INK.
"""
from __future__ import annotations

from typing import Callable, Iterable

import cv2
import numpy as np

from linerelifer_addon.core.linewidth import line_width
from training.metrics import distance_to_ink, ink_mask
from training.prepare import _neighbour_count, _neighbours, centerline

HOLLOW_CORE = 0.5  # an output core lighter than this, where the input's core is ...
SOLID = 0.75  # ... at least this dark, is hollow (or grey)
END_START = 0.1  # an output line starts, walking in from a free end, where it is this wide (of its stroke)
END_STEP = 2  # ... and its tip_taper is read this many steps (1-1.4 px each) along the centerline further in
VALLEY = 0.25  # a pixel this much lighter than the 5×5 closing around it lies in a light valley


def light_valleys(cov: np.ndarray) -> np.ndarray:
    """Pixels lighter than their surroundings by VALLEY: the slit between a line's core and a
    faint copy of its edge, or between two close lines."""
    cov = np.asarray(cov, np.float32)
    return cv2.morphologyEx(cov, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) - cov > VALLEY


def skeleton(cov: np.ndarray) -> np.ndarray:
    """The input's centerline (bool), as training/prepare.py computes it."""
    return centerline(cov)


def _far_from(points: np.ndarray, dist: float) -> np.ndarray:
    """True where the nearest of `points` (bool) is farther than `dist` px (all True if none)."""
    if not points.any():
        return np.ones(points.shape, bool)
    return distance_to_ink(points) > dist


def _tangents(skel: np.ndarray, r: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangent (ty, tx) at every pixel from the principal axis of skeleton pixels within r."""
    h, w = skel.shape
    s = skel.astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    box = lambda a: cv2.boxFilter(a, -1, (2 * r + 1, 2 * r + 1), normalize=False, borderType=cv2.BORDER_CONSTANT)
    n = np.maximum(box(s), 1)
    my, mx = box(s * yy) / n, box(s * xx) / n
    cyy, cxx, cxy = box(s * yy * yy) / n - my * my, box(s * xx * xx) / n - mx * mx, box(s * xx * yy) / n - mx * my
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)  # angle of the principal axis from +x
    return np.sin(theta), np.cos(theta)


def cross_sections(cov: np.ndarray, pts: np.ndarray, tangent: tuple[np.ndarray, np.ndarray],
                   reach: float) -> np.ndarray:
    """Ink across the line at each point: coverage integrated along the normal over ±reach px.

    For a line of width w and darkness c this is c·w, sub-pixel, whatever its anti-aliasing.
    """
    if len(pts) == 0:
        return np.zeros(0, np.float32)
    ty, tx = tangent[0][pts[:, 0], pts[:, 1]], tangent[1][pts[:, 0], pts[:, 1]]
    step = 0.25
    t = np.arange(-reach, reach + step / 2, step)
    ys = (pts[:, 0, None] + tx[:, None] * t[None]).astype(np.float32)  # normal = (tx, -ty) in (y, x)
    xs = (pts[:, 1, None] - ty[:, None] * t[None]).astype(np.float32)
    samples = cv2.remap(np.asarray(cov, np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return samples.sum(axis=1) * step


def _walk_in(skel: np.ndarray, start: np.ndarray, n: int) -> np.ndarray:
    """Up to n centerline points (y, x) from a free end inwards, stopping at a junction.

    Thinning leaves staircase corners (two touching next pixels): the farther one is taken."""
    path = [(int(start[0]), int(start[1]))]
    seen = set(path)
    while len(path) < n:
        nxt = [q for q in _neighbours(skel, *path[-1]) if q not in seen]
        if not nxt:
            break
        if any(max(abs(a[0] - b[0]), abs(a[1] - b[1])) > 1 for a in nxt for b in nxt):
            break  # branches part: a junction
        seen.update(nxt)
        path.append(max(nxt, key=lambda q: (q[0] - path[0][0]) ** 2 + (q[1] - path[0][1]) ** 2))
    return np.array(path, np.int64)


def _ends_and_joins(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centerline pixels with one neighbour (ends) and with three or more (junctions)."""
    nb = _neighbour_count(skel) * skel
    return skel & (nb == 1), skel & (nb >= 3)


def _reach(w_in: float) -> float:
    """How far either side of a w_in-wide line's centerline its ink (and anti-aliasing) can lie."""
    return w_in / 2 + 3


def _inside(shape: tuple[int, int], w_in: float) -> np.ndarray:
    """True farther from the frame's edge than a cross-section of a w_in-wide line reaches."""
    h, w = shape
    inside = np.zeros(shape, bool)
    b = int(np.ceil(_reach(w_in))) + 1
    inside[b:h - b, b:w - b] = True
    return inside


def _loose_ends(skel: np.ndarray, w_in: float) -> np.ndarray:
    """Points (y, x) of centerline ends inside the frame and clear of junctions: the candidate
    free ends whose taper `real_metrics` measures."""
    ends, joins = _ends_and_joins(skel)
    return np.argwhere(ends & _inside(skel.shape, w_in) & _far_from(joins, _reach(w_in) + 4))


def free_ends(x: np.ndarray) -> np.ndarray:
    """Points (y, x) of the input's free ends: the candidates the taper metric starts from
    (before it drops ends where a line runs into a filled area), for pictures of them."""
    x = np.asarray(x, np.float32)
    skel = skeleton(x)
    return _loose_ends(skel, max(line_width(x), 1.0)) if skel.any() else np.zeros((0, 2), np.int64)


def real_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Metrics of output `y` against input `x` (both coverage, same shape); NaN where undefined."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    nan = float("nan")
    skel = skeleton(x)
    if not skel.any():
        return {}
    w_in = max(line_width(x), 1.0)
    ends, joins = _ends_and_joins(skel)
    reach = _reach(w_in)
    border = _inside(skel.shape, w_in)
    mid = skel & _far_from(ends, w_in + 2) & border  # the centerline away from free ends
    out_ink = ink_mask(y)
    r = {}
    r["recall"] = float(np.mean(distance_to_ink(out_ink)[skel] <= 2.0)) if out_ink.any() else 0.0
    r["precision"] = float(np.mean(distance_to_ink(ink_mask(x))[out_ink] <= 3.0)) if out_ink.any() else nan
    r["darkness_in"] = float(np.mean(x[mid])) if mid.any() else nan
    r["darkness_out"] = float(np.mean(y[mid])) if mid.any() else nan
    r["darkness_kept"] = r["darkness_out"] / r["darkness_in"] if mid.any() else nan
    # Hollow: the input's core is solid and the output's is not (two thin edges, or grey).
    # Lines under 3 px may be drawn between pixel rows: their core is the 3x3 neighbourhood's.
    core = cv2.dilate(y, np.ones((3, 3), np.uint8)) if w_in < 3 else y
    solid = mid & (x >= SOLID)
    r["hollow"] = float(np.mean(core[solid] < HOLLOW_CORE)) if solid.any() else nan
    # A ghost edge: the core drawn thinner, a faint copy of the input's edge left beside it.
    # Cores stay solid, so `hollow` misses it; slits the input has itself do not count.
    line = x > 0.05
    valleys_in = light_valleys(x)
    own = cv2.dilate(valleys_in.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    r["ghost_edge"] = float(np.mean((light_valleys(y) & ~own)[line]))
    # Filled slits: the paper between two close lines (a 5×5 closing bridges it) inked over,
    # which turns dense detail into black blots. Stroke gaps count too, but a render has few.
    slit = valleys_in & ~ink_mask(x)
    r["filled_slit"] = float(np.mean(y[slit] > 0.5)) if slit.any() else nan
    w_out = line_width(y)
    r["width_in"], r["width_ratio"] = w_in, w_out / w_in

    tangent = _tangents(skel)
    # Cross-sections on a slightly blurred copy (mass across the line is kept), so that thin
    # lines' pixel phase does not read as width variation.
    x_s, y_s = (cv2.GaussianBlur(a, (0, 0), 1.0) for a in (x, y))
    reach += 2
    # Mid-stroke: away from ends and junctions; clean: the input's cross-section is one line.
    body = mid & _far_from(joins, reach + 2)
    pts = np.argwhere(body)
    sx = cross_sections(x_s, pts, tangent, reach)
    sy = cross_sections(y_s, pts, tangent, reach)
    clean = np.abs(sx - np.median(sx)) < 0.3 * np.median(sx) if len(sx) else np.zeros(0, bool)
    pts, sx, sy = pts[clean], sx[clean], sy[clean]
    cv_in, cv_out = [], []
    if len(pts):
        labels = np.zeros(x.shape, np.int32)
        labels[pts[:, 0], pts[:, 1]] = 1
        _, comp = cv2.connectedComponents(labels.astype(np.uint8), connectivity=8)
        ids = comp[pts[:, 0], pts[:, 1]]
        for i in np.unique(ids):
            sel = ids == i
            if sel.sum() >= max(12, 3 * w_in):
                for s, acc in ((sx[sel], cv_in), (sy[sel], cv_out)):
                    if s.mean() > 0.1:
                        acc.append(float(s.std() / s.mean()))
    r["width_cv_in"] = float(np.median(cv_in)) if cv_in else nan
    r["width_cv"] = float(np.median(cv_out)) if cv_out else nan
    stroke_in = float(np.median(sx)) if len(sx) else nan
    stroke_out = float(np.median(sy)) if len(sy) else nan
    free = _loose_ends(skel, w_in)
    # Free ends of the input's lines, but not where a line runs into a filled block (wider
    # there than its stroke); ends the input tapers itself count.
    ex = cross_sections(x_s, free, tangent, reach)
    kept = ex < 1.3 * stroke_in
    free, ex = (free[kept], ex[kept]) if len(free) else (free, ex)
    ey = cross_sections(y_s, free, tangent, reach)  # the output at the same points
    # Taper: the output's width at the input's free end, as the issue defines it. A line that
    # just stops short also has no width there, so two more readings, walking in from the end:
    # end_cut, how far in the output's line starts (END_START of its stroke wide), and
    # tip_taper, its width END_STEP px further in (a line cut short is still wide there, a
    # taper over several px is not). Ends the output lost outright count only in end_cut.
    ends_in, ends_out, tips, cut = [], [], [], []
    if len(free) and np.isfinite(stroke_out) and stroke_out > 0:
        n = int(2 * w_in + 8)  # the targets taper over 2 x width + 6 px
        for end, width_in, width_out in zip(free, ex, ey):
            path = _walk_in(skel, end, n)
            if len(path) <= END_STEP:  # a piece of centerline too short to read an end on
                continue
            wy = cross_sections(y_s, path, tangent, reach) / stroke_out
            starts = np.flatnonzero(wy >= END_START)
            if not len(starts) or starts[0] + END_STEP >= len(path):
                cut.append(float(len(path)))
                continue
            d0 = int(starts[0])
            cut.append(float(d0))
            ends_in.append(float(width_in / stroke_in))
            ends_out.append(float(width_out / stroke_out))
            tips.append(float(wy[d0 + END_STEP]))
    r["taper_in"] = float(np.median(ends_in)) if ends_in else nan
    r["taper"] = float(np.median(ends_out)) if ends_out else nan
    r["tip_taper"] = float(np.median(tips)) if tips else nan
    r["end_cut"] = float(np.median(cut)) if cut else nan
    r["free_ends"] = float(len(free))
    return r


def shift_change(refine: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                 shifts: Iterable[int] = range(1, 8), base: np.ndarray | None = None,
                 window: tuple[int, int, int, int] | None = None) -> float:
    """Mean relative change |refine(shift(x)) - shift(refine(x))| / ink, over diagonal shifts.

    The input is shifted by (s, s) px; the border strip the shift uncovers is left out, and 8 px
    more all round. `window` (top, left, height, width) scores only that part of x: a pan moves
    a whole frame, so refine it whole and score a window inside it. A bare crop cuts its lines
    at the border and reads the frame's line width from the crop alone, which a 1-7 px shift
    moves (12 px architecture lines: 12.8-16.7 px read on one crop's shifted copies, 12.8 on the
    frame); refiners that look further than 8 px or read the frame's width then show changes
    a pan would not make.
    """
    x = np.asarray(x, np.float32)
    base = refine(x) if base is None else base
    top, left, height, width = window if window is not None else (0, 0, x.shape[0], x.shape[1])
    changes = []
    for s in shifts:
        shifted = np.zeros_like(x)
        shifted[s:, s:] = x[:-s, :-s]
        a = np.asarray(refine(shifted), np.float32)[s:, s:]  # both in x's own coordinates now
        b = base[:-s, :-s]
        m = 8 + s  # also leave out the far border, which the shift pushed out of frame
        y0, x0 = max(m, top), max(m, left)
        y1, x1 = min(b.shape[0] - m, top + height), min(b.shape[1] - m, left + width)
        a, b = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
        ink = float(np.sum(b))
        if ink > 0:
            changes.append(float(np.abs(a - b).sum()) / ink)
    return float(np.mean(changes)) if changes else float("nan")
