"""Procedural line drawings so the model can train without any downloaded data.

Every drawing is a list of centerline strokes with per-point pressure. The same
strokes are rendered twice: once hand-inked (the target: pressure width, tapered
ends, slight texture) and once as uniform anti-aliased lines like a Freestyle
render (the model input). Everything is deterministic from a seed.

Coordinates are (x, y) floats where integer values are pixel centres.
Coverage images are float32 HxW in [0, 1], 1 = full ink.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from linerelifer_addon.core.nib import NIB_ANGLE  # the tied targets' nib and the drawn thick-thin share it

SS = 4  # supersampling factor; drawing happens at SS x resolution
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel coordinates
_FIX = 1 << _SHIFT
MAX_INK_WIDTH = 4.5  # target strokes never exceed this, keeps a 2 px tolerance fair
TIP_WIDTH = 0.3  # width of a stroke at pressure 0 (the very tip of a taper)


@dataclass
class Stroke:
    """One pen stroke: a centerline polyline and the pen pressure at each point."""

    points: np.ndarray  # (N, 2) float64, (x, y)
    pressure: np.ndarray  # (N,) float64 in [0, 1], tapers already applied
    closed: bool = False


# ---------------------------------------------------------------- geometry


def _arclength(points: np.ndarray) -> np.ndarray:
    seg = np.hypot(*np.diff(points, axis=0).T) if len(points) > 1 else np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample(points: np.ndarray, step: float, values: np.ndarray | None = None):
    """Resample a polyline at equal arc-length `step`; optional per-point values follow."""
    s = _arclength(points)
    total = s[-1]
    n = max(2, int(np.ceil(total / step)) + 1)
    t = np.linspace(0.0, total, n)
    if total <= 0:
        pts = np.repeat(points[:1], n, axis=0)
        vals = None if values is None else np.repeat(values[:1], n)
        return pts, vals
    # drop zero-length segments so np.interp gets increasing x
    keep = np.concatenate([[True], np.diff(s) > 1e-9])
    s, points = s[keep], points[keep]
    pts = np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)
    vals = None if values is None else np.interp(t, s, values[keep])
    return pts, vals


def catmull_rom(ctrl: np.ndarray, per_seg: int = 24, closed: bool = False) -> np.ndarray:
    """Smooth spline through the control points."""
    p = np.asarray(ctrl, dtype=np.float64)
    if closed:
        p = np.concatenate([p[-1:], p, p[:2]])
    else:
        p = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    t = np.linspace(0.0, 1.0, per_seg, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[len(p) - 2][None])
    return np.concatenate(out)


def _chaikin(points: np.ndarray, iterations: int, closed: bool) -> np.ndarray:
    """Corner cutting: turns a polygon into a rounded polygon."""
    p = points
    for _ in range(iterations):
        q = p if not closed else np.concatenate([p, p[:1]])
        a, b = q[:-1], q[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        p = cut if closed else np.concatenate([points[:1], cut, points[-1:]])
    return p


def smooth_noise(rng: np.random.Generator, n: int, corr: float) -> np.ndarray:
    """Smooth 1-D noise in [0, 1] of length n with correlation length ~corr samples."""
    knots = max(2, int(np.ceil(n / max(corr, 1.0))) + 2)
    k = rng.random(knots)
    x = np.linspace(0, knots - 1, n)
    i = np.clip(x.astype(int), 0, knots - 2)
    f = x - i
    f = f * f * (3 - 2 * f)  # smoothstep between knots
    return k[i] * (1 - f) + k[i + 1] * f


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


# ---------------------------------------------------------------- pressure


def _pressure(rng: np.random.Generator, pts: np.ndarray, level: tuple[float, float] = (0.35, 0.8),
              taper: bool | tuple[bool, bool] = True) -> np.ndarray:
    """Pen pressure along a stroke: smooth variation plus tapered ends."""
    s = _arclength(pts)
    total = max(s[-1], 1e-6)
    base = rng.uniform(*level)
    wobble = smooth_noise(rng, len(pts), corr=max(2.0, len(pts) * rng.uniform(0.15, 0.5)))
    p = np.clip(base + rng.uniform(0.1, 0.35) * (wobble - 0.5) * 2, 0.2, 1.0)
    t0, t1 = (taper, taper) if isinstance(taper, bool) else taper
    for on, dist in ((t0, s), (t1, total - s)):
        if not on:
            continue
        length = min(rng.uniform(4.0, 16.0), total * 0.45)
        ramp = np.clip(dist / max(length, 1e-6), 0.0, 1.0)
        p = p * np.sin(ramp * np.pi / 2) ** 0.8
    return p


def pen_stroke(rng: np.random.Generator, pts, level: tuple[float, float] = (0.35, 0.8),
               taper: bool | tuple[bool, bool] = True, closed: bool = False) -> Stroke:
    """A stroke along `pts` with generated pen pressure (varying, tapered at the ends)."""
    pts, _ = resample(np.asarray(pts, dtype=np.float64), 1.0)
    return Stroke(pts, _pressure(rng, pts, level, taper), closed)


# ---------------------------------------------------------------- stroke kinds


def _rand_point(rng, h, w, margin=0.05):
    return np.array([rng.uniform(-margin, 1 + margin) * w, rng.uniform(-margin, 1 + margin) * h])


def _curve(rng, h, w, scale):
    n = int(rng.integers(3, 7))
    p = _rand_point(rng, h, w)
    ang = rng.uniform(0, 2 * np.pi)
    ctrl = [p]
    for _ in range(n - 1):
        ang += rng.normal(0, 0.7)
        p = p + rng.uniform(12, 45) * scale * np.array([np.cos(ang), np.sin(ang)])
        ctrl.append(p)
    taper = (bool(rng.random() < 0.85), bool(rng.random() < 0.85))
    return [pen_stroke(rng, catmull_rom(np.array(ctrl)), taper=taper)]


def _ellipse(rng, h, w, scale):
    c = _rand_point(rng, h, w, margin=-0.05)
    a, b = rng.uniform(6, 45, 2) * scale
    start = rng.uniform(0, 2 * np.pi)
    sweep = 2 * np.pi + rng.uniform(0.0, 0.5)  # hand-drawn loops overlap a little
    t = np.linspace(start, start + sweep, 200)
    pts = np.stack([a * np.cos(t), b * np.sin(t)], axis=1) @ _rot(rng.uniform(0, np.pi)).T + c
    return [pen_stroke(rng, pts, taper=True)]


def _rounded_polygon(rng, h, w, scale):
    c = _rand_point(rng, h, w, margin=-0.05)
    n = int(rng.integers(3, 7))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(10, 40, n) * scale
    poly = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1) + c
    pts = _chaikin(poly, int(rng.integers(2, 4)), closed=True)
    pts = np.concatenate([pts, pts[:3]])  # slight overlap where the pen closes the shape
    return [pen_stroke(rng, pts, taper=True)]


def _corners(rng, h, w, scale):
    n = int(rng.integers(3, 6))
    p = _rand_point(rng, h, w)
    ang = rng.uniform(0, 2 * np.pi)
    pts = [p]
    for _ in range(n - 1):
        p = p + rng.uniform(10, 40) * scale * np.array([np.cos(ang), np.sin(ang)])
        pts.append(p)
        ang += rng.choice([-1, 1]) * rng.uniform(0.7, 2.4)  # sharp turn
    return [pen_stroke(rng, np.array(pts), taper=(bool(rng.random() < 0.7), True))]


def _crossing(rng, h, w, scale):
    c = _rand_point(rng, h, w, margin=-0.1)
    a0 = rng.uniform(0, np.pi)
    out = []
    for ang in (a0, a0 + rng.uniform(0.5, np.pi / 2) * rng.choice([-1, 1])):
        d = np.array([np.cos(ang), np.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        la, lb = rng.uniform(10, 40, 2) * scale
        bend = rng.normal(0, 3.0)
        ctrl = np.array([c - la * d, c + bend * nrm, c + lb * d])
        out.append(pen_stroke(rng, catmull_rom(ctrl)))
    return out


def _hatching(rng, h, w, scale):
    c = _rand_point(rng, h, w, margin=-0.1)
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    count = int(rng.integers(4, 11))
    spacing = rng.uniform(4.5, 8.0)
    length = rng.uniform(10, 32) * scale
    out = []
    for i in range(count):
        off = (i - count / 2) * spacing + rng.normal(0, 0.4)
        ln = length * rng.uniform(0.75, 1.15)
        shift = rng.normal(0, 1.5)
        base = c + off * nrm + shift * d
        bend = rng.normal(0, 1.0)
        ctrl = np.array([base - ln / 2 * d, base + bend * nrm, base + ln / 2 * d])
        out.append(pen_stroke(rng, catmull_rom(ctrl), level=(0.25, 0.55), taper=(bool(rng.random() < 0.5), True)))
    return out


def _details(rng, h, w, scale):
    out = []
    for _ in range(int(rng.integers(2, 7))):
        p = _rand_point(rng, h, w, margin=-0.02)
        if rng.random() < 0.4:  # a dot: a very short, firm stroke
            ang = rng.uniform(0, 2 * np.pi)
            ln = rng.uniform(0.5, 1.8)
            pts = np.array([p, p + ln * np.array([np.cos(ang), np.sin(ang)])])
            pts, _ = resample(pts, 0.5)
            out.append(Stroke(pts, np.full(len(pts), rng.uniform(0.3, 0.7))))
        else:  # a short tick
            ang = rng.uniform(0, 2 * np.pi)
            ln = rng.uniform(3, 8)
            pts = np.array([p, p + ln * np.array([np.cos(ang), np.sin(ang)])])
            out.append(pen_stroke(rng, pts, level=(0.3, 0.7), taper=(False, True)))
    return out


def _text(rng, h, w, scale):
    """A cursive-ish 'word': loops of varying height along a slightly tilted baseline."""
    start = _rand_point(rng, h, w, margin=-0.1)
    n = int(rng.integers(3, 9))
    xh = rng.uniform(5, 10)
    gw = xh * rng.uniform(0.6, 1.0)
    t = np.linspace(0, n, n * 40)
    heights = rng.uniform(0.7, 1.1, n)
    heights[rng.random(n) < 0.2] *= 2.0  # ascenders
    loop = rng.uniform(0.1, 0.35, n)
    gi = np.minimum(t.astype(int), n - 1)
    x = t * gw - loop[gi] * gw * np.sin(2 * np.pi * t)
    y = -xh * heights[gi] * 0.5 * (1 - np.cos(2 * np.pi * t))
    pts = np.stack([x, y], axis=1) @ _rot(rng.normal(0, 0.15)).T + start
    return [pen_stroke(rng, pts, level=(0.25, 0.5), taper=True)]


_KINDS = (
    (_curve, 3.0),
    (_ellipse, 1.0),
    (_rounded_polygon, 1.0),
    (_corners, 1.5),
    (_crossing, 1.0),
    (_hatching, 0.8),
    (_details, 1.0),
    (_text, 0.8),
)


def random_strokes(rng: np.random.Generator, h: int, w: int, density: float = 1.0) -> list[Stroke]:
    """A random drawing made of a mix of stroke kinds; density scales the stroke count."""
    weights = np.array([k[1] for k in _KINDS])
    weights = weights / weights.sum()
    area = h * w / 256.0**2
    count = max(1, int(round(rng.uniform(22, 40) * density * area)))
    scale = float(np.clip(np.sqrt(h * w) / 256.0, 0.5, 2.0)) ** 0.5
    strokes: list[Stroke] = []
    for i in rng.choice(len(_KINDS), size=count, p=weights):
        strokes.extend(_KINDS[i][0](rng, h, w, scale))
    return strokes


# ---------------------------------------------------------------- rendering


def _to_fixed(points: np.ndarray) -> np.ndarray:
    """Pixel-centre coords to cv2 fixed-point coords on the supersampled canvas."""
    return np.round((points * SS + (SS - 1) / 2.0) * _FIX).astype(np.int32)


def _downsample(canvas: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _stamp(canvas: np.ndarray, points: np.ndarray, widths: np.ndarray, colors: np.ndarray) -> None:
    """Draw a stroke as a dense chain of filled discs on the supersampled canvas.

    Discs (not cv2 thick lines, whose widths snap to odd pixel counts) give any
    width to 1/4 px; a radius of W*SS/2 - 0.5 makes the covered width W on average.
    """
    centres = _to_fixed(points)
    radii = np.round(np.maximum(widths * SS / 2.0 - 0.5, 0.0) * _FIX).astype(np.int32)
    for (cx, cy), r, col in zip(centres.tolist(), radii.tolist(), colors.tolist()):
        cv2.circle(canvas, (cx, cy), r, col, -1, cv2.LINE_8, _SHIFT)


def _dense(st: Stroke, step: float):
    """Points every `step` px along the stroke (closing the loop for closed strokes)."""
    pts, press = st.points, st.pressure
    if st.closed and len(pts) > 2:
        pts, press = np.concatenate([pts, pts[:1]]), np.concatenate([press, press[:1]])
    return resample(pts, step, press)


def render_uniform(strokes: list[Stroke], h: int, w: int, width: float) -> np.ndarray:
    """Uniform-width anti-aliased lines, like a Freestyle render: no taper, no texture."""
    canvas = np.zeros((h * SS, w * SS), np.uint8)
    for st in strokes:
        pts, _ = _dense(st, 0.5)
        _stamp(canvas, pts, np.full(len(pts), float(width)), np.full(len(pts), 255))
    return _downsample(canvas, h, w)


def render_inked(strokes: list[Stroke], h: int, w: int, rng: np.random.Generator,
                 max_width: float | None = None, cap: float = MAX_INK_WIDTH) -> np.ndarray:
    """Hand-inked look: width follows pressure, ends taper, slight texture along the stroke."""
    if max_width is None:
        max_width = rng.uniform(2.6, 4.3)
    max_width = min(max_width, cap)
    canvas = np.zeros((h * SS, w * SS), np.uint8)
    for st in strokes:
        pts, press = _dense(st, 0.35)
        width = np.minimum(TIP_WIDTH + (max_width - TIP_WIDTH) * press, cap)
        noise = smooth_noise(rng, len(pts), corr=rng.uniform(8, 40))
        tex = 0.85 + 0.15 * noise
        _stamp(canvas, pts, width, np.round(255 * tex).astype(np.int32))
    return _downsample(canvas, h, w)


# ---------------------------------------------------------------- public entry points


@dataclass
class SynthSample:
    """A synthetic drawing with the strokes it was made of (evalset needs the centerlines)."""

    strokes: list[Stroke]
    input: np.ndarray
    target: np.ndarray
    width: float  # uniform input line width


NIB_RANGE = (0.65, 1.55)  # width factor across the stroke's direction, thinnest to thickest
TIED_WIDTHS = (1.0, 12.0)  # input line widths of tied samples, log-uniform: what Freestyle renders hold


def nib_factor(points: np.ndarray, nib: tuple[float, float] = NIB_RANGE) -> np.ndarray:
    """Width factor of a broad nib along a polyline (`nib`: thinnest, thickest): thickest where
    it runs at NIB_ANGLE + 90°.

    A function of the stroke's direction only, so the network can read it off the input's
    line wherever the line is; position along the stroke it could not see.
    """
    if len(points) < 2:
        return np.full(len(points), 1.0)
    d = np.gradient(points, axis=0)
    across = 0.5 - 0.5 * np.cos(2.0 * (np.arctan2(d[:, 1], d[:, 0]) - NIB_ANGLE))
    return nib[0] + (nib[1] - nib[0]) * across


def taper_length(width: float) -> float:
    """How far (px) a free end of a line `width` px wide tapers: a few widths, as a pen lifts."""
    return 2.0 * width + 6.0


def render_tied(strokes: list[Stroke], h: int, w: int, width: float,
                nib: tuple[float, float] = NIB_RANGE) -> np.ndarray:
    """Inked target tied to the uniform input of `width` px: the same centerlines, width ×
    nib factor (never thinner than 1 px, so 1 px lines keep their darkness), free ends tapered
    over taper_length, solid ink. Everything here follows from what the input shows, so each
    input has one right answer and the network need not average (grey, hollow lines)."""
    canvas = np.zeros((h * SS, w * SS), np.uint8)
    ramp_len = taper_length(width)
    for st in strokes:
        pts, _ = _dense(st, 0.35)
        wid = np.maximum(width * nib_factor(pts, nib), 1.0)
        total = _arclength(pts)
        length = total[-1]
        if not st.closed and length > 3.0 * width:  # dots and ticks keep their round ends
            ramp = min(ramp_len, 0.45 * length)
            for dist in (total, length - total):
                wid = wid * np.sin(np.clip(dist / ramp, 0.0, 1.0) * np.pi / 2) ** 0.8
        _stamp(canvas, pts, np.maximum(wid, TIP_WIDTH), np.full(len(pts), 255))
    return _downsample(canvas, h, w)


def synth_sample(seed: int, size: int = 256, density: float = 1.0, tied: bool = False,
                 nib: tuple[float, float] = NIB_RANGE) -> SynthSample:
    """Deterministic drawing for `seed`, rendered both uniform (input) and inked (target).

    tied: the target is tied to the input (render_tied) and input lines are 1-12 px wide, the
    drawing's geometry scaled with them; otherwise (free) lines are 1-3 px and the inked width is
    drawn apart from the input's. nib: the tied targets' width factors (thinnest, thickest).
    """
    rng = np.random.default_rng(seed)
    if not tied:
        strokes = random_strokes(rng, size, size, density)
        width = float(rng.uniform(1.0, 3.0))
        target = render_inked(strokes, size, size, rng)
        return SynthSample(strokes, render_uniform(strokes, size, size, width), target, width)
    width = float(np.exp(rng.uniform(*np.log(TIED_WIDTHS))))
    zoom = max(1.0, width / 2.5)  # thick lines: the same kind of drawing, seen closer
    small = max(16, int(round(size / zoom)))
    strokes = [Stroke(st.points * (size / small), st.pressure, st.closed)
               for st in random_strokes(rng, small, small, density)]
    return SynthSample(strokes, render_uniform(strokes, size, size, width), render_tied(strokes, size, size, width, nib),
                       width)


def synth_pair(seed: int, size: int = 256, density: float = 1.0, tied: bool = False,
               nib: tuple[float, float] = NIB_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) coverage images, float32 size x size, deterministic from seed."""
    s = synth_sample(seed, size, density, tied, nib)
    return s.input, s.target
