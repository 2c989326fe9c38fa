"""Line-drawing metrics on coverage images (ink = coverage > 0.25).

Pixel metrics like L1 punish a 1 px shift as hard as a missing line, so these
compare ink sets by distance instead. Points are (y, x) integer pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

INK = 0.25
WIDTH_BINS = np.arange(0.0, 11.0)  # 1 px bins covering 0..10 px


def ink_mask(cov: np.ndarray) -> np.ndarray:
    """Boolean ink set of a coverage image."""
    return np.asarray(cov) > INK


def distance_to_ink(ink: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from every pixel to the nearest ink pixel (ink must be non-empty)."""
    return cv2.distanceTransform((~ink).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def line_prf(output: np.ndarray, target: np.ndarray, tol: float = 2.0) -> dict[str, float]:
    """Precision/recall/F1 of ink with a distance tolerance.

    An empty side counts as vacuously perfect for its own rate, so both empty
    gives 1.0 everywhere and one empty gives F1 0.
    """
    out, tgt = ink_mask(output), ink_mask(target)
    precision = recall = 1.0
    if out.any() and tgt.any():
        precision = float(np.mean(distance_to_ink(tgt)[out] <= tol))
        recall = float(np.mean(distance_to_ink(out)[tgt] <= tol))
    elif out.any():
        precision = 0.0
    elif tgt.any():
        recall = 0.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": float(f1)}


def chamfer(output: np.ndarray, target: np.ndarray) -> float:
    """Symmetric mean distance (px) between ink sets; 0 if both empty, the image diagonal if one is."""
    out, tgt = ink_mask(output), ink_mask(target)
    if not out.any() and not tgt.any():
        return 0.0
    if not out.any() or not tgt.any():
        return float(np.hypot(*out.shape))
    d_out = float(np.mean(distance_to_ink(tgt)[out]))
    d_tgt = float(np.mean(distance_to_ink(out)[tgt]))
    return (d_out + d_tgt) / 2.0


def hallucinated_ink(output: np.ndarray, target: np.ndarray, dist: float = 3.0) -> float:
    """Fraction of output ink farther than `dist` px from any target ink (0 if no output ink)."""
    out, tgt = ink_mask(output), ink_mask(target)
    if not out.any():
        return 0.0
    if not tgt.any():
        return 1.0
    return float(np.mean(distance_to_ink(tgt)[out] > dist))


def stroke_widths(cov: np.ndarray) -> np.ndarray:
    """Width estimate at each skeleton pixel: 2 x distance-to-paper - 1.

    cv2 measures to the centre of the nearest paper pixel, so a 1 px line has
    distance 1; the -1 makes the estimate equal the width in pixels.
    """
    from training.prepare import centerline  # local import: prepare pulls in synth

    ink = ink_mask(cov)
    if not ink.any():
        return np.zeros(0, np.float32)
    dt = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return 2.0 * dt[centerline(cov)] - 1.0


def width_histogram(cov: np.ndarray) -> np.ndarray:
    """Normalised histogram of stroke widths over 1 px bins from 0 to 10 px (all zeros if no ink)."""
    w = np.clip(stroke_widths(cov), 0.0, WIDTH_BINS[-1] - 1e-3)
    hist, _ = np.histogram(w, bins=WIDTH_BINS)
    total = hist.sum()
    return hist / total if total else hist.astype(np.float64)


def width_hist_distance(output: np.ndarray, target: np.ndarray) -> float:
    """L1 distance between normalised stroke-width histograms, in [0, 2]; 2 if only one has ink."""
    ho, ht = width_histogram(output), width_histogram(target)
    if ho.sum() == 0 and ht.sum() == 0:
        return 0.0
    if ho.sum() == 0 or ht.sum() == 0:
        return 2.0
    return float(np.abs(ho - ht).sum())


def _labels_near(labels: np.ndarray, y: int, x: int, r: float) -> set[int]:
    h, w = labels.shape
    y0, y1 = max(0, int(np.floor(y - r))), min(h, int(np.ceil(y + r)) + 1)
    x0, x1 = max(0, int(np.floor(x - r))), min(w, int(np.ceil(x + r)) + 1)
    if y0 >= y1 or x0 >= x1:
        return set()
    yy, xx = np.mgrid[y0:y1, x0:x1]
    near = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    found = labels[y0:y1, x0:x1][near]
    return set(found[found > 0].tolist())


def gap_closed(output: np.ndarray, a, b, margin: int = 6, snap: float = 1.5) -> bool:
    """True when ink within `snap` px of a and of b is one 8-connected piece inside a local window.

    The window (bounding box of a and b plus margin) stops a long detour through
    the rest of the drawing from counting as a closed gap.
    """
    h, w = output.shape
    (ay, ax), (by, bx) = a, b
    y0, y1 = max(0, min(ay, by) - margin), min(h, max(ay, by) + margin + 1)
    x0, x1 = max(0, min(ax, bx) - margin), min(w, max(ax, bx) + margin + 1)
    if y0 >= y1 or x0 >= x1:
        return False
    ink = ink_mask(output[y0:y1, x0:x1]).astype(np.uint8)
    _, labels = cv2.connectedComponents(ink, connectivity=8)
    la = _labels_near(labels, ay - y0, ax - x0, snap)
    lb = _labels_near(labels, by - y0, bx - x0, snap)
    return bool(la & lb)


def speck_removed(output: np.ndarray, center, radius: float = 3) -> bool:
    """True when no output ink lies within `radius` px of where a speck was."""
    return not _labels_near(ink_mask(output).astype(np.int32), int(center[0]), int(center[1]), radius)
