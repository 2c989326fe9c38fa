#!/usr/bin/env python3
"""Screening: a broad nib drawn after the network, as a fixed post-process, on the real renders.

The network draws a tenth to a half of its targets' thick-thin (training/README.md, "What the
hand-drawn bars need"). This asks what a direction-dependent width change applied to the
style's output as applied would cost: the local line direction from a structure tensor, the
nib factor of that direction (synth.nib_factor's formula), and each edge moved by
(factor - 1) x the frame's line width / 2. Two ways to move the edges: `numpy` (a box-blurred
copy read as a signed distance, what could run inside Blender) and `distance` (OpenCV distance
transforms). The extension's thick-thin (linerelifer_addon/core/nib.py) grew from `guarded`,
with the direction at full resolution and the moved line deciding at old edges; this script
keeps the variants screened on the way. Its numbers are in training/README.md.

    .venv/bin/python tools/screen_nib.py [--style default] [--nib 0.65,1.55 --nib 0.5,1.8]
        [--method numpy|distance] [--groups "720p AA,720p aliased"] [--shift]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from linerelifer_addon.core.linewidth import line_width, refine_at_width, width_settings  # noqa: E402
from linerelifer_addon.core.nib import box_mean as box  # noqa: E402
from linerelifer_addon.core.styles import resolve_style  # noqa: E402
from linerelifer_addon.worker.engine import Engine, configure_threads  # noqa: E402
from training.evaluate import _MEDIAN, _inky_window, real_group  # noqa: E402
from training.realmetrics import real_metrics, shift_change  # noqa: E402
from training.realset import load_manifest, load_pass  # noqa: E402
from training.synth import NIB_ANGLE  # noqa: E402

TIP, FLOOR = 1.0, 1.0  # --tip: thickening gone where a wider box holds under 1 - 1/TIP of a lone line's ink; --floor px
THIN_BELOW, THIN_LO, THIN_HI, CALM_FROM, CALM = 4.0, 0.0, 0.0, 99.0, 1.0  # --thin-lo, --thin-hi, --calm
UNCLEAR_ONE = False  # --unclear-one
STEP = 1  # --half: the direction at half resolution
METRICS = ("width_cv", "width_ratio", "darkness_kept", "hollow", "taper", "filled_slit", "recall", "shift_change")


def nib_factor(y: np.ndarray, w: float, nib: tuple[float, float], step: int = 1) -> np.ndarray:
    """Per-pixel width factor from the structure tensor's direction; the range's middle where
    the direction is unclear (corners, junctions). step 2: the tensor at half resolution."""
    h, wd = y.shape
    if step > 1:
        hh, ww = h // step * step, wd // step * step
        y = y[:hh, :ww].reshape(hh // step, step, ww // step, step).mean(axis=(1, 3))
    gx, gy = np.zeros_like(y), np.zeros_like(y)
    gx[:, 1:-1], gy[1:-1] = y[:, 2:] - y[:, :-2], y[2:] - y[:-2]
    r = max(1, int(round(max(2.0, 0.75 * w) / step)))
    jxx, jxy, jyy = box(gx * gx, r), box(gx * gy, r), box(gy * gy, r)
    tr = jxx + jyy + 1e-6
    # across = 0.5 coherence cos(2 phi - 2 A), phi the gradient's direction: +0.5 for a line
    # running across the nib's angle (thickest), -0.5 along it
    across = 0.5 * ((jxx - jyy) / tr * np.cos(2 * NIB_ANGLE) + 2 * jxy / tr * np.sin(2 * NIB_ANGLE))
    mid = (nib[0] + nib[1]) / 2
    if UNCLEAR_ONE:  # where the direction is unclear, no change rather than the range's middle
        mid = 1 + (mid - 1) * np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / tr
    f = mid + (nib[1] - nib[0]) * across
    if step > 1:  # back to full resolution, smoothly (repeat, then a 3 px box)
        f = np.pad(np.repeat(np.repeat(f, step, 0), step, 1), ((0, h - f.shape[0] * step), (0, wd - f.shape[1] * step)),
                   mode="edge")
        f = box(f, step // 2)
    return f.astype(np.float32)


def move_edges(y: np.ndarray, delta: np.ndarray, w: float, nib: tuple[float, float]) -> np.ndarray:
    """`y` with its edges moved out by `delta` px (in where negative). A box-blurred copy read
    as a signed distance to the nearest edge: exact on the box's ramp, and the paper beyond a
    box of radius a stays paper for moves up to a. Thickening and thinning read boxes of their
    own size: a box wider than the line reads its core as near an edge (a thinned 3 px line
    went grey instead of thinner). Only the change is added to `y`."""
    out = y.copy()
    for sign, reach in ((1, nib[1] - 1), (-1, 1 - nib[0])):
        a = int(np.ceil(max(reach, 0) * w / 2))
        if a == 0:
            continue
        base = (box(y, a) - 0.5) * (2 * a + 1) + 0.5
        d = np.maximum(sign * delta, 0) * sign
        out += np.clip(base + d, 0, 1) - np.clip(base, 0, 1)
    return np.clip(out, 0, 1)


def nib_numpy(y: np.ndarray, w: float, nib: tuple[float, float]) -> np.ndarray:
    """The nib's move for the frame's width everywhere, never under 1 px."""
    y = np.asarray(y, np.float32)
    w = max(float(w), 1.0)
    a = int(np.ceil(max(nib[1] - 1, 1 - nib[0]) * w / 2))
    delta = np.maximum((nib_factor(box(y, a), w, nib) - 1) * w / 2, (min(1.0, w) - w) / 2)
    return move_edges(y, delta, w, nib)


def nib_guarded(y: np.ndarray, w: float, nib: tuple[float, float]) -> np.ndarray:
    """nib_numpy, with the thickening scaled by how much ink a wider box holds against a lone
    line of the frame's width: less at tips (less ink around) and between close lines (more)."""
    y = np.asarray(y, np.float32)
    w = max(float(w), 1.0)
    if w < THIN_BELOW:  # thin lines: thinned less (their darkness)
        nib = (max(nib[0], THIN_LO), max(nib[1], THIN_HI))
    if w > CALM_FROM:  # thick lines: a narrower range (their shift change)
        nib = (1 + (nib[0] - 1) * CALM, 1 + (nib[1] - 1) * CALM)
    a = int(np.ceil(max(nib[1] - 1, 1 - nib[0]) * w / 2))
    delta = (nib_factor(box(y, a), w, nib, STEP) - 1) * w / 2
    rb = max(a + 1, int(np.ceil(w)))
    ink = box(y, rb) * ((2 * rb + 1) / w)  # about 1 beside a lone straight line
    grow = np.clip(TIP * ink - (TIP - 1), 0, 1) * np.clip(2 - ink, 0, 1)
    delta = np.where(delta > 0, delta * grow, np.maximum(delta, (min(FLOOR, w) - w) / 2))
    return move_edges(y, delta, w, nib)


