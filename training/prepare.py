"""Turn a studio's own drawings into (input, target) training pairs.

The drawing itself is the target (its ink as coverage). The input is what a
Freestyle render of the same lines would look like: the drawing's centerlines
redrawn as uniform anti-aliased lines, in the same way synth.render_uniform does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from training.synth import Stroke, catmull_rom, render_uniform

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
INK = 0.25
FEW_DRAWINGS = 5  # fewer than this gets a warning: a style is learnt from 20-30
_OFFS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


class InputError(ValueError):
    """Something wrong with what the user gave training (a file, a folder, a setting), said
    in one sentence; the command prints it as one line (other errors keep their traceback)."""


# ---------------------------------------------------------------- loading


def load_drawing(path: str | Path) -> np.ndarray:
    """Luminance in [0, 1] (float32) of any 8/16-bit gray/RGB/RGBA image; alpha over white."""
    path = Path(path)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII paths on Windows
    except OSError as exc:
        raise InputError(f"Could not read {path}: {exc.strerror}; check the file exists and is readable.") from exc
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise InputError(f"Could not decode {path}: re-save it as an 8- or 16-bit PNG, JPEG or TIFF.")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    else:
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    if img.ndim == 2:
        return img
    alpha = None
    if img.shape[2] in (2, 4):
        alpha, img = img[:, :, -1:], img[:, :, :-1]
    if img.shape[2] >= 3:
        lum = 0.114 * img[:, :, 0] + 0.587 * img[:, :, 1] + 0.299 * img[:, :, 2]  # BGR order
    else:
        lum = img[:, :, 0]
    if alpha is not None:
        lum = lum * alpha[:, :, 0] + (1.0 - alpha[:, :, 0])
    return np.ascontiguousarray(lum, dtype=np.float32)


def scan_border(lum: np.ndarray) -> np.ndarray:
    """The dark frame a scanner leaves around a page (lid open, page smaller than the glass),
    as a mask: dark regions that run along at least half of one of the image's edges and are
    thick (they survive an opening by 1.5 % of the long side, at least 9 px). Left in, the frame would
    set the ink level, train as a line and pull the ink tone to black. Only on light paper
    (judged on the middle of the scan, which a frame does not reach)."""
    lum = np.asarray(lum, np.float32)
    h, w = lum.shape
    middle = lum[h // 4:h - h // 4, w // 4:w - w // 4]
    if middle.size == 0 or np.median(middle) < 0.5:
        return np.zeros(lum.shape, bool)
    dark = (lum < float(np.percentile(middle, 90)) - 0.35).astype(np.uint8)
    k = max(9, round(0.015 * max(h, w)))
    thick = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, labels = cv2.connectedComponents(thick, connectivity=8)
    frame = np.zeros(lum.shape, bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        # A frame runs along half an edge or more; a stroke off the page touches it by its width.
        ids, counts = np.unique(side[side > 0], return_counts=True)
        for i in ids[counts >= side.size // 2]:
            frame |= labels == i
    return cv2.dilate(frame.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) if frame.any() else frame


UNEVEN = 0.08  # paper whose lighting varies more than this across the page is evened out


def paper_light(lum: np.ndarray) -> np.ndarray | None:
    """How bright the paper is lit across the page (a phone photo's gradient or vignette, a
    shadow), as a smooth surface; None when it is even. Left in, a page lit 255 on one side
    and 150 on the other turned half its paper into ink and set a grey ink tone.

    On a 128 px copy, paper pixels (light, and as light as a 9 px closing that takes lines out) are spread by
    a blur over a twentieth of the page that takes paper only; ink, filled blacks and a
    scanner's frame are not paper, so they stay as drawn and the paper around fills in."""
    lum = np.asarray(lum, np.float32)
    h, w = lum.shape
    scale = 128.0 / max(h, w)
    if scale >= 1.0 or min(h, w) * scale < 8:
        return None
    small = cv2.resize(lum, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    top = float(np.percentile(small, 95))
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))  # lines gone, light kept
    paper = ((small > 0.4 * top) & (small >= closed - 0.04)).astype(np.float32)
    if paper.sum() < 50:
        return None
    weight = cv2.GaussianBlur(paper, (0, 0), 6.0)
    light = cv2.GaussianBlur(small * paper, (0, 0), 6.0) / np.maximum(weight, 1e-3)
    light = np.where(weight > 0.02, light, top).astype(np.float32)  # no paper near: leave as is
    if float(np.percentile(light, 99) - np.percentile(light, 1)) <= UNEVEN:
        return None
    light = cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(light, 0.25 * top)


