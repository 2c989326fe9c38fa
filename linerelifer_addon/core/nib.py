"""Thick-thin: a broad nib drawn over refined lines, each line wider or narrower by its direction.

The network draws little of its training targets' thick-thin (training/README.md, "What the
hand-drawn bars need"), so this draws it after the network, as a fixed step the user turns up
(`thick_thin`, 0 = off). The line's direction comes from a structure tensor (at full
resolution: read at half, it moved with the pixel grid, 1.6 % of 1 px lines' ink under 1-7 px
pans), the nib's width factor from that direction (thickest where a line runs at NIB_ANGLE + 90
degrees, as the training targets), and each edge moves by
(factor - 1) x the frame's line width / 2, read off a box-blurred copy as a signed distance.
Thickening fades where a wider box holds less ink than beside a lone line (free ends) or
more (between close lines), and leaves gaps between lines at least a quarter of the line
width; thinning stops at 1 px. Lines of whole pixels (an aliased render) under 2.5 px wide
get their thin sides and free ends by fading one pixel row instead. Given the render it
refined, the factor also follows the render's own thick and thin (Freestyle's thickness
modifiers), which the network evens out in part. Every step is
a sum over a window or a rule on a pixel's neighbours, so moving the frame moves the result
(but for the frame-wide readings: its line width, and the median of the render's widths).
Only numpy: runs in Blender too.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .styles import StyleError, meta_number, read_meta

NIB_ANGLE = math.pi / 6  # a broad nib held at 30°, so horizontals and verticals differ too; the tied training targets use it
# width factor across the line's direction, thinnest to thickest, at thick_thin 1; as drawn on
# straight lines about 0.6-1.5 (the direction's coherence, the box's reading of slanted edges)
NIB_RANGE = (0.55, 1.7)
MAX_LINE_WIDTH = 64.0  # px: wider "lines" are filled regions or shading (a soft gradient read 1159 px)
MAX_THICK_THIN = 1.0  # NIB_RANGE itself: a wider range greys and hollows lines (tests/test_nib.py)
HARD_EDGED = 0.1  # at most this share of a frame's ink edges part-covered: its lines are whole pixels
HARD_THIN_BELOW = 2.5  # px: such frames whose lines read narrower than this are thinned by fading a pixel row
# (wholly from HARD_THIN_BELOW - HARD_EASE, not at all from HARD_THIN_BELOW + HARD_EASE)
# On those, thickening fades out where a box holds under PEEL_FADE[1] of a lone line's ink (free
# ends) and is gone at PEEL_FADE[0]; ends are peeled from PEEL_END[1] of it, wholly from PEEL_END[0]
PEEL_FADE = (0.6, 0.9)
PEEL_END = (0.6, 0.95)
MAX_THREADS = 4
_BAND_PIXELS = 1 << 18  # frames are drawn in bands of rows of about this many pixels (cache, threads)
_EMPTY = 1e-3  # coverage up to this is paper: bands and columns farther than the nib's reach from more are left as they are
SLIT_KEEP = 0.25  # x the line width (at least 2 px): the narrowest gap between lines that thickening leaves
_READ_EXACT = (3.5, 4.5)  # px: from about 4 px a box reads a line's edges exactly enough to draw the moved line itself
# Every width-dependent choice eases in over a range of widths instead of switching at one: a
# shot whose frames' widths read about a switch would flicker between two looks (a 5 px frame
# read at 5.61-5.74 px under 1-7 px pans crossed a box radius switch at 5.71: 4.6 % of its ink
# changed, against 0.5 % elsewhere)
HARD_EASE = 0.2  # px either side of HARD_THIN_BELOW
# The render's own thick and thin (Freestyle's thickness modifiers), which the network draws
# only about two thirds of (a noise modifier's width variation 0.14 came out 0.10): the nib
# widens and narrows lines by the render's local width over the frame's as well, for
# deviations past OWN_NOISE either way (uniform lines read within 0.95-1.06 between quartiles,
# a noise modifier's 0.86-1.17), clipped to OWN_RANGE before OWN_NOISE is taken off (so at
# most 1.2x / 0.83x), and not at all for readings past OWN_OTHER[1] (from OWN_OTHER[0]):
# lines of another width, which the network keeps itself, or fills
OWN_NOISE = 1.08
OWN_RANGE = (0.77, 1.3)
OWN_OTHER = (1.6, 2.0)
# only cores whose box holds at least this share of the frame's median line length count: at
# free ends and gaps the end's edge reads as a narrower line (the held-out probes' 4 px gaps:
# 83 of 88 gaps closed with them, 85 without); nor cores whose box is over OWN_LONE ink (a
# lone line's holds under half: w / (2w + 2)): a fill's, or where lines meet or crowd. A large
# fill's cores once took the frame's median, and every line read too narrow to count; the
# lines that meet and crowd read wide (filled slits at 12 px 14.8 % with them, 13.8 % without)
OWN_THROUGH = 0.8
OWN_LONE = 0.7


def check_thick_thin(amount: float) -> None:
    """ValueError naming the allowed range when `amount` is outside 0..MAX_THICK_THIN."""
    if not 0.0 <= amount <= MAX_THICK_THIN:
        raise ValueError(f"thick-thin {amount} is outside 0..{MAX_THICK_THIN:g}; use 0 (no nib: the network's "
                         f"widths) up to 1 (a broad nib's thick and thin)")


def style_thick_thin(style_path: str | os.PathLike) -> float:
    """The thick-thin a style is drawn with unless the user sets one: `thick_thin` in its
    metadata (the default ink style's is 1), else 0, as for styles trained from drawings,
    whose look the nib is not part of. A missing or broken metadata file is the worker's to
    report, so here it just means 0."""
    try:
        meta = read_meta(style_path)
    except StyleError:
        return 0.0
    return meta_number(meta, "thick_thin", 0.0, lambda v: 0.0 <= v <= MAX_THICK_THIN)


def nib_range(amount: float) -> tuple[float, float]:
    """(thinnest, thickest) width factor for a thick-thin amount: NIB_RANGE scaled about 1."""
    return 1.0 + amount * (NIB_RANGE[0] - 1.0), 1.0 + amount * (NIB_RANGE[1] - 1.0)


def draw_nib(coverage: np.ndarray, line_width: float, amount: float, hard_edges: bool = False,
             source: np.ndarray | None = None) -> np.ndarray:
    """`coverage` (refined lines, 0..1) with thick-thin `amount` drawn for lines of
    `line_width` px (the frame's, as `linewidth.line_width` reads the input): a new float32
    array, or the input as float32 when there is nothing to do (no lines, or none under
    MAX_LINE_WIDTH: the work grows with the width). `source`: the input coverage it was
    refined from (same shape), whose own thick and thin is then drawn too (`_own_widths`),
    scaled by `amount`. `hard_edges`: the input's lines are whole
    pixels (`hard_edged`), so with `line_width` under HARD_THIN_BELOW px thin sides and free
    ends fade one pixel row (`_peel_rows`) instead of thinning about the middle: a 2 px line of
    whole pixels thinned to 1.1 px straddles its two rows at 0.55, grey (aliased 2 px renders'
    darkness 0.940 thinned so, 0.986 peeled)."""
    check_thick_thin(amount)
    coverage = np.asarray(coverage, np.float32)
    if source is not None:
        source = np.asarray(source, np.float32)
        if source.shape != coverage.shape:
            raise ValueError(f"source of shape {source.shape} is not the refined lines' {coverage.shape}")
    if (amount == 0.0 or not (np.isfinite(line_width) and 0 < line_width <= MAX_LINE_WIDTH)
            or min(coverage.shape) < 4):
        return coverage
    w = max(float(line_width), 1.0)
    lo, hi = nib_range(amount)
    reach, radii = _reach(w, lo, hi, source is not None)
    # how far the frame's lines are thinned by rows: 1 up to HARD_THIN_BELOW - HARD_EASE, 0 from + HARD_EASE
    whole = float(_ease(w, HARD_THIN_BELOW + HARD_EASE, HARD_THIN_BELOW - HARD_EASE)) if hard_edges else 0.0
    h, wd = coverage.shape
    band = max(32, 4 * reach, _BAND_PIXELS // max(wd, 1))  # a band reads `reach` rows more each side
    out = coverage.copy()
    reading = None
    if source is not None:  # the render's own widths, read in bands as the nib draws
        reading = _OwnReading(source, w, band)
        if not reading.found:
            reading = None

    def draw_band(y0: int) -> None:
        # rows y0..y0+band, read with `reach` rows and columns of context, and only between
        # the first and last column holding ink: farther than `reach` from ink nothing moves
        y1 = min(h, y0 + band)
        s0, s1 = max(0, y0 - reach), min(h, y1 + reach)
        inked = np.flatnonzero(coverage[s0:s1].max(axis=0) > _EMPTY)
        if inked.size == 0:
            return
        c0, c1 = max(0, int(inked[0]) - reach), min(wd, int(inked[-1]) + 1 + reach)
        src = coverage[s0:s1, c0:c1]
        own_part = None if reading is None else _own_widths(*reading.window(s0, s1, c0, c1), w, amount)
        part = _nib(src, w, lo, hi, radii, whole > 0, own_part)
        if 0 < whole < 1:
            part = np.float32(whole) * part + np.float32(1 - whole) * _nib(src, w, lo, hi, radii, False, own_part)
        out[y0:y1, c0:c1] = part[y0 - s0:y1 - s0]

    _in_bands(draw_band, h, band)
    return out


def _in_bands(work: Callable[[int], None], h: int, band: int) -> None:
    """work(y0) for the bands of rows from each y0; numpy lets go of the GIL in its loops, so
    bands run side by side."""
    starts = range(0, h, band)
    if len(starts) == 1:
        work(0)
    else:
        with ThreadPoolExecutor(min(len(starts), _threads())) as pool:
            list(pool.map(work, starts))


def hard_edged(coverage: np.ndarray) -> bool:
    """Whether a frame's lines are whole pixels (an aliased, 1-sample render): its ink meets
    the paper in steps from paper to ink between neighbouring pixels, hardly ever through a
    part-covered pixel (part-covered pixels over those plus the steps: 0 in the real aliased
    renders, 0.99 in anti-aliased ones). Solid fills' insides count for nothing."""
    c = np.asarray(coverage)
    paper, ink = c <= 0.1, c >= 0.9
    steps = (np.count_nonzero((paper[:, 1:] & ink[:, :-1]) | (ink[:, 1:] & paper[:, :-1]))
             + np.count_nonzero((paper[1:] & ink[:-1]) | (ink[1:] & paper[:-1])))
    part = np.count_nonzero((c > 0.1) & (c < 0.9))
    return steps > 0 and part <= HARD_EDGED * (part + steps)


def _threads() -> int:
    """Threads for the bands: the CPUs this process may use, at most MAX_THREADS (each holds a
    band's dozen temporaries)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


def _reach(w: float, lo: float, hi: float, own: bool = False) -> tuple[int, tuple[float, float, float]]:
    """(how far a pixel's result looks, px; the box radii, which grow with w without steps: edge
    move, direction, ink guard). `own`: the render's own widths are read too, and those at the
    edge boxes' pixels come from cores a line width off."""
    a = _edge_radius(max(hi - 1.0, 1.0 - lo, 0.0), w)
    r = max(2.0, 0.75 * w)
    rb = max(a + 1.0, w + 0.5)
    keep = int(math.ceil(max(hi - 1.0, 0.0) * w / 2 + max(2.0, SLIT_KEEP * w))) + 1  # _keep_slits' look
    reach = max(math.ceil(a) + math.ceil(r) + 2, math.ceil(rb), keep) + 4  # + `_peel_rows`' look
    if own:
        reach = max(reach, int(math.ceil(a + w)) + 2)
    return reach, (a, r, rb)


def _edge_radius(extent: float, w: float) -> float:
    """Radius of the box that reads an edge moved by up to extent x w / 2 px; wider, a thinned
    line's core reads as near an edge. A box of radius n + f (n whole) reads an edge up to
    n + 1/2 px off exactly and one farther off up to (1 - f) x that excess too near, so the
    outermost pixel a move reaches can get a little too much or too little ink."""
    return extent * w / 2 + 0.25


def box_mean(a: np.ndarray, r: float) -> np.ndarray:
    """Mean over a square of side 2r+1, edges clamped; a fractional r weighs the outermost ring
    of pixels by its fraction, so the mean changes smoothly with r (and an edge inside the box
    still reads at the same distance). Shifted sums: faster than cumulative sums for the
    few-pixel boxes here."""
    n = int(math.floor(r + 1e-6))
    f = np.float32(r - n) if r - n > 1e-6 else np.float32(0.0)
    if n <= 0 and not f:
        return np.array(a, np.float32)
    m = n + (1 if f else 0)
    h, w = a.shape
    p = np.pad(np.asarray(a, np.float32), m, mode="edge")
    rows = p[m - n:m - n + h].copy()
    for i in range(m - n + 1, m + n + 1):
        rows += p[i:i + h]
    if f:
        rows += f * (p[0:h] + p[2 * m:2 * m + h])
    out = rows[:, m - n:m - n + w].copy()
    for j in range(m - n + 1, m + n + 1):
        out += rows[:, j:j + w]
    if f:
        out += f * (rows[:, 0:w] + rows[:, 2 * m:2 * m + w])
    out *= np.float32(1.0 / (2 * n + 1 + 2 * float(f)) ** 2)
    return out


def _factor(y: np.ndarray, lo: float, hi: float, r: float
            ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per-pixel width factor from the structure tensor's direction (boxes of radius r), the
    range's middle where the direction is unclear (corners, junctions, ends); how much
    shorter a line in that direction runs through a square than an axis-parallel one
    (max |cos|, |sin|: 1 to 0.71 at 45 degrees); and the lines' normal as twice its angle
    (cos, sin, unnormalised: across a gap it points from one line to the other)."""
    gx, gy = _gradient(y)
    jxx, jxy, jyy = box_mean(gx * gx, r), box_mean(gx * gy, r), box_mean(gy * gy, r)
    tr = jxx + jyy + np.float32(1e-6)
    # 0.5 x coherence x cos(2 phi - 2 A), phi the gradient's direction: +0.5 for a line running
    # across the nib's angle (thickest), -0.5 along it
    c2, s2 = np.float32(math.cos(2 * NIB_ANGLE)), np.float32(2 * math.sin(2 * NIB_ANGLE))
    across = np.float32(0.5) * ((jxx - jyy) * c2 + jxy * s2) / tr
    cos2 = np.abs(jxx - jyy) / np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy + np.float32(1e-12))
    axis = np.sqrt((np.float32(1.0) + cos2) / 2)
    return np.float32((lo + hi) / 2) + np.float32(hi - lo) * across, axis, (jxx - jyy, 2 * jxy)


class _OwnReading:
    """The render's own local widths at its lines' cores (`_local_widths`), read in the
    nib's bands of rows and kept per band as 1-D arrays of the cores' values: full-size
    copies would cost 1 GB each on a 16k frame. `window` gives them back for a part of the
    frame, over the frame's median, with the cores that count. The medians are the frame's,
    like its line width: ink entering or leaving at the frame's edge moves every reading a
    little."""

    def __init__(self, source: np.ndarray, w: float, band: int) -> None:
        self.source, self.w, self.band = source, w, band
        h = source.shape[0]
        n = len(range(0, h, band))
        # per band, its cores in row-major order: where they lie (flat, in the band's rows),
        # their log width, then (once the medians are known) over the frame's median, NaN
        # where the core does not count
        self.cores: list[np.ndarray] = [np.zeros(0, np.int64)] * n
        self.widths: list[np.ndarray] = [np.zeros(0, np.float32)] * n
        lengths: list[np.ndarray] = [np.zeros(0, np.float32)] * n
        _in_bands(lambda y0: self._read(y0, lengths), h, band)
        self.found = False
        found = np.concatenate(lengths)
        found = found[found > 0]
        if found.size == 0:
            return
        # cores whose box holds about a whole line's length: a free end's (or a gap's) cap
        # reads as a narrower line
        floor = np.float32(OWN_THROUGH * np.median(found))
        counted = np.concatenate([v[k >= floor] for v, k in zip(self.widths, lengths)])
        if counted.size == 0:
            return
        median = np.float32(np.median(counted))
        self.widths = [np.where(k >= floor, v - median, np.float32(np.nan)) for v, k in zip(self.widths, lengths)]
        self.found = True

    def _read(self, y0: int, lengths: list[np.ndarray]) -> None:
        i, h, wd = y0 // self.band, *self.source.shape
        core = self.source[y0:y0 + self.band] > 0.5
        inked = np.flatnonzero(core.any(axis=0))
        if inked.size == 0:
            return
        context = int(math.ceil(_own_radius(self.w))) + 2  # `_local_widths`' look
        y1 = min(h, y0 + self.band)
        s0, s1 = max(0, y0 - context), min(h, y1 + context)
        c0, c1 = max(0, int(inked[0]) - context), min(wd, int(inked[-1]) + 1 + context)
        widths, box_lengths = _local_widths(self.source[s0:s1, c0:c1], self.w)
        at = core[:, c0:c1]  # every core of the band lies in c0:c1: the same row-major order
        self.cores[i] = np.flatnonzero(core)
        self.widths[i], lengths[i] = widths[y0 - s0:y1 - s0][at], box_lengths[y0 - s0:y1 - s0][at]

    def window(self, s0: int, s1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """(log widths over the frame's median, 0 elsewhere; the cores that count) for rows
        s0:s1, columns c0:c1."""
        local = np.full((s1 - s0, c1 - c0), np.nan, np.float32)
        wd = self.source.shape[1]
        for i in range(s0 // self.band, (s1 - 1) // self.band + 1):
            rows, cols = np.divmod(self.cores[i], wd)
            rows += i * self.band
            inside = (rows >= s0) & (rows < s1) & (cols >= c0) & (cols < c1)
            local[rows[inside] - s0, cols[inside] - c0] = self.widths[i][inside]
        counted = ~np.isnan(local)
        local[~counted] = 0.0
        return local, counted


def _own_radius(w: float) -> float:
    """Radius of the box `_local_widths` reads a line's local width in: it holds the whole
    cross-section of a w px line from any of its cores."""
    return max(2.0, w + 0.5)


def _gradient(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along x and y (over 2 px), 0 in the outermost columns and rows."""
    gx, gy = np.zeros_like(a), np.zeros_like(a)
    gx[:, 1:-1], gy[1:-1] = a[:, 2:] - a[:, :-2], a[2:] - a[:-2]
    return gx, gy


def _local_widths(source: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray]:
    """(log of the local width of the render's lines, per pixel: a box's ink over half its
    edge length (its gradient's magnitude summed), which junctions and close lines change
    little; the box's edge length over a lone line's crossing it, so about the length of
    line it holds over the box's side (thin lines' blurred edges read less, 1 px lines about
    0.3), or 0 where the box is over OWN_LONE ink). Beside a line the box misses its far edge:
    only its cores' readings are used."""
    gx, gy = _gradient(box_mean(source, 1.0))  # a whole-pixel line's staircase reads as a straight edge
    edge = np.sqrt(gx * gx + gy * gy)
    rb = _own_radius(w)
    # 2 x ink / (edge / 2): the central differences span 2 px
    edges, ink = box_mean(edge, rb), box_mean(source, rb)
    return (np.log(np.maximum(np.float32(4.0) * ink, np.float32(2e-3)) / (edges + np.float32(2e-3))),
            np.where(ink <= np.float32(OWN_LONE), edges * np.float32((2 * rb + 1) / 4), np.float32(0.0)))


def _own_widths(local: np.ndarray, core: np.ndarray, w: float, amount: float) -> np.ndarray:
    """Log of the nib's width factor from the render's own thick and thin: `local` (the
    cores' log widths over the frame's median) spread from the cores to their edges as the
    mean over a box of the line's width, then OWN_OTHER, OWN_RANGE and OWN_NOISE, x amount."""
    r = max(1.0, w)
    own = box_mean(np.where(core, local, np.float32(0.0)), r) / np.maximum(
        box_mean(core.astype(np.float32), r), np.float32(1e-3))
    own *= _ease(np.abs(own), math.log(OWN_OTHER[1]), math.log(OWN_OTHER[0]))
    np.clip(own, math.log(OWN_RANGE[0]), math.log(OWN_RANGE[1]), out=own)
    return np.sign(own) * np.maximum(np.abs(own) - np.float32(math.log(OWN_NOISE)), np.float32(0.0)) * np.float32(amount)


def _nib(y: np.ndarray, w: float, lo: float, hi: float, radii: tuple[float, float, float],
         whole: bool, own: np.ndarray | None = None) -> np.ndarray:
    a, r, rb = radii
    boxes = {a: box_mean(y, a)}  # the edge boxes' radii often equal a
    factor, axis, normal2 = _factor(boxes[a], lo, hi, r)
    if own is not None:
        factor *= np.exp(own)
    delta = (factor - np.float32(1.0)) * np.float32(w / 2)
    # about 1 beside a lone straight line at any angle (a slanted line runs longer through the box)
    ink = box_mean(y, rb) * np.float32((2 * rb + 1) / w) * axis
    grow = np.clip(ink, 0.0, 1.0) * np.clip(2.0 - ink, 0.0, 1.0)
    if whole:  # thinned by rows below; thickening stays off free ends, which taper there
        grow *= _ease(ink, *PEEL_FADE)
        thin = np.clip(-delta / np.float32(max((w - 1.0) / 2, 0.25)), 0.0, 1.0)  # of the row to peel
        thin = np.maximum(thin, _ease(ink, PEEL_END[1], PEEL_END[0]))
        delta = np.where(delta > 0, delta * grow, np.float32(0.0))
    else:
        delta = np.where(delta > 0, delta * grow, np.maximum(delta, np.float32((1.0 - w) / 2)))
    # each direction reads a box of its own size: a box wider than the line reads its core as
    # near an edge (a thinned 3 px line would go grey instead of thinner); past NIB_RANGE the
    # boxes would reach across the lines, which is why thick_thin stops at 1
    out = y.copy()
    moved = []
    for sign, extent in ((1.0, hi - 1.0), (-1.0, 1.0 - lo)):
        if extent <= 0:
            continue
        k = _edge_radius(extent, w)
        if k not in boxes:
            boxes[k] = box_mean(y, k)
        base = (boxes[k] - np.float32(0.5)) * np.float32(2 * k + 1) + np.float32(0.5)
        move = np.maximum(np.float32(sign) * delta, 0.0) * np.float32(sign)
        line = np.clip(base + move, 0.0, 1.0)
        out += line - np.clip(base, 0.0, 1.0)
        moved.append((sign, move, line))
    np.clip(out, 0.0, 1.0, out=out)
    exact = float(_ease(w, *_READ_EXACT))
    if exact > 0:
        drawn = out
        # Only the change is added to y, so that unmoved paper stays as it was (slits), but
        # where y's own edge sits off the box's reading of it (curves, steep edges), a
        # thickened line kept a light streak along its old edge and a thinned one a grey trace
        # of it: there the moved line decides, as far as y moved by the move allows (which
        # keeps a guarded move from filling a slit). Thin lines' boxes read their cores short
        # and are left out.
        for sign, move, line in moved:
            if sign > 0:
                out = np.where((move > 0) & (y > 0.1), np.maximum(out, np.minimum(line, y + move)), out)
            else:
                out = np.where(move < 0, np.minimum(out, np.maximum(line, y + move)), out)
        if exact < 1:
            out = np.float32(exact) * out + np.float32(1 - exact) * drawn
    if whole:
        out = np.where(_peel_rows(out > 0.5), out * (np.float32(1.0) - thin), out)
    return _keep_slits(out, y, normal2, w, hi)


def _ease(x, start: float, end: float):
    """0 at `start`, 1 at `end`, linear between and clipped (either way round); float32 arrays
    stay float32."""
    return np.clip((x - start) / (end - start), 0.0, 1.0)


def _peel_rows(mask: np.ndarray) -> np.ndarray:
    """The pixels of `mask` that thinning a whole-pixel line by one row fades: those on its
    lower and right edges that can go without cutting the line (Zhang-Suen thinning's first
    rule, which training/prepare.py's centerline peels first, so a 2 px line keeps the row its
    centerline lies on: it has no middle row). Pieces the rule would take (nearly) whole stay:
    a pixel with fewer than 3 unpeeled ones in its 7 x 7 neighbourhood is kept (2 x 2 dots and
    2 x 3 dashes kept only one pixel or none; a 2 x 4 dash stays, a 2 x 5 one keeps its middle
    3 px whole)."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    n = [p[0:h, 1:w + 1], p[0:h, 2:], p[1:h + 1, 2:], p[2:, 2:], p[2:, 1:w + 1], p[2:, 0:w], p[1:h + 1, 0:w],
         p[0:h, 0:w]]  # N, NE, E, SE, S, SW, W, NW
    count = sum(a.astype(np.int8) for a in n)
    rises = sum((~n[i] & n[(i + 1) % 8]).astype(np.int8) for i in range(8))  # paper to ink, going round
    north, east, south, west = n[0], n[2], n[4], n[6]
    peel = (mask & (count >= 3) & (count <= 6) & (rises == 1)
            & ~(north & east & south) & ~(east & south & west))
    return peel & (box_mean((mask & ~peel).astype(np.float32), 3) * np.float32(49) > 2.5)


def _keep_slits(out: np.ndarray, y: np.ndarray, normal2: tuple[np.ndarray, np.ndarray], w: float,
                hi: float) -> np.ndarray:
    """`out` where thickening may fill paper, `y` where it would narrow a gap between two
    lines below SLIT_KEEP x the line width (at least 2 px): so a gap of g keeps min(g, that)
    and nothing jumps as g grows (a closing of the lines, tried first, kept gaps whole up to
    a width and then let them shut: steps, and light dots in the edges' nicks).

    Only paper pixels the nib darkened are looked at: along the lines' normal both ways, in
    half-pixel steps up to the reach of the move plus that width, the first pixel of ink (`y`
    over 0.5) each way lies d_near and d_far px off (to its centre); the pixels with
    d_far - d_near <= g0 (+ half a pixel) are the gap's middle g0. Where either way finds no
    ink there is no gap.
    """
    g0 = max(2.0, SLIT_KEEP * w)
    reach = int(math.ceil((hi - 1.0) * w / 2 + g0)) + 1
    iy, ix = np.nonzero((out > y + 0.02) & (y < 0.5))
    if iy.size == 0:
        return out
    c2, s2 = normal2[0][iy, ix], normal2[1][iy, ix]
    cos2 = c2 / (np.sqrt(c2 * c2 + s2 * s2) + np.float32(1e-12))
    # half the double angle; the sign of s2 picks the quadrant (s2 = 0, cos2 = -1: vertical)
    ny = np.where(s2 >= 0, 1.0, -1.0) * np.sqrt(np.clip((1 - cos2) / 2, 0.0, 1.0))
    nx = np.sqrt(np.clip((1 + cos2) / 2, 0.0, 1.0))
    h, wd = y.shape
    inked = y > 0.5
    first = []
    for sign in (1.0, -1.0):
        d = np.full(iy.size, np.inf, np.float32)
        for step in np.arange(1, 2 * reach + 1) / 2:
            oy, ox = np.rint(sign * step * ny), np.rint(sign * step * nx)  # offsets: shift-exact
            py = np.clip(iy + oy.astype(np.intp), 0, h - 1)
            px = np.clip(ix + ox.astype(np.intp), 0, wd - 1)
            hit = np.isinf(d) & inked[py, px]
            d = np.where(hit, np.hypot(oy, ox).astype(np.float32), d)
        first.append(d)
    near, far = np.minimum(*first), np.maximum(*first)
    shut = np.isfinite(far)  # ink both ways
    shut[shut] = far[shut] - near[shut] <= g0 + 0.5  # + half a pixel: slanted gaps kept 1.4 px of 2
    out = out.copy()
    out[iy[shut], ix[shut]] = y[iy[shut], ix[shut]]
    return out
