"""Exact tiling for a fully convolutional network.

Tiles overlap by the network's receptive-field margin, and every tile origin sits on the
network's total stride, so each output pixel is computed from exactly the inputs the whole
image would give it. The reference "whole image" result is the same network run once on the
image padded by the margin on every side (rounded up to the stride) with its own mirror image
(`mirror_pad`); tiles that reach past the image see the same mirror. A frame's edge is not
where its lines end: against blank paper a style would taper every line that leaves the frame.
Tiles are copied into one reusable buffer, so memory does not grow with the image beyond its
input and output arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class Tile:
    y: int  # top-left of the tile's input window in image coordinates (may be negative)
    x: int
    oy0: int  # output region written, image coordinates, end exclusive
    ox0: int
    oy1: int
    ox1: int


TILE_OVERHEAD = 32768  # pixels: what one more tile costs beyond its pixels (the call, its set-up)


def round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def tile_shape(tile: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a tile size given as one number (a square) or as a pair."""
    if isinstance(tile, (tuple, list)):
        return int(tile[0]), int(tile[1])
    return int(tile), int(tile)


def check_tile(tile: int | tuple[int, int], margin: int, align: int) -> None:
    if margin % align:
        raise ValueError(f"margin {margin} is not a multiple of the network stride {align}")
    for side in tile_shape(tile):
        if side % align or side <= 2 * margin:
            raise ValueError(
                f"tile size {side} must be a multiple of {align} larger than {2 * margin} (twice the margin)")


def plan(h: int, w: int, tile: int | tuple[int, int], margin: int, align: int,
         region: tuple[int, int, int, int] | None = None) -> list[Tile]:
    """Tiles covering an h×w image, or only its `region` (y0, y1, x0, x1; y0 and x0 on the
    stride grid); their inner parts (tile - 2·margin) do not overlap."""
    check_tile(tile, margin, align)
    th, tw = tile_shape(tile)
    y0, y1, x0, x1 = region if region is not None else (0, h, 0, w)
    if y0 % align or x0 % align:
        raise ValueError(f"region origin ({y0}, {x0}) is not on the network stride {align}")
    step_y, step_x = th - 2 * margin, tw - 2 * margin
    tiles = []
    for oy in range(y0, y1, step_y):
        for ox in range(x0, x1, step_x):
            tiles.append(Tile(oy - margin, ox - margin, oy, ox, min(oy + step_y, y1), min(ox + step_x, x1)))
    return tiles