def even_light(lum: np.ndarray) -> np.ndarray:
    """lum as if the page were lit evenly at its brightest paper's level (unchanged if it is)."""
    light = paper_light(lum)
    if light is None:
        return lum
    return np.clip(lum * (float(np.percentile(light, 99)) / light), 0.0, 1.0).astype(np.float32)


def drawing_to_target(lum: np.ndarray) -> np.ndarray:
    """Coverage from a scan: scanner frame removed, lighting evened, level-normalised,
    auto-inverted, soft-thresholded, de-speckled."""
    lum = np.asarray(lum, np.float32)
    frame = scan_border(lum)
    if frame.any():
        lum = lum.copy()
        lum[frame] = float(np.percentile(lum[~frame], 90)) if (~frame).any() else 1.0
    if np.median(lum) < 0.5:  # white lines on black
        lum = 1.0 - lum
    lum = even_light(lum)
    paper = float(np.percentile(lum, 90))
    dark = lum[lum < paper - 0.15]
    if dark.size < 4:
        return np.zeros_like(lum)
    ink = float(np.percentile(dark, 5))
    cov = (paper - lum) / max(paper - ink, 1e-3)
    cov = np.clip((cov - 0.15) / 0.7, 0.0, 1.0)  # drop paper grain, keep anti-aliased edges
    return remove_specks(cov.astype(np.float32))


def remove_specks(cov: np.ndarray, min_area: int = 4) -> np.ndarray:
    """Drop ink blobs smaller than min_area px and faint pixels not touching real ink."""
    ink = (cov > INK).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    keep_label = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep_label[0] = False
    kept = keep_label[labels].astype(np.uint8)
    near = cv2.dilate(kept, np.ones((3, 3), np.uint8))
    return (cov * near).astype(np.float32)


# ---------------------------------------------------------------- thinning


def _neighbour_codes(img: np.ndarray) -> np.ndarray:
    """8-bit code of the 8 neighbours, bit i = P(i+2) in Zhang-Suen order N, NE, E, SE, S, SW, W, NW."""
    p = np.pad(img, 1).astype(np.uint8)
    h, w = img.shape
    shifts = [(0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0)]
    code = np.zeros((h, w), np.uint8)
    for bit, (dy, dx) in enumerate(shifts):
        code |= p[dy:dy + h, dx:dx + w] << bit
    return code


def _zs_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    step1 = np.zeros(256, bool)
    step2 = np.zeros(256, bool)
    corner = np.zeros((4, 256), bool)
    for c in range(256):
        p = [(c >> i) & 1 for i in range(8)]  # P2..P9
        b = sum(p)
        a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
        p2, p3, p4, p5, p6, p7, p8, p9 = p
        if 2 <= b <= 6 and a == 1:
            step1[c] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
            step2[c] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
        # 8-connectivity number (Yokoi), neighbours ordered E, NE, N, NW, W, SW, S, SE
        x = [p4, p3, p2, p9, p8, p7, p6, p5]
        nx = [1 - v for v in x]
        c8 = sum(nx[k] - nx[k] * nx[(k + 1) % 8] * nx[(k + 2) % 8] for k in (0, 2, 4, 6))
        if c8 == 1 and b >= 2:
            for i, (u, v) in enumerate(((p2, p4), (p4, p6), (p6, p8), (p8, p2))):
                corner[i, c] = bool(u and v)
    return step1, step2, corner


