"""Deterministic held-out evaluation set with probe gaps and specks at known places.

Each input also gets ordinary random damage (degrade: 1-3 gaps, 0-2 specks,
0-3 spurs, 0.3 px jitter) besides the probes; only the probes are scored by
gap_closure / speck_removal, the rest shows up in F1, chamfer and L1.

Drawing seeds are >= EVAL_SEED_BASE (10**9); training uses seeds < 10**6
(dataset.TRAIN_SEED_LIMIT), so no evaluation drawing is ever trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training.degrade import probe_sides_ok, add_speck, cut_gap, degrade
from training.metrics import INK, gap_closed, speck_removed
from training.synth import SynthSample, synth_sample

EVAL_SEED_BASE = 10**9
PROBE_GAPS = (1, 2, 3, 4)
PROBE_SPECKS = 3

Point = tuple[int, int]


@dataclass
class EvalItem:
    """One held-out drawing: degraded model input, clean target and probe locations (y, x)."""

    input: np.ndarray
    target: np.ndarray
    gaps: list[tuple[Point, Point, int]] = field(default_factory=list)
    specks: list[Point] = field(default_factory=list)
    seed: int = 0


def _stroke_points(sample: SynthSample):
    """All centerline points (y, x) with their stroke index and arc position."""
    pts, idx, arc = [], [], []
    for k, st in enumerate(sample.strokes):
        p = st.points[:, ::-1]
        seg = np.hypot(*np.diff(p, axis=0).T) if len(p) > 1 else np.zeros(0)
        pts.append(p)
        idx.append(np.full(len(p), k))
        arc.append(np.concatenate([[0.0], np.cumsum(seg)]))
    return np.concatenate(pts), np.concatenate(idx), np.concatenate(arc)


def _probe_gap(x, sample, rng, length, taken, all_pts, all_idx, all_arc, tries=80):
    """Cut one probe gap of `length` px on an isolated, straight stretch of a stroke."""
    h, w = x.shape
    lengths = np.array([len(s.points) for s in sample.strokes], float)
    for _ in range(tries):
        k = int(rng.choice(len(sample.strokes), p=lengths / lengths.sum()))
        sel = all_idx == k
        pts, arc = all_pts[sel], all_arc[sel]
        reach = length / 2.0 + 4.0
        if arc[-1] < 2 * (reach + 8):
            continue
        s0 = rng.uniform(reach + 8, arc[-1] - reach - 8)
        c = np.array([np.interp(s0, arc, pts[:, 0]), np.interp(s0, arc, pts[:, 1])])
        ends = [np.array([np.interp(s0 + sg * reach, arc, pts[:, 0]),
                          np.interp(s0 + sg * reach, arc, pts[:, 1])]) for sg in (-1, 1)]
        d = ends[1] - ends[0]
        if np.linalg.norm(d) < 1e-6:
            continue
        d /= np.linalg.norm(d)
        # straight: the stroke stays within 0.6 px of the chord around the cut
        near = np.abs(arc - s0) <= reach
        off = (pts[near] - c) @ np.array([-d[1], d[0]])
        if np.abs(off).max() > 0.6:
            continue
        if not (8 <= c[0] < h - 8 and 8 <= c[1] < w - 8):
            continue
        if any(np.hypot(*(c - t)) < 16 for t in taken):
            continue
        # isolated: no other stroke (or other part of this one) near the cut
        other = (all_idx != k) | (np.abs(all_arc - s0) > reach + 6)
        if other.any() and np.hypot(*(all_pts[other] - c).T).min() < sample.width / 2 + 6:
            continue
        a = tuple(int(v) for v in np.round(c - d * (length / 2.0 + 2.5)))
        b = tuple(int(v) for v in np.round(c + d * (length / 2.0 + 2.5)))
        if not probe_sides_ok(x, a, b) or not gap_closed(sample.target, a, b):
            continue
        cut, a, b, ok = cut_gap(x, c, d, float(length), sample.width / 2.0 + 1.0)
        if ok and sample.target[a] > INK and sample.target[b] > INK:
            return cut, (a, b, int(length)), c
    return x, None, None


def make_item(seed: int, size: int = 256) -> EvalItem:
    """One evaluation drawing from a seed (use seeds >= EVAL_SEED_BASE)."""
    sample = synth_sample(seed, size)
    rng = np.random.default_rng([seed, 1])
    x = degrade(sample.input, rng, gaps=(1, 3), specks=(0, 2), spurs=(0, 3), jitter=0.3)
    all_pts, all_idx, all_arc = _stroke_points(sample)
    gaps, taken = [], []
    for length in PROBE_GAPS:
        x, probe, c = _probe_gap(x, sample, rng, length, taken, all_pts, all_idx, all_arc)
        if probe is not None:
            gaps.append(probe)
            taken.append(c)
    specks = []
    # keep probe specks away from target ink and the probe gaps too
    clear = np.maximum(x, sample.target)
    for c in taken:
        cv2.circle(clear, (int(c[1]), int(c[0])), 8, 1.0, -1)
    dist = cv2.distanceTransform((clear <= 0.05).astype(np.uint8), cv2.DIST_L2, 3)
    for _ in range(PROBE_SPECKS * 5):
        if len(specks) == PROBE_SPECKS:
            break
        trial, p = add_speck(x.copy(), rng, clearance=6.0, dist=dist)
        if p is None:
            break
        dist[max(0, p[0] - 10):p[0] + 11, max(0, p[1] - 10):p[1] + 11] = 0
        if not speck_removed(trial, p):  # the speck really is ink at the probe point
            x = trial
            specks.append(p)
    return EvalItem(input=x.astype(np.float32), target=sample.target, gaps=gaps, specks=specks, seed=int(seed))


def make_evalset(seed: int = 20261125, n: int = 24, size: int = 256) -> list[EvalItem]:
    """n held-out items; the same arguments always give the same set."""
    rng = np.random.default_rng(seed)
    seeds = EVAL_SEED_BASE + rng.choice(10**6, size=n, replace=False)
    return [make_item(int(s), size) for s in seeds]
