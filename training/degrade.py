"""Damage applied to the model input only, so the model learns to close gaps and clean up.

Real Freestyle renders have broken lines, stray specks and small spurs; the target
stays clean, so the model is trained to repair them. Points are (y, x).
"""

from __future__ import annotations

import cv2
import numpy as np

from training.metrics import INK, gap_closed

_CORE = 0.5  # pixels this dark are safely on a line's core


def _window(shape, cy: float, cx: float, r: float):
    h, w = shape
    y0, y1 = max(0, int(np.floor(cy - r))), min(h, int(np.ceil(cy + r)) + 1)
    x0, x1 = max(0, int(np.floor(cx - r))), min(w, int(np.ceil(cx + r)) + 1)
    return y0, y1, x0, x1


def stamp_segment(img: np.ndarray, p0, p1, width: float, value: float = 1.0) -> None:
    """Anti-aliased capsule from p0 to p1 (y, x), combined into img in place with max."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    r = width / 2.0 + 1.0
    h, w = img.shape
    y0, y1 = max(0, int(np.floor(min(p0[0], p1[0]) - r))), min(h, int(np.ceil(max(p0[0], p1[0]) + r)) + 1)
    x0, x1 = max(0, int(np.floor(min(p0[1], p1[1]) - r))), min(w, int(np.ceil(max(p0[1], p1[1]) + r)) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = p1 - p0
    dd = float(d @ d)
    t = np.zeros_like(yy) if dd < 1e-12 else np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / dd, 0, 1)
    dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
    cov = np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0) * value
    np.maximum(img[y0:y1, x0:x1], cov.astype(img.dtype), out=img[y0:y1, x0:x1])


def line_frame(img: np.ndarray, cy: int, cx: int, r: float = 4.0):
    """Local line centre, unit direction (dy, dx) and width at an ink pixel, or None.

    None when the ink around the pixel is not a single straight-ish line
    (crossings, corners, blobs), where a clean cut is not well defined.
    """
    y0, y1, x0, x1 = _window(img.shape, cy, cx, r)
    win = img[y0:y1, x0:x1].astype(np.float64)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    wgt = win * ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    total = wgt.sum()
    if total < 1.0:
        return None
    my, mx = (wgt * yy).sum() / total, (wgt * xx).sum() / total
    dy, dx = yy - my, xx - mx
    cov = np.array([[(wgt * dy * dy).sum(), (wgt * dy * dx).sum()],
                    [(wgt * dy * dx).sum(), (wgt * dx * dx).sum()]]) / total
    vals, vecs = np.linalg.eigh(cov)
    if vals[0] <= 1e-9 or vals[1] / vals[0] < 4.0:
        return None
    direction = vecs[:, 1]
    width = total / (2.0 * r)  # ink mass over the chord length through the disc
    return np.array([my, mx]), direction, float(width)


def cut_gap(img: np.ndarray, center, direction, length: float, half_width: float):
    """Erase `length` px of a line across its full width; widen until it truly disconnects.

    Returns (new_img, a, b, ok): a and b are integer (y, x) points on the line just
    outside the cut; ok says the two sides are disconnected at the ink threshold.
    """
    c = np.asarray(center, float)
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    n = np.array([-d[1], d[0]])
    extra = 0.0
    for _ in range(5):
        half = length / 2.0 + extra
        reach = half + 2.5
        a = tuple(int(v) for v in np.round(c - d * reach))
        b = tuple(int(v) for v in np.round(c + d * reach))
        r = max(half, half_width) + 2.0
        y0, y1, x0, x1 = _window(img.shape, c[0], c[1], r)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        t = (yy - c[0]) * d[0] + (xx - c[1]) * d[1]
        s = (yy - c[0]) * n[0] + (xx - c[1]) * n[1]
        mask = np.clip(half + 0.5 - np.abs(t), 0, 1) * np.clip(half_width + 0.5 - np.abs(s), 0, 1)
        out = img.copy()
        out[y0:y1, x0:x1] *= (1.0 - mask).astype(img.dtype)
        if not gap_closed(out, a, b):
            return out, a, b, True
        extra += 0.25
    return out, a, b, False


def probe_sides_ok(img: np.ndarray, a, b) -> bool:
    """Both probe points sit on ink and are connected before the cut."""
    h, w = img.shape
    for y, x in (a, b):
        if not (0 <= y < h and 0 <= x < w) or img[y, x] <= INK:
            return False
    return gap_closed(img, a, b)


def add_gap(img: np.ndarray, rng: np.random.Generator, length: float, tries: int = 20):
    """Cut one gap at a random straight-ish line spot; returns (img, a, b) or (img, None, None)."""
    ys, xs = np.nonzero(img > _CORE)
    if len(ys) == 0:
        return img, None, None
    for _ in range(tries):
        i = int(rng.integers(len(ys)))
        frame = line_frame(img, int(ys[i]), int(xs[i]))
        if frame is None:
            continue
        c, d, width = frame
        reach = length / 2.0 + 2.5
        a = tuple(int(v) for v in np.round(c - d * reach))
        b = tuple(int(v) for v in np.round(c + d * reach))
        if not probe_sides_ok(img, a, b):
            continue
        out, a, b, ok = cut_gap(img, c, d, length, min(width / 2.0 + 1.0, 3.0))
        if ok:
            return out, a, b
    return img, None, None


def add_speck(img: np.ndarray, rng: np.random.Generator, clearance: float = 4.0, dist=None):
    """Isolated 1-3 px blob at least `clearance` px from any line; returns (img, (y, x)) or None."""
    if dist is None:
        dist = cv2.distanceTransform((img <= 0.05).astype(np.uint8), cv2.DIST_L2, 3)
    cand = np.flatnonzero(dist > clearance + 2.0)
    if len(cand) == 0:
        return img, None
    y, x = np.unravel_index(int(cand[rng.integers(len(cand))]), img.shape)
    size = rng.uniform(1.0, 3.0)
    c = np.array([y, x], float) + rng.uniform(-0.3, 0.3, 2)
    ang = rng.uniform(0, np.pi)
    off = np.array([np.sin(ang), np.cos(ang)]) * rng.uniform(0, 0.5)
    stamp_segment(img, c - off, c + off, max(size - 2 * np.abs(off).max(), 1.0), rng.uniform(0.7, 1.0))
    return img, (int(y), int(x))


def add_spur(img: np.ndarray, rng: np.random.Generator, tries: int = 10) -> np.ndarray:
    """Short 2-5 px line sticking out sideways from a stroke."""
    ys, xs = np.nonzero(img > _CORE)
    if len(ys) == 0:
        return img
    for _ in range(tries):
        i = int(rng.integers(len(ys)))
        frame = line_frame(img, int(ys[i]), int(xs[i]))
        if frame is None:
            continue
        c, d, width = frame
        n = np.array([-d[1], d[0]]) * rng.choice([-1.0, 1.0])
        ang = rng.uniform(-0.9, 0.9)
        u = n * np.cos(ang) + d * np.sin(ang)
        tip = c + u * (width / 2.0 + rng.uniform(2.0, 5.0))
        stamp_segment(img, c, tip, float(np.clip(width * rng.uniform(0.5, 1.0), 0.8, 2.5)), 1.0)
        return img
    return img


def jitter_warp(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Smooth random sub-pixel displacement of at most `amount` px."""
    if amount <= 0:
        return img
    h, w = img.shape
    k = int(rng.integers(3, 6))
    disp = []
    for _ in range(2):
        coarse = rng.uniform(-1, 1, (k, k)).astype(np.float32)
        disp.append(np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1))
    scale = amount * rng.uniform(0.5, 1.0)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, gx + scale * disp[0], gy + scale * disp[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def degrade(input: np.ndarray, rng: np.random.Generator, gaps=(0, 6), gap_px=(1, 4), specks=(0, 6),
            spurs=(0, 4), jitter: float = 0.4, cut_out: np.ndarray | None = None,
            aliased: float = 0.0) -> np.ndarray:
    """Jitter, then cut gaps, add spurs and specks. Count ranges are inclusive.

    `cut_out`, if given, receives the ink the gaps removed (the pixels a style must fill).
    With probability `aliased` the result is point-sampled: a pixel is ink where its centre
    lies inside a stroke (coverage >= 0.5 for these strokes), as a 1-sample render draws it."""
    img = jitter_warp(np.asarray(input, np.float32), rng, jitter).astype(np.float32)
    img = np.ascontiguousarray(img)
    before = img.copy() if cut_out is not None else None
    for _ in range(int(rng.integers(gaps[0], gaps[1] + 1))):
        img, _, _ = add_gap(img, rng, rng.uniform(*gap_px))
    if cut_out is not None:
        np.clip(before - img, 0.0, 1.0, out=cut_out)
    for _ in range(int(rng.integers(spurs[0], spurs[1] + 1))):
        img = add_spur(img, rng)
    n_specks = int(rng.integers(specks[0], specks[1] + 1))
    if n_specks:
        dist = cv2.distanceTransform((img <= 0.05).astype(np.uint8), cv2.DIST_L2, 3)
        for _ in range(n_specks):
            img, p = add_speck(img, rng, dist=dist)
            if p is not None:  # keep later specks apart from this one
                y0, y1, x0, x1 = _window(img.shape, p[0], p[1], 6)
                dist[y0:y1, x0:x1] = 0
    if aliased > 0 and rng.random() < aliased:  # no draw when off: earlier runs stay reproducible
        return (img >= 0.5).astype(np.float32)
    return np.clip(img, 0.0, 1.0)
