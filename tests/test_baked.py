"""Baked-line mode (core/baked.py): Freestyle's strokes found by their colour and width; every
other pixel of a shaded render is kept bit for bit, on dark and on light ground."""

from __future__ import annotations

import numpy as np
import pytest

from linerelifer_addon.core.baked import BakedLinesError, apply, find_lines

from conftest import line_image

H, W = 96, 128
BLACK = (0.0, 0.0, 0.0)


def _shaded(ground: float, seed: int = 0) -> np.ndarray:
    """A noisy shaded disc (a sphere lit from the top left) on a flat ground, sRGB-like floats."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r = np.hypot(yy - 48, xx - 60) / 40.0
    shade = np.clip(0.15 + 0.8 * (1 - r) * (1 - (yy - 20) / 120) * (1 - (xx - 20) / 200), 0.08, 1.0)
    img = np.where((r < 1)[..., None], shade[..., None] * np.array([0.5, 0.6, 0.9], np.float32),
                   np.float32(ground))
    img = img + rng.normal(0, 0.01, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _bake(render: np.ndarray, coverage: np.ndarray, color=BLACK) -> np.ndarray:
    """Freestyle's compositing: line colour over the render by the stroke's coverage."""
    c = coverage[..., None]
    return (render * (1 - c) + np.asarray(color, np.float32) * c).astype(np.float32)


@pytest.mark.parametrize("ground", [0.12, 0.85], ids=["dark", "light"])
def test_only_line_pixels_change(ground: float) -> None:
    cov = line_image(H, W, seed=4, width=3.0)
    baked = _bake(_shaded(ground), cov)
    lines = find_lines(baked, [BLACK], thickness_px=3.0)
    assert lines.mask.sum() > 0.5 * (cov > 0.99).sum(), "most stroke cores were not found"
    assert not (lines.mask & (cov == 0)).any(), "a pixel off the lines was taken for a line"
    refined = np.clip(lines.coverage * 0.4, 0, 1)  # a style that thins every line a lot
    out = apply(baked, lines, refined)
    off = cov == 0
    np.testing.assert_array_equal(out[off], baked[off])  # bit for bit
    assert np.abs(out[lines.mask] - baked[lines.mask]).max() > 0.1, "the lines were not redrawn"


def test_areas_of_the_line_colour_are_the_render_s() -> None:
    """A shadow as black as the lines, wider than a line, is left alone."""
    render = _shaded(0.7)
    render[10:40, 5:35] = 0.0
    cov = np.zeros((H, W), np.float32)
    cov[60:63, 10:120] = 1.0
    baked = _bake(render, cov)
    lines = find_lines(baked, [BLACK], thickness_px=3.0)
    assert not lines.mask[10:40, 5:35].any()
    assert lines.mask[60:63, 20:110].all()
    out = apply(baked, lines, np.zeros_like(lines.coverage))
    np.testing.assert_array_equal(out[~lines.mask], baked[~lines.mask])


def test_lines_the_colour_of_the_render_are_refused() -> None:
    render = np.full((H, W, 3), 0.03, np.float32)  # dark ground ...
    cov = line_image(H, W, seed=5, width=3.0)
    baked = _bake(render, cov, color=(0.05, 0.05, 0.05))  # ... and lines nearly as dark
    with pytest.raises(BakedLinesError, match="Freestyle pass"):
        find_lines(baked, [(0.05, 0.05, 0.05)], thickness_px=3.0)


def test_no_strokes_no_mask() -> None:
    lines = find_lines(_shaded(0.5), [BLACK], thickness_px=2.0)
    assert not lines.mask.any() and not lines.coverage.any()