def ink_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), ends exclusive, of the rows and columns holding ink; None when blank."""
    rows = np.flatnonzero(np.asarray(image).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(np.asarray(image)[rows[0]:rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def ink_cells(image: np.ndarray, box: tuple[int, int, int, int] | None,
              max_cells: int = 256) -> tuple[int, np.ndarray]:
    """(cell, map): which cell×cell squares of the image hold ink, as a bool array of
    ceil(h/cell) × ceil(w/cell); the cell is 64 px, doubled until neither side has more than
    `max_cells` cells. What the tile choice needs to know of a frame it has not been sent yet.

    `box` is the image's ink_box: only the squares it touches are looked at (a 4K frame with a
    figure in a third of it: 0.7–1.2 ms, against 8–12 ms for the whole frame).
    """
    image = np.asarray(image)
    h, w = image.shape
    cell = 64
    while max(h, w) > cell * max_cells:
        cell *= 2
    cells = np.zeros((-(-h // cell), -(-w // cell)), bool)
    if box is None:
        return cell, cells
    y0, x0 = box[0] // cell * cell, box[2] // cell * cell
    inked = image[y0:box[1], x0:box[3]] != 0  # NaN counts as ink
    rows = np.logical_or.reduceat(inked, np.arange(0, inked.shape[0], cell), axis=0)
    part = np.logical_or.reduceat(rows, np.arange(0, inked.shape[1], cell), axis=1)
    cells[y0 // cell:y0 // cell + part.shape[0], x0 // cell:x0 // cell + part.shape[1]] = part
    return cell, cells


def tiles_with_ink(tiles: list[Tile], tile: int | tuple[int, int], h: int, w: int,
                   cell: int, cells: np.ndarray) -> int:
    """How many of the planned tiles read an inked cell of the frame (see ink_cells): at least
    the tiles a run with blank tiles skipped computes."""
    th, tw = tile_shape(tile)
    table = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1), np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(cells, 0), 1)
    n = 0
    for t in tiles:
        y0, y1 = max(t.y, 0) // cell, -(-min(t.y + th, h) // cell)
        x0, x1 = max(t.x, 0) // cell, -(-min(t.x + tw, w) // cell)
        if y1 > y0 and x1 > x0 and table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] > 0:
            n += 1
    return n


def ink_region(box: tuple[int, int, int, int] | None, h: int, w: int, margin: int,
               align: int) -> tuple[int, int, int, int] | None:
    """The part of an h×w frame whose result can differ from blank paper's: the ink box
    grown by the margin (the receptive field), its top-left moved back onto the stride grid
    so its tiles line up with the whole frame's. None when there is no ink.

    Outside it every output pixel sees only blank paper, mirror included: rows above
    y0 - margin reach at most `margin` rows past the top edge, whose mirror lies above y0.
    """
    if box is None:
        return None
    y0, y1, x0, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"ink box {box} does not lie in a frame of {h}x{w}")
    return (max(0, (y0 - margin) // align * align), min(h, y1 + margin),
            max(0, (x0 - margin) // align * align), min(w, x1 + margin))


def tile_cost(h: int, w: int, tile: int | tuple[int, int], margin: int) -> int:
    """Pixels computed to cover an h×w frame with `tile`-sized tiles, plus TILE_OVERHEAD a tile
    for the call."""
    th, tw = tile_shape(tile)
    return -(-h // (th - 2 * margin)) * -(-w // (tw - 2 * margin)) * (th * tw + TILE_OVERHEAD)


def auto_tile(h: int, w: int, margin: int, align: int, hi: int = 1280,
              lo_memory: int | None = None) -> tuple[int, int]:
    """The tile shape (height, width) that computes the fewest pixels for an h×w frame.

    Every tile pays its margins, and the last row and column of tiles overhang the frame,
    so the best shape depends on the frame. Tiles hold at most hi² pixels (that bounds the
    memory one tile's activations take), and neither side exceeds 2·hi; they need not be
    square, which lets a frame be cut into as few, as little overhanging tiles as fit
    (1080p: two of 1184×1056 compute 2.5 Mpx, where two squares of 1184² computed 2.8).
    With `lo_memory`, the best shape of at most lo_memory² pixels is taken unless the
    larger ones save over 5 % of the work.
    """
    step = max(align, 16)
    first = round_up(2 * margin + step, step)
    side = max(2 * hi, first)

    def best(area: int) -> tuple[tuple[int, int], int]:
        choice = None
        for rows in range(1, -(-h // (first - 2 * margin)) + 1):
            th = max(first, round_up(-(-h // rows) + 2 * margin, step))
            widest = min(side, area // th // step * step)
            if th > side or widest < first:
                continue
            # The fewest columns that fit, each as narrow as covers its share of the width:
            # more columns only add margins.
            cols = -(-w // (widest - 2 * margin))
            tw = max(first, round_up(-(-w // cols) + 2 * margin, step))
            cost = tile_cost(h, w, (th, tw), margin)
            if choice is None or cost < choice[1]:
                choice = ((th, tw), cost)
        if choice is None:  # not even the smallest tile fits the area: take the smallest
            choice = ((first, first), tile_cost(h, w, first, margin))
        return choice

    big = best(hi * hi)
    if lo_memory is not None and lo_memory < hi:
        small = best(lo_memory * lo_memory)
        if small[1] <= 1.05 * big[1]:
            return small[0]
    return big[0]


def mirrored(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into 0..n-1 for any integers, as the image mirrored about its edges (edge pixels
    repeated, as numpy's "symmetric" padding) repeats it."""
    i = np.mod(index, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def mirrored_window(image: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
    """The th×tw window at (y, x) of the image mirrored about its edges (a copy)."""
    h, w = image.shape[:2]
    return image[np.ix_(mirrored(np.arange(y, y + th), h), mirrored(np.arange(x, x + tw), w))]


def mirror_pad(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """The image with that many mirrored rows and columns around it (what `extract` shows a tile)."""
    h, w = image.shape[:2]
    return mirrored_window(image, -top, -left, h + top + bottom, w + left + right)


def extract(image: np.ndarray, t: Tile, out: np.ndarray) -> np.ndarray:
    """Copy the tile's window into `out` (tile×tile), mirrored where it lies outside the image.

    In banded runs `image` is a band of rows; a tile reaches past its top or bottom only
    where the band ends at the image's, and what the network reads there (the margin) lies
    inside the band.
    """
    th, tw = out.shape[:2]
    h, w = image.shape[:2]
    if t.y >= 0 and t.x >= 0 and t.y + th <= h and t.x + tw <= w:
        out[:] = image[t.y:t.y + th, t.x:t.x + tw]
    else:
        out[:] = mirrored_window(image, t.y, t.x, th, tw)
    return out


def window_is_blank(image: np.ndarray, t: Tile, size: int | tuple[int, int]) -> bool:
    """True when the tile's whole input window (its receptive field) holds no ink; its
    mirrored part repeats ink from inside it, so only the image part needs looking at."""
    h, w = image.shape[:2]
    th, tw = tile_shape(size)
    y0, x0 = max(t.y, 0), max(t.x, 0)
    y1, x1 = min(t.y + th, h), min(t.x + tw, w)
    if y1 <= y0 or x1 <= x0:
        return True
    return not image[y0:y1, x0:x1].any()


def run_tiled(
    image: np.ndarray,
    infer: Callable[[np.ndarray], np.ndarray],
    tile: int | tuple[int, int],
    margin: int,
    align: int,
    skip_blank: bool = False,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    out_dtype: np.dtype = np.float32,
    region: tuple[int, int, int, int] | None = None,
) -> np.ndarray | None:
    """Apply `infer` (tile×tile → tile×tile) over the image, or only its `region` (the rest
    left blank); None when stopped early.

    The image may be float16 (as it arrives from the client) and the result can be too:
    each tile is converted on its way in and out, never the whole frame.
    """
    h, w = image.shape[:2]
    result = np.zeros((h, w), out_dtype)

    def emit(y0: int, band: np.ndarray) -> None:
        result[y0:y0 + band.shape[0]] = band

    done = run_banded(h, w, lambda y0, y1: image[y0:y1], emit, infer, tile, margin, align,
                      skip_blank=skip_blank, progress=progress, should_stop=should_stop, out_dtype=out_dtype,
                      region=region)
    return result if done else None


def whole_size(h: int, w: int, margin: int, align: int) -> tuple[int, int]:
    """Size of the padded canvas the reference whole-image pass runs on."""
    return round_up(h + 2 * margin, align), round_up(w + 2 * margin, align)


def run_banded(
    h: int,
    w: int,
    fetch: Callable[[int, int], np.ndarray],
    emit: Callable[[int, np.ndarray], None],
    infer: Callable[[np.ndarray], np.ndarray],
    tile: int | tuple[int, int],
    margin: int,
    align: int,
    skip_blank: bool = False,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    out_dtype: np.dtype = np.float32,
    region: tuple[int, int, int, int] | None = None,
) -> bool:
    """Tiled inference over an image that is never whole in memory; False when stopped early.

    The tiles are run one row of tiles at a time. `fetch(y0, y1)` returns image rows
    y0..y1-1 (each row is asked for once, top to bottom) and `emit(y0, band)` receives the
    finished result rows from y0 on. Only the rows the current tile row reads are held
    (tile height + one tile step, at most), so memory does not grow with the image.
    With a `region` (see ink_region) only its tiles are run and only the rows they read
    fetched; the rest of the result is emitted blank.
    """
    tiles = plan(h, w, tile, margin, align, region)
    th, tw = tile_shape(tile)
    ry0, ry1 = (region[0], region[1]) if region is not None else (0, h)
    if should_stop is not None and should_stop():
        return False
    _emit_blank(emit, 0, ry0, w, th, out_dtype)
    buf = np.zeros((th, tw), out_dtype)  # infer keeps this dtype: no numpy casts per tile
    window: np.ndarray | None = None  # image rows win_y0..have-1
    win_y0 = have = max(ry0 - margin, 0)
    done = 0
    i = 0
    while i < len(tiles):
        oy0, oy1 = tiles[i].oy0, tiles[i].oy1
        row = []
        while i < len(tiles) and tiles[i].oy0 == oy0:
            row.append(tiles[i])
            i += 1
        lo, hi = max(oy0 - margin, 0), min(oy0 - margin + th, h)
        parts = [] if window is None else [window[lo - win_y0:]]
        if hi > have:
            if should_stop is not None and should_stop():
                return False
            rows = np.asarray(fetch(have, hi))
            if rows.shape != (hi - have, w):
                raise ValueError(f"rows {have}..{hi} arrived with shape {rows.shape}, not {(hi - have, w)}")
            parts.append(rows)
            have = hi
        window = parts[0] if len(parts) == 1 else np.concatenate(parts)
        win_y0 = lo
        band = np.zeros((oy1 - oy0, w), out_dtype)
        for t in row:
            if should_stop is not None and should_stop():
                return False
            local = Tile(t.y - win_y0, t.x, t.oy0 - win_y0, t.ox0, t.oy1 - win_y0, t.ox1)
            if not (skip_blank and window_is_blank(window, local, (th, tw))):
                y = infer(extract(window, local, buf))
                band[:, t.ox0:t.ox1] = y[t.oy0 - t.y:t.oy1 - t.y, t.ox0 - t.x:t.ox1 - t.x]
            done += 1
            if progress is not None:
                progress(done, len(tiles))
        emit(oy0, band)
    _emit_blank(emit, ry1, h, w, th, out_dtype)
    return True


def _emit_blank(emit: Callable[[int, np.ndarray], None], y0: int, y1: int, w: int, rows: int,
                dtype: np.dtype) -> None:
    """Blank result rows y0..y1-1, a tile's height at a time (a tall blank margin of a huge
    frame is never one array)."""
    for y in range(y0, y1, max(rows, 1)):
        emit(y, np.zeros((min(rows, y1 - y), w), dtype))
