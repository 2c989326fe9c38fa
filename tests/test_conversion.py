"""Round trips for every input kind, and the conventions of the output."""
import numpy as np
import pytest

from linerelifer_addon.core.conversion import DRAWING, PASS, blend, from_coverage, over, to_coverage

from conftest import line_image

COV = line_image(60, 80, seed=3)


def _drawing(kind: str) -> np.ndarray:
    lum = 1.0 - COV  # dark lines on white
    if kind == "gray8":
        return np.rint(lum * 255).astype(np.uint8)
    if kind == "gray16":
        return np.rint(lum * 65535).astype(np.uint16)
    if kind == "gray1":
        return np.rint(lum * 255).astype(np.uint8)[:, :, None]
    if kind == "rgb8":
        return np.rint(np.dstack([lum] * 3) * 255).astype(np.uint8)
    if kind == "rgba_opaque":
        return np.rint(np.dstack([lum] * 3 + [np.ones_like(lum)]) * 255).astype(np.uint8)
    if kind == "gray_alpha":
        return np.rint(np.dstack([lum, np.ones_like(lum)]) * 255).astype(np.uint8)
    if kind == "float":
        return np.dstack([lum] * 3).astype(np.float32)
    if kind == "white_on_black":
        return np.rint(COV * 255).astype(np.uint8)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["gray8", "gray16", "gray1", "rgb8", "rgba_opaque", "gray_alpha", "float",
                                  "white_on_black"])
def test_drawing_round_trip(kind: str) -> None:
    pixels = _drawing(kind)
    line = to_coverage(pixels)
    assert line.mode == DRAWING
    tol = 1.5 / 255 if pixels.dtype == np.uint8 else 1e-3
    assert np.abs(line.coverage - COV).max() <= tol
    back = from_coverage(line, line.coverage)
    assert back.shape == pixels.shape and back.dtype == pixels.dtype
    assert np.abs(back.astype(np.float64) - pixels.astype(np.float64)).max() <= 1


def test_freestyle_pass_round_trip_and_colour() -> None:
    rgba = np.zeros((60, 80, 4), np.float32)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 0.2, 0.1, 0.6
    rgba[..., 3] = COV
    line = to_coverage(rgba)
    assert line.mode == PASS
    np.testing.assert_allclose(line.coverage, COV)
    np.testing.assert_allclose(line.line_color, [0.2, 0.1, 0.6], atol=1e-5)
    refined = np.zeros_like(COV)
    refined[10:20, 10:20] = 1.0  # new ink away from the old lines takes the line colour
    out = from_coverage(line, refined)
    assert out.shape == rgba.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 3], refined)
    np.testing.assert_allclose(out[15, 15, :3], [0.2, 0.1, 0.6], atol=1e-5)
    assert np.allclose(from_coverage(line, line.coverage), rgba)


def test_strength_blends_and_colour_override() -> None:
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., 3] = np.rint(COV * 255)
    line = to_coverage(rgba)
    refined = np.ones_like(COV)
    half = from_coverage(line, refined, strength=0.5, color=(1.0, 0.0, 0.0))
    expected = np.rint((COV + (1 - COV) * 0.5) * 255)
    assert np.abs(half[..., 3].astype(int) - expected).max() <= 1
    assert (half[..., 0] == 255).all() and (half[..., 1] == 0).all()
    assert np.array_equal(from_coverage(line, refined, strength=0.0), rgba)
    with pytest.raises(ValueError, match="0..2"):
        from_coverage(line, refined, strength=2.5)
    with pytest.raises(ValueError):
        from_coverage(line, refined, strength=-0.1)


def test_strength_above_one_exaggerates_the_style() -> None:
    orig = np.array([[0.0, 0.5, 1.0, 1.0]], np.float32)
    refined = np.array([[0.2, 0.7, 0.8, 1.0]], np.float32)
    assert np.allclose(blend(orig, refined, 1.0), refined)
    assert np.allclose(blend(orig, refined, 2.0), [[0.4, 0.9, 0.6, 1.0]])  # each change doubled
    assert np.allclose(blend(orig, refined, 1.5), [[0.3, 0.8, 0.7, 1.0]])
    assert np.clip(blend(orig, np.ones_like(orig), 2.0), 0, 1).max() <= 1.0  # still coverage


def test_light_background_stays_light_and_coloured_paper_kept() -> None:
    paper = np.array([0.95, 0.9, 0.8], np.float32)
    ink = np.array([0.1, 0.1, 0.3], np.float32)
    img = paper * (1 - COV[..., None]) + ink * COV[..., None]
    line = to_coverage(img)
    assert line.mode == DRAWING and np.abs(line.coverage - COV).max() < 0.02
    out = from_coverage(line, np.zeros_like(COV))
    assert np.abs(out - paper).max() < 0.02  # lines removed → only paper remains


