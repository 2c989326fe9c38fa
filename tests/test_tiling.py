"""Exact tiling: the tiled result equals the whole-image pass."""
import numpy as np
import pytest

from linerelifer_addon.core import tiling
from linerelifer_addon.worker.engine import Engine

from conftest import line_image


def test_plan_covers_every_pixel_once() -> None:
    tiles = tiling.plan(1000, 700, 256, 40, 8)
    hits = np.zeros((1000, 700), np.int32)
    for t in tiles:
        assert t.y % 8 == (-40) % 8 and t.x % 8 == (-40) % 8
        hits[t.oy0:t.oy1, t.ox0:t.ox1] += 1
    assert (hits == 1).all()


def test_tile_size_checks() -> None:
    with pytest.raises(ValueError):
        tiling.plan(10, 10, 100, 40, 8)  # not a multiple of the stride
    with pytest.raises(ValueError):
        tiling.plan(10, 10, 80, 40, 8)  # no room inside the margins


def test_tiled_equals_untiled(random_style) -> None:
    engine = Engine(random_style)
    img = line_image(1000, 700, seed=1)
    whole = engine.refine_whole(img)
    worst = 0.0
    for tile in (176, 256, 520):  # none divides the image
        tiled = engine.refine(img, tile=tile, skip_blank=False)
        assert tiled.shape == img.shape
        worst = max(worst, float(np.abs(tiled - whole).max()))
    assert worst <= 1e-4
    # The check can fail: a margin smaller than the receptive field breaks exactness.
    small = tiling.run_tiled(img, engine._infer, 256, engine.margin - 16, engine.align)
    assert np.abs(small - whole).max() > max(10 * worst, 1e-5)


def test_blank_tiles_skipped_only_when_blank_maps_to_blank(default_style) -> None:
    engine = Engine(default_style)
    assert engine.blank_output(256) <= 1e-3, "the default style must map blank paper to blank"
    img = np.zeros((600, 900), np.float32)
    img[100:300, 100:300] = line_image(200, 200, seed=2)
    skipped = engine.refine(img, tile=256, skip_blank=True)
    full = engine.refine(img, tile=256, skip_blank=False)
    assert np.abs(skipped - full).max() <= 1e-3