def nib_distance(y: np.ndarray, w: float, nib: tuple[float, float]) -> np.ndarray:
    """The nib with OpenCV: direction from a Gaussian structure tensor, edges from distance transforms."""
    y = np.asarray(y, np.float32)
    w = max(float(w), 1.0)
    s = max(2.0, 0.75 * w)
    gx, gy = cv2.Sobel(y, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(y, cv2.CV_32F, 0, 1) / 8
    jxx, jxy, jyy = (cv2.GaussianBlur(v, (0, 0), s) for v in (gx * gx, gx * gy, gy * gy))
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2
    coh = np.clip(np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-6), 0, 1)
    f = 1 + (nib[0] + (nib[1] - nib[0]) * (0.5 - 0.5 * np.cos(2 * (theta - NIB_ANGLE))) - 1) * coh
    delta = np.maximum((f - 1) * w / 2, (1.0 - w) / 2)
    ink = (y >= 0.5).astype(np.uint8)
    sd = np.where(ink > 0, cv2.distanceTransform(ink, cv2.DIST_L2, 5) - 0.5,
                  0.5 - cv2.distanceTransform(1 - ink, cv2.DIST_L2, 5))
    sd = np.where((y > 0.02) & (y < 0.98) & (np.abs(sd) <= 1), y - 0.5, sd)
    return np.clip(sd + delta + 0.5, 0, 1).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", default="default")
    ap.add_argument("--real", default=str(ROOT / "out" / "realset"))
    ap.add_argument("--nib", action="append", help="thinnest,thickest (repeatable; default 0.65,1.55 and 0.5,1.8)")
    ap.add_argument("--method", choices=("numpy", "guarded", "distance"), default="numpy")
    ap.add_argument("--groups", default="720p AA,720p aliased")
    ap.add_argument("--shift", action="store_true", help="also the shift change (720p AA)")
    ap.add_argument("--half", action="store_true", help="guarded: read the direction at half resolution (faster)")
    ap.add_argument("--tip", type=float, default=1.0, help="guarded: how fast thickening fades towards tips (1: in proportion)")
    ap.add_argument("--floor", type=float, default=1.0, help="guarded: thinnest line the nib draws, px")
    ap.add_argument("--thin-lo", type=float, default=0.0, help="guarded: thinnest factor when the frame's line width is under 4 px")
    ap.add_argument("--thin-hi", type=float, default=0.0, help="guarded: thickest factor when the frame's line width is under 4 px (if larger)")
    ap.add_argument("--calm", type=float, default=1.0, help="guarded: the range scaled by this when the frame's line width is over 6 px")
    ap.add_argument("--unclear-one", action="store_true",
                    help="factor 1 where the direction is unclear (tips, corners), not the range's middle")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    configure_threads(args.threads)
    global STEP, TIP, FLOOR, THIN_LO, THIN_HI, CALM, CALM_FROM, UNCLEAR_ONE
    UNCLEAR_ONE = args.unclear_one
    THIN_LO, THIN_HI, CALM, CALM_FROM = args.thin_lo, args.thin_hi, args.calm, 6.0
    STEP, TIP, FLOOR = 2 if args.half else 1, args.tip, args.floor
    nibs = [tuple(float(v) for v in n.split(",")) for n in (args.nib or ["0.65,1.55", "0.5,1.8"])]
    post = {"numpy": nib_numpy, "guarded": nib_guarded, "distance": nib_distance}[args.method]
    info = resolve_style(args.style)
    engine, (native, gain) = Engine(info.path), width_settings(info.path)

    def styled(x: np.ndarray) -> np.ndarray:
        return np.asarray(refine_at_width(x, native, lambda a: engine.refine(a, skip_blank=False), edge_gain=gain),
                          np.float32)

    cache, groups = Path(args.real), args.groups.split(",")
    per: dict[tuple, list[dict]] = {}
    for e in load_manifest(cache):
        if real_group(e) not in groups:
            continue
        x = load_pass(cache, e)
        y, w = styled(x.copy()), line_width(x)
        for nib in [None] + nibs:
            # the unshifted frame's width for its shifted copies too (held across a shot)
            refine = styled if nib is None else (lambda a, n=nib: post(styled(a), w, n))
            out = y if nib is None else post(y, w, nib)
            r = real_metrics(x, out)
            if args.shift and real_group(e) == "720p AA":  # as evaluate: the frame moved whole
                r["shift_change"] = shift_change(refine, x, base=out, window=_inky_window(x, 256) + (256, 256))
            per.setdefault((nib, real_group(e), e["thickness"]), []).append(r)
    print(f"{info.name} as applied, then a nib ({args.method}); means over scenes, medians for CV and taper")
    print(f"{'px':>38s}" + "".join(f"{t:>8d}" for t in (1, 2, 3, 5, 8, 12)))
    for k in METRICS:
        for nib in [None] + nibs:
            for g in groups:
                cells = []
                for t in (1, 2, 3, 5, 8, 12):
                    v = [r[k] for r in per.get((nib, g, t), []) if k in r and np.isfinite(r[k])]
                    cells.append(f"{(np.median if k in _MEDIAN else np.mean)(v):8.3f}" if v else f"{'—':>8s}")
                label = "style" if nib is None else f"+ nib {nib[0]:g}-{nib[1]:g}"
                print(f"{k[:12]:13s}{label:17s}{g[5:]:8s}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