def test_blank_and_bad_inputs() -> None:
    white = np.full((20, 30), 255, np.uint8)
    line = to_coverage(white)
    assert line.coverage.max() == 0.0
    assert np.array_equal(from_coverage(line, line.coverage), white)
    nan = np.full((10, 10, 3), np.nan, np.float32)
    assert np.isfinite(to_coverage(nan).coverage).all()
    with pytest.raises(ValueError):
        to_coverage(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError):
        to_coverage(np.zeros((5, 5, 7), np.uint8))


def test_over_composites_lines_on_render() -> None:
    top = np.zeros((2, 2, 4), np.float32)
    top[0, 0] = [0, 0, 0, 1]
    top[0, 1] = [0, 0, 0, 0.5]
    bottom = np.ones((2, 2, 4), np.float32)
    out = over(top, bottom)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(out[0, 1], [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(out[1, 1], [1, 1, 1, 1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("light", [True, False])
def test_gray_drawings_convert_through_their_levels_as_rgb_would(dtype, light: bool) -> None:
    """One-channel 8/16-bit drawings take the level-table path; it must agree with the
    per-pixel path the same drawing takes as RGB (paper, ink, coverage and colours)."""
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(5)
    lum = (1.0 - COV) if light else COV
    gray = np.rint(np.clip(lum * 0.8 + 0.1 + rng.normal(0, 0.01, lum.shape), 0, 1) * top).astype(dtype)
    fast, slow = to_coverage(gray), to_coverage(np.dstack([gray] * 3))
    assert fast.channels == 0 and slow.channels == 3
    np.testing.assert_allclose(fast.coverage, slow.coverage, atol=1e-5)
    np.testing.assert_allclose(fast.line_color, slow.line_color, atol=1e-5)
    np.testing.assert_allclose(fast.paper_color, slow.paper_color, atol=1e-5)
    assert fast.coverage.max() > 0.9 and (fast.coverage == 0).mean() > 0.5


@pytest.mark.parametrize("color", [None, (0.3, 0.3, 0.3)])
@pytest.mark.parametrize("strength", [0.0, 1.0, 1.7])
def test_gray_drawings_write_back_as_rgb_would(color, strength: float) -> None:
    """One-channel drawings are written back in their one channel; the result must be the
    luminance the three-channel path gives for the same drawing as RGB."""
    gray = _drawing("gray8")
    refined = np.clip(COV * 0.7 + np.roll(COV, 3, axis=1) * 0.5, 0, 1)
    fast = from_coverage(to_coverage(gray), refined, strength=strength, color=color)
    slow = from_coverage(to_coverage(np.dstack([gray] * 3)), refined, strength=strength, color=color)
    assert fast.shape == gray.shape and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - slow[..., 0].astype(int)).max() <= 1
    if strength == 0.0 and color is None:
        np.testing.assert_array_equal(fast, gray)


@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("color", [None, (0.8, 0.1, 0.3)])
@pytest.mark.parametrize("adjacent", [True, False])
def test_integer_passes_write_back_as_float_passes_would(channels: int, dtype, color, adjacent: bool) -> None:
    """8/16-bit passes are written back in their own integers; they must equal what the float
    path gives for the same pass as float32, rounded to the file's type. A pass whose
    channels are not adjacent in memory (every other channel of a wider array) takes the
    per-channel path instead of the whole-pixel one."""
    top = np.iinfo(dtype).max
    px = np.zeros(COV.shape + (channels,), np.float32)
    # Each pixel its own colour: where the input had ink its colour is kept, elsewhere the
    # typical one is used, and the two must give different results.
    jitter = np.random.default_rng(3).uniform(-0.05, 0.05, COV.shape + (channels - 1,))
    px[..., :-1] = np.linspace(0.1, 0.9, channels - 1) + jitter
    px[..., -1] = COV
    ints = np.rint(px * top).astype(dtype)
    if not adjacent:
        wide = np.zeros(COV.shape + (2 * channels,), dtype)
        wide[..., ::2] = ints
        ints = wide[..., ::2]
    refined = np.clip(np.roll(COV, 2, axis=0) * 0.9, 0, 1)
    fast = from_coverage(to_coverage(ints), refined, strength=1.3, color=color)
    slow = from_coverage(to_coverage(ints.astype(np.float32) / top), refined, strength=1.3, color=color)
    assert fast.dtype == dtype and fast.shape == ints.shape
    assert np.abs(fast.astype(np.int64) - np.rint(slow * top).astype(np.int64)).max() <= 1