_STEP1, _STEP2, _CORNER = _zs_tables()


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning to an 8-connected 1-px skeleton (bool)."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    img = mask[y0:y1, x0:x1].copy()
    changed = True
    while changed:
        changed = False
        for table in (_STEP1, _STEP2):
            kill = img & table[_neighbour_codes(img)]
            if kill.any():
                img &= ~kill
                changed = True
    for i in range(4):  # remove staircase corners so every line pixel has exactly 2 neighbours
        img &= ~(img & _CORNER[i][_neighbour_codes(img)])
    out[y0:y1, x0:x1] = img
    return out


def _neighbour_count(skel: np.ndarray) -> np.ndarray:
    k = np.ones((3, 3), np.float32)
    k[1, 1] = 0
    return cv2.filter2D(skel.astype(np.float32), -1, k, borderType=cv2.BORDER_CONSTANT).astype(np.int32)


def _neighbours(skel: np.ndarray, y: int, x: int) -> list[tuple[int, int]]:
    h, w = skel.shape
    return [(y + dy, x + dx) for dy, dx in _OFFS
            if 0 <= y + dy < h and 0 <= x + dx < w and skel[y + dy, x + dx]]


def prune(skel: np.ndarray, max_len: int = 3) -> np.ndarray:
    """Delete side branches of at most max_len px that end in a free endpoint."""
    skel = skel.copy()
    count = _neighbour_count(skel)
    for y, x in zip(*np.nonzero(skel & (count == 1))):
        path = [(int(y), int(x))]
        prev = None
        cur = path[0]
        while len(path) <= max_len:
            nb = [p for p in _neighbours(skel, *cur) if p != prev]
            if len(nb) != 1:
                break
            prev, cur = cur, nb[0]
            if count[cur] >= 3:  # reached a junction: the path is a short spur
                for p in path:
                    skel[p] = False
                break
            path.append(cur)
    return skel


PINHOLE = 10  # paper specks inside a stroke smaller than this (px) are grain, not paper


def fill_pinholes(target: np.ndarray) -> np.ndarray:
    """Coverage with paper specks inside strokes inked over: pencil grain leaves them, and
    thinning turned each into a small loop of centerline (a grainy pencil drawing gave 121
    pieces of line where it has 7), which the input then redrew as blobs."""
    paper = (np.asarray(target) <= INK).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(paper, connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] < PINHOLE
    small[0] = False  # label 0 is the ink
    if not small.any():
        return np.asarray(target)
    out = np.array(target, np.float32, copy=True)
    out[small[labels]] = 1.0
    return out


def centerline(target: np.ndarray, prune_len: int = 3) -> np.ndarray:
    """1-px skeleton (bool) of the ink in a coverage image, with short spurs pruned."""
    return prune(thin(np.asarray(target) > INK), prune_len)


# ---------------------------------------------------------------- redraw


