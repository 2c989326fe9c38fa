"""What every backend's engine shares: the style's tiling metadata and the tile loop.

A backend only supplies `_infer` (one tile through the network); tile sizes, blank-tile
skipping and banded streaming are the same for all, so every backend's tiled result equals
its whole-image result the same way (see core.tiling).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core import tiling
from ..core.styles import StyleError, read_meta

# A blank tile is skipped (left blank) only when the style maps blank to blank this closely.
BLANK_TOLERANCE = 1e-3


class TiledEngine:
    """A loaded style: tiling metadata plus the backend's tile function."""

    backend = ""
    precision = "float32"

    def __init__(self, style_path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(style_path)
        self.meta = meta if meta is not None else read_meta(self.path)
        try:
            self.margin = int(self.meta["margin"])
            self.align = int(self.meta["align"])
        except (KeyError, TypeError, ValueError):
            raise StyleError(f"style metadata of {self.path} has no valid margin and align; re-export the style") from None
        self._blank_max: float | None = None

    @property
    def max_tile(self) -> int:
        """The frame-by-frame choice takes tiles of at most max_tile² pixels: that bounds a
        tile's activations.

        A network with full-resolution feature maps (stride 1, like the seed's) holds far more
        memory per tile pixel, so it keeps to smaller tiles.
        """
        return 1280 if self.align > 1 else 768

    @property
    def lean_tile(self) -> int:
        """Tiles up to lean_tile² pixels are preferred when larger ones save little work."""
        return min(896, self.max_tile)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """One tile through the network; float16 in gives float16 out, else float32."""
        raise NotImplementedError

    def blank_output(self) -> float:
        """Largest output blank paper gives away from a tile's edges (measured once).

        Farther than the margin from a blank tile's edges every output pixel sees only zeros,
        whatever the tile's size, so one small tile holding every position of the stride tells
        it. The border sees the convolutions' zero padding of intermediate features and may
        glow even when blank paper maps to blank; it is never copied into a result.
        """
        if self._blank_max is None:
            m, side = self.margin, 2 * self.margin + 8 * self.align
            y = self._infer(np.zeros((side, side), np.float32))
            self._blank_max = float(y[m:side - m, m:side - m].max())
        return self._blank_max

    def tile_for(self, h: int, w: int, tile: int | tuple[int, int] | None) -> tuple[int, int]:
        """The requested tile size (a side, or height and width) on the stride grid, or the
        best tile shape for the frame (0/None)."""
        if not tile:
            return tiling.auto_tile(h, w, self.margin, self.align, hi=self.max_tile, lo_memory=self.lean_tile)
        # Never larger than the frame and its margins: a requested 20000 px tile on a small
        # frame would only compute padding, and could exhaust the worker's memory doing so.
        th, tw = (tiling.round_up(min(max(side, 2 * self.margin + self.align), n + 2 * self.margin), self.align)
                  for side, n in zip(tiling.tile_shape(tile), (h, w)))
        return th, tw

    def refine(
        self,
        coverage: np.ndarray,
        tile: int | tuple[int, int] | None = None,
        skip_blank: bool = True,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        out_dtype: np.dtype = np.float32,
    ) -> np.ndarray | None:
        """Refined coverage by exact tiling; None when stopped."""
        image = coverage if coverage.dtype in (np.float16, np.float32) else coverage.astype(np.float32)
        box = tiling.ink_box(image) if skip_blank else None
        cells = tiling.ink_cells(image, box) if box is not None else None
        return self._run(image.shape[:2], box, cells, skip_blank, tile, lambda t, skip, region: tiling.run_tiled(
            image, self._infer, t, self.margin, self.align, skip_blank=skip, progress=progress,
            should_stop=should_stop, out_dtype=out_dtype, region=region))

    def refine_banded(
        self,
        shape: tuple[int, int],
        fetch: Callable[[int, int], np.ndarray],
        emit: Callable[[int, np.ndarray], None],
        tile: int | None = None,
        skip_blank: bool = True,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        out_dtype: np.dtype = np.float32,
        ink_box: tuple[int, int, int, int] | None | bool = False,
        ink_cells: tuple[int, np.ndarray] | None = None,
    ) -> bool:
        """`refine` for an image that arrives and leaves in bands of rows (see tiling.run_banded).

        `ink_box` is where the sender found ink (tiling.ink_box; None: nowhere, False: not
        known): with blank tiles skipped, only the rows and columns near it are fetched and run.
        `ink_cells` (tiling.ink_cells), when sent, lets the tile shape be chosen by the tiles
        that will actually run.
        """
        h, w = shape
        return self._run((h, w), ink_box, ink_cells, skip_blank, tile, lambda t, skip, region: tiling.run_banded(
            h, w, fetch, emit, self._infer, t, self.margin, self.align, skip_blank=skip, progress=progress,
            should_stop=should_stop, out_dtype=out_dtype, region=region))

    def _run(self, shape: tuple[int, int], box: tuple[int, int, int, int] | None | bool,
             cells: tuple[int, np.ndarray] | None, skip_blank: bool,
             tile: int | tuple[int, int] | None, run: Callable[..., Any]) -> Any:
        """Choose the tile shape and `run(tile, skip, region)`.

        A style that maps blank paper to blank (within BLANK_TOLERANCE) leaves everything
        farther than its margin from the ink blank, so with blank tiles skipped only the
        ink's region is computed: a figure filling the middle of a 1080p frame costs its own
        area, not the frame's. The region is cut into the tiles chosen for its size or for
        the frame's, whichever computes fewer pixels once tiles without ink are skipped (a
        figure over a line along the frame's bottom leaves blank tiles above that line).
        """
        h, w = shape
        frame_tile = self.tile_for(h, w, tile)
        if not (skip_blank and self.blank_output() <= BLANK_TOLERANCE):
            return run(frame_tile, False, None)
        if box is False:
            return run(frame_tile, True, None)
        region = tiling.ink_region(box, h, w, self.margin, self.align) or (0, 0, 0, 0)
        rh, rw = max(region[1] - region[0], 1), max(region[3] - region[2], 1)
        choices = [(self.tile_for(rh, rw, tile), region)]
        if cells is not None:  # the frame's own tiling, whose blank tiles are skipped too
            choices += [(frame_tile, region), (frame_tile, None)]
        best: tuple[int, tuple[int, int], tuple[int, int, int, int] | None] | None = None
        for t, area in choices:
            tiles = tiling.plan(h, w, t, self.margin, self.align, area)
            n = len(tiles) if cells is None else tiling.tiles_with_ink(tiles, t, h, w, *cells)
            cost = n * (t[0] * t[1] + tiling.TILE_OVERHEAD)
            if best is None or cost < best[0]:
                best = (cost, t, area)
        return run(best[1], True, best[2])

    def refine_whole(self, coverage: np.ndarray) -> np.ndarray:
        """The reference: one pass over the mirror-padded image (what tiling must equal)."""
        h, w = coverage.shape
        ph, pw = tiling.whole_size(h, w, self.margin, self.align)
        m = self.margin
        canvas = tiling.mirror_pad(np.asarray(coverage, np.float32), m, ph - h - m, m, pw - w - m)
        return self._infer(canvas)[m:m + h, m:m + w]
