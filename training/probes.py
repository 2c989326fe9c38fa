"""Gap and speck probes from a generator training never samples.

`evalset.py` cuts its probes into `synth.py` drawings with `degrade.py`, the very code that
makes the training data, so a style can learn their exact look. These are drawn here from
scratch: straight strokes and circular arcs as analytic distance fields (numpy, no OpenCV
drawing), anti-aliased by a linear edge ramp, gaps cut square across the stroke, specks as
soft ellipses of varying darkness. Nothing in training imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.metrics import INK, gap_closed

PROBE_SEED = 777_000_001
GAPS = (1, 2, 3, 4)
Point = tuple[int, int]


@dataclass
class ProbeImage:
    input: np.ndarray
    gaps: list[tuple[Point, Point, int]] = field(default_factory=list)
    specks: list[np.ndarray] = field(default_factory=list)  # bool footprint of each speck


def _segment_distance(yy, xx, p, q):
    d = q - p
    t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / float(d @ d), 0.0, 1.0)
    return np.hypot(yy - (p[0] + t * d[0]), xx - (p[1] + t * d[1])), t


def make_probe_image(seed: int, size: int = 192) -> ProbeImage:
    """Four straight strokes with one gap each (1, 2, 3, 4 px), two arcs, four specks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cov = np.zeros((size, size))
    gaps = []
    rows = np.linspace(28, size - 28, 4)
    for k, g in enumerate(rng.permutation(GAPS)):
        width = rng.choice([1.5, 2.0, 2.5, 3.0])
        ang = rng.uniform(-0.35, 0.35)
        c = np.array([rows[k] + rng.uniform(-4, 4), size / 2 + rng.uniform(-10, 10)])
        d = np.array([np.sin(ang), np.cos(ang)])
        p, q = c - d * size * 0.36, c + d * size * 0.36
        dist, t = _segment_distance(yy, xx, p, q)
        line = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)
        # the gap: a band square across the stroke, centred at a random place along it
        tc = rng.uniform(0.3, 0.7)
        along = (t - tc) * np.linalg.norm(q - p)
        line[np.abs(along) < g / 2.0] = 0.0
        cov = np.maximum(cov, line)
        mid = p + (q - p) * tc
        a = tuple(int(v) for v in np.round(mid - d * (g / 2.0 + 2.5)))
        b = tuple(int(v) for v in np.round(mid + d * (g / 2.0 + 2.5)))
        gaps.append((a, b, int(g)))
    for _ in range(2):  # arcs, away from the gaps, as ordinary content
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        rad = rng.uniform(18, 40)
        a0, a1 = sorted(rng.uniform(0, 2 * np.pi, 2))
        ang = np.arctan2(yy - cy, xx - cx) % (2 * np.pi)
        ring = np.clip(1.25 - np.abs(np.hypot(yy - cy, xx - cx) - rad), 0.0, 1.0)
        ring[(ang < a0) | (ang > a1)] = 0.0
        near_gap = np.zeros_like(ring, bool)
        for a, b, _ in gaps:
            near_gap |= np.hypot(yy - (a[0] + b[0]) / 2, xx - (a[1] + b[1]) / 2) < 12
        ring[near_gap] = 0.0
        cov = np.maximum(cov, ring)
    specks = []
    ink = cov > 0.02
    for _ in range(60):
        if len(specks) == 4:
            break
        cy, cx = rng.uniform(8, size - 8, 2)
        ry, rx = rng.uniform(0.6, 1.8, 2)
        dark = rng.uniform(0.5, 1.0)
        e = np.hypot((yy - cy) / ry, (xx - cx) / rx)
        blob = np.clip((1.3 - e) * 2.0, 0.0, 1.0) * dark
        foot = blob > 0.02
        if blob.max() <= INK:
            continue
        clear = np.hypot(yy - cy, xx - cx) < 9
        if (ink & clear).any() or any((f & clear).any() for f in specks):
            continue
        cov = np.maximum(cov, blob)
        specks.append(foot)
    cov = cov.astype(np.float32)
    gaps = [g for g in gaps if cov[g[0]] > INK and cov[g[1]] > INK and not gap_closed(cov, g[0], g[1])]
    return ProbeImage(input=cov, gaps=gaps, specks=specks)


def make_probes(n: int = 24, seed: int = PROBE_SEED) -> list[ProbeImage]:
    """n probe images (4 gaps and 4 specks each); the same arguments give the same set."""
    return [make_probe_image(seed + i) for i in range(n)]


def speck_gone(output: np.ndarray, footprint: np.ndarray) -> bool:
    """A speck is removed when no pixel of it (or 1 px around it) stays darker than 25 % coverage."""
    grown = footprint.copy()
    grown[1:] |= footprint[:-1]
    grown[:-1] |= footprint[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return bool((np.asarray(output)[grown] <= INK).all())


def score_probes(refine, probes: list[ProbeImage]) -> dict[str, float]:
    """Gap closure and speck removal of `refine` over the probes."""
    closed = total_g = gone = total_s = 0
    for p in probes:
        out = np.asarray(refine(p.input.copy()), np.float32).reshape(p.input.shape)
        closed += sum(gap_closed(out, a, b) for a, b, _ in p.gaps)
        total_g += len(p.gaps)
        gone += sum(speck_gone(out, f) for f in p.specks)
        total_s += len(p.specks)
    return {"probe_gap_closure": closed / total_g if total_g else float("nan"),
            "probe_speck_removal": gone / total_s if total_s else float("nan")}