def trace_polylines(skel: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """Split a skeleton into pixel chains between endpoints/junctions; returns ((x, y) points, closed)."""
    skel = np.asarray(skel, bool)
    count = _neighbour_count(skel)
    node = skel & (count != 2)
    visited = np.zeros_like(skel)
    chains: list[tuple[np.ndarray, bool]] = []
    pairs: set = set()

    def walk(start, first):
        chain = [start, first]
        prev, cur = start, first
        visited[first] = True
        while True:
            nb = [p for p in _neighbours(skel, *cur) if p != prev]
            if not nb:
                return chain, False
            nxt = nb[0]
            if node[nxt]:
                chain.append(nxt)
                return chain, False
            if visited[nxt]:
                return chain + [nxt], nxt == chain[0]
            visited[nxt] = True
            chain.append(nxt)
            prev, cur = cur, nxt

    for y, x in zip(*np.nonzero(node)):
        p = (int(y), int(x))
        nbs = _neighbours(skel, *p)
        if not nbs:
            chains.append(([p], False))
        for q in nbs:
            if node[q]:
                key = (min(p, q), max(p, q))
                if key not in pairs:
                    pairs.add(key)
                    chains.append(([p, q], False))
            elif not visited[q]:
                chains.append(walk(p, q))
    for y, x in zip(*np.nonzero(skel & ~node & ~visited)):  # loops without any node
        p = (int(y), int(x))
        if visited[p]:
            continue
        visited[p] = True
        nbs = _neighbours(skel, *p)
        chain, _ = walk(p, nbs[0])
        chains.append((chain[:-1] if chain[-1] == p else chain, True))
    return [(np.array([(x, y) for y, x in c], np.float64), closed) for c, closed in chains]


def _smooth(points: np.ndarray, closed: bool, eps: float = 0.5) -> np.ndarray:
    """Replace the pixel staircase by a spline through its Douglas-Peucker vertices.

    A few-pass moving average cannot remove the long steps of a near-horizontal
    line; simplifying first keeps straight lines straight and corners sharp-ish.
    """
    if len(points) < 4:
        return points
    soft = points.copy()
    for _ in range(3):  # light averaging first so vertices are not stuck on pixel corners
        if closed:
            soft = 0.25 * np.roll(soft, 1, 0) + 0.5 * soft + 0.25 * np.roll(soft, -1, 0)
        else:
            soft[1:-1] = 0.25 * soft[:-2] + 0.5 * soft[1:-1] + 0.25 * soft[2:]
    simple = cv2.approxPolyDP(soft.astype(np.float32).reshape(-1, 1, 2), eps, closed)[:, 0, :]
    simple = simple.astype(np.float64)
    if closed and len(simple) < 3 or not closed and len(simple) < 2:
        return points
    if len(simple) == 2:
        return simple
    return catmull_rom(simple, per_seg=8, closed=closed)


def redraw_uniform(skeleton: np.ndarray, width: float) -> np.ndarray:
    """Centerlines redrawn as uniform anti-aliased lines of `width` px (the model input)."""
    h, w = skeleton.shape
    strokes = []
    for pts, closed in trace_polylines(skeleton):
        pts = _smooth(pts, closed)
        strokes.append(Stroke(pts, np.ones(len(pts)), closed))
    return render_uniform(strokes, h, w, width)


# ---------------------------------------------------------------- folders


def _images_in(folder: Path) -> list[Path]:
    """Image files, without hidden ones (macOS leaves ._name.png beside each file it copies)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def _image_side(path: Path) -> int:
    """The long side of a drawing in pixels (OpenCV reads no header alone: it decodes the file)."""
    return max(load_drawing(path).shape)


def folder_scale(paths: list[Path], max_side: int) -> float:
    """One scale for every drawing of a set, so one pen keeps one width in pixels: scans
    cropped to their drawings come in many sizes, and fitting each to max_side on its own
    drew the same pen 1x in a small crop and 3x thinner in a full page. The set's median
    long side is brought to max_side (never enlarged)."""
    if not paths:
        return 1.0
    return min(1.0, max_side / float(np.median([_image_side(p) for p in paths])))


def _scaled(img: np.ndarray, scale: float, max_side: int, path: Path | None = None) -> np.ndarray:
    """img at the set's scale; a drawing far larger than the rest is brought down to
    4 x max_side (memory), with a line naming `path` (if given): its lines train thinner."""
    h, w = img.shape
    if max(h, w) * scale > 4 * max_side:
        scale = 4 * max_side / max(h, w)
        if path is not None:
            print(f"warning: {path} is far larger than the other drawings; it is scaled down more, so "
                  "its lines train thinner: crop it to its drawing", file=sys.stderr)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _explicit_pairs(folder: Path, max_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    lines = {p.stem: p for p in _images_in(folder / "line")}
    norms = {p.stem: p for p in _images_in(folder / "norm")}
    names = sorted(lines.keys() & norms.keys())
    if not names:
        raise InputError(f"{folder} has line/ and norm/ subfolders but no image names appear in both; "
                         "give each line/ image a norm/ image with the same name.")
    pairs = []
    scale = folder_scale([norms[n] for n in names], max_side)
    for name in names:
        inp, tgt = load_drawing(lines[name]), load_drawing(norms[name])
        if inp.shape != tgt.shape:
            raise InputError(f"{lines[name]} is {inp.shape[1]}x{inp.shape[0]} but {norms[name]} is "
                             f"{tgt.shape[1]}x{tgt.shape[0]}; make each line/norm pair the same size.")
        pairs.append((drawing_to_target(_scaled(inp, scale, max_side, lines[name])),
                      drawing_to_target(_scaled(tgt, scale, max_side))))
    return pairs


TONE_SIDE = 4096  # the ink tone is read at the scan's own resolution, up to this long side


def ink_tone(folder: str | Path, max_side: int = TONE_SIDE) -> float | None:
    """Median grey level (0 black .. 1 white, as stored in the files) of the drawings' solid ink.

    The network learns coverage, not colour: a style trained on grey marker drawings would
    otherwise be drawn in the input's (usually black) colour. Solid ink is coverage > 0.9,
    so anti-aliased edges do not lighten the median. Read at the scan's own resolution (up
    to max_side): a fine pen scaled down to training size has no solid core left, and black
    ink read as mid-grey (0.42 for a 2 px pen on a 300 dpi page). Read as if the page were lit
    evenly. None when there are no loose drawings (line/ + norm/ pairs) or no ink.
    """
    folder = Path(folder)
    if (folder / "line").is_dir() and (folder / "norm").is_dir():
        return None
    tones = []
    for path in _images_in(folder):
        lum = load_drawing(path)
        lum = _scaled(lum, min(1.0, max_side / max(lum.shape)), max_side)
        if np.median(lum) < 0.5:  # white lines on black: their ink tone is not a dark ink
            continue
        solid = drawing_to_target(lum) > 0.9
        tones.append(even_light(lum)[solid])
    tones = [t for t in tones if t.size]
    return float(np.median(np.concatenate(tones))) if tones else None


def prepare_folder(folder: str | Path, max_side: int = 1024, width: float | None = None,
                   seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, target) pairs for every drawing in a folder, or its line/ + norm/ pairs.

    width: uniform input line width; None picks one per drawing in 1-3 px (seeded).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the folder that holds your drawings.")
    if (folder / "line").is_dir() and (folder / "norm").is_dir():
        return _explicit_pairs(folder, max_side)
    files = _images_in(folder)
    if not files:
        raise InputError(f"No drawings found in {folder}; add PNG, JPEG or TIFF line drawings "
                         "(or line/ and norm/ subfolders with matching names).")
    rng = np.random.default_rng(seed)
    pairs = []
    scale = folder_scale(files, max_side)
    for path in files:
        target = drawing_to_target(_scaled(load_drawing(path), scale, max_side, path))
        skel = centerline(fill_pinholes(target))
        if not skel.any():  # a blank page among the scans: say so, train on the rest
            print(f"skipped {path}: no ink lines found in it", file=sys.stderr)
            continue
        w = float(rng.uniform(1.0, 3.0)) if width is None else float(width)
        pairs.append((redraw_uniform(skel, w), target))
    if not pairs:
        raise InputError(f"No drawing in {folder} has detectable ink lines; add line drawings (dark lines "
                         "on light paper, or light on dark).")
    if len(pairs) < FEW_DRAWINGS:
        print(f"warning: {len(pairs)} drawing(s) in {folder}; a style learns a look from 20-30 drawings",
              file=sys.stderr)
    return pairs
