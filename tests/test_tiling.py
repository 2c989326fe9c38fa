"""Exact tiling: the tiled result equals the whole-image pass."""
import numpy as np
import pytest

from linerelifer_addon.core import tiling
from linerelifer_addon.worker.engine import PRECISION_ENV, Engine, choose_precision

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


@pytest.mark.parametrize("style", ["random_style", "default_style"])
def test_tiled_equals_untiled(style: str, request: pytest.FixtureRequest) -> None:
    # The trained style too: its margin once covered only some output positions of the stride.
    engine = Engine(request.getfixturevalue(style), precision="float32")  # bfloat16: its own test below
    img = line_image(1000, 700, seed=1)
    whole = engine.refine_whole(img)
    worst = 0.0
    for tile in (176, 256, 520, (176, 520)):  # none divides the image
        tiled = engine.refine(img, tile=tile, skip_blank=False)
        assert tiled.shape == img.shape
        worst = max(worst, float(np.abs(tiled - whole).max()))
    assert worst <= 1e-4
    # The check can fail: a margin smaller than the receptive field breaks exactness.
    small = tiling.run_tiled(img, engine._infer, 256, engine.margin - 16, engine.align)
    assert np.abs(small - whole).max() > max(10 * worst, 1e-5)


def test_bfloat16_stays_close_to_float32_tiled_or_not(default_style) -> None:
    """bfloat16 (the fast path on CPUs that have it) changes little, tiled or not.

    Tile shapes change how oneDNN blocks bfloat16 sums, so seams are not bit-exact as in
    float32, but stay far below one 8-bit grey level (0.004)."""
    f32, bf16 = Engine(default_style, precision="float32"), Engine(default_style, precision="bfloat16")
    assert {l.compute_dtype for l in f32.model.layers} == {"float32"}
    assert bf16.model.get_layer("mid0").compute_dtype == "bfloat16"
    assert bf16.model.layers[-1].compute_dtype == "float32"  # the coverage itself keeps float32
    img = line_image(600, 500, seed=3)
    whole = bf16.refine_whole(img)
    assert np.abs(bf16.refine(img, tile=256, skip_blank=False) - whole).max() <= 2e-3
    diff = np.abs(whole - f32.refine_whole(img))
    assert 0 < diff.max() <= 0.03 and diff.mean() < 1e-3
    assert bf16.blank_output() <= 1e-3


def test_precision_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRECISION_ENV, "float32")
    assert choose_precision() == "float32"
    assert choose_precision("bfloat16") == "bfloat16"  # an explicit choice wins over the environment
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(ValueError, match=PRECISION_ENV):
        choose_precision()


def test_blank_tiles_skipped_only_when_blank_maps_to_blank(default_style) -> None:
    engine = Engine(default_style)
    assert engine.blank_output() <= 1e-3, "the default style must map blank paper to blank"
    img = np.zeros((600, 900), np.float32)
    img[100:300, 100:300] = line_image(200, 200, seed=2)
    totals: dict[bool, int] = {}
    skipped = engine.refine(img, tile=256, skip_blank=True, progress=lambda d, t: totals.update({True: t}))
    full = engine.refine(img, tile=256, skip_blank=False, progress=lambda d, t: totals.update({False: t}))
    assert np.abs(skipped - full).max() <= 1e-3
    # Only the ink's region (200² grown by the margin) is run: 4 tiles of 256², not 24.
    assert (totals[True], totals[False]) == (4, 24)
    assert not engine.refine(np.zeros((300, 300), np.float32), skip_blank=True).any()


def _streamed(img: np.ndarray, infer, tile, margin: int, align: int,
              region: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """run_banded over `img` with blank tiles skipped: the result (each band emitted once) and
    the row ranges it fetched, in order."""
    h, w = img.shape
    got = np.full((h, w), np.nan, np.float32)
    fetched: list[tuple[int, int]] = []

    def fetch(y0: int, y1: int) -> np.ndarray:
        fetched.append((y0, y1))
        return img[y0:y1]

    def emit(y0: int, band: np.ndarray) -> None:
        assert np.isnan(got[y0:y0 + band.shape[0]]).all(), "a band was emitted twice"
        got[y0:y0 + band.shape[0]] = band

    assert tiling.run_banded(h, w, fetch, emit, infer, tile, margin, align, skip_blank=True, region=region)
    return got, fetched


@pytest.mark.parametrize("h, w, tile", [(1000, 700, 256), (1000, 700, (176, 520)), (1000, 700, (520, 176)),
                                        (1, 20000, 512), (20000, 1, 512), (1, 1, 176), (433, 97, 512)])
def test_banded_equals_whole(h: int, w: int, tile) -> None:
    """The streamed run: the whole-image result, every row fetched once, top to bottom,
    and never more than a tile row's window held."""
    margin, align = 40, 8
    rng = np.random.default_rng(h + w)
    img = np.where(rng.random((h, w)) < 0.002, 1.0, 0.0).astype(np.float32)

    def infer(x: np.ndarray) -> np.ndarray:  # a local, shift-invariant function (radius 3 < margin)
        out = x.copy()
        for d in (1, 2, 3):
            out += 0.5 ** d * (np.roll(x, d, 0) + np.roll(x, -d, 0) + np.roll(x, d, 1) + np.roll(x, -d, 1))
        return out

    canvas = np.pad(img, margin, mode="symmetric")  # the frame goes on past its edges, mirrored
    expected = infer(canvas)[margin:margin + h, margin:margin + w]
    assert np.array_equal(tiling.run_tiled(img, infer, tile, margin, align, skip_blank=True), expected)
    got, fetched = _streamed(img, infer, tile, margin, align)
    np.testing.assert_array_equal(got, expected)
    assert fetched[0][0] == 0 and fetched[-1][1] == h
    assert all(a[1] == b[0] for a, b in zip(fetched, fetched[1:])), "rows fetched twice or skipped"
    assert max(y1 - y0 for y0, y1 in fetched) <= tiling.tile_shape(tile)[0]
    asked: list[int] = []
    assert not tiling.run_banded(h, w, lambda y0, y1: asked.append(y0) or img[y0:y1], lambda y0, band: None,
                                 infer, tile, margin, align, should_stop=lambda: True)
    assert asked == [], "a stopped run asked for rows"


@pytest.mark.parametrize("box", [(300, 420, 250, 330), (0, 37, 0, 700), (961, 1000, 650, 700), (500, 501, 3, 4)])
def test_ink_region_equals_whole_and_reads_only_near_the_ink(box) -> None:
    """Only the ink's box grown by the margin is fetched and run; the result is the whole
    frame's, to the bit, with a network that reads its whole margin (a box filter as wide as
    the receptive field), and a region grown by less than the margin is caught."""
    import cv2

    h, w, margin, align, tile = 1000, 700, 40, 8, 256
    rng = np.random.default_rng(sum(box))
    img = np.zeros((h, w), np.float32)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.05
    img[[y0, y1 - 1], x0] = img[y0, [x0, x1 - 1]] = 1.0  # ink on every side of the box
    assert tiling.ink_box(img) == box and tiling.ink_box(np.zeros((5, 5))) is None
    calls = []

    def infer(x: np.ndarray) -> np.ndarray:  # 0/1 ink: the box sums are exact, wherever they start
        calls.append(x.shape)
        return cv2.blur(x, (2 * margin + 1, 2 * margin + 1), borderType=cv2.BORDER_CONSTANT)

    expected = infer(np.pad(img, margin, mode="symmetric"))[margin:margin + h, margin:margin + w]
    region = tiling.ink_region(box, h, w, margin, align)
    assert region[0] % align == region[2] % align == 0
    calls.clear()
    got, fetched = _streamed(img, infer, tile, margin, align, region)
    np.testing.assert_array_equal(got, expected)
    assert len(calls) < len(tiling.plan(h, w, tile, margin, align))
    assert fetched[0][0] >= max(y0 - 2 * margin - align, 0), "rows far above the ink were fetched"
    assert all(a[1] == b[0] for a, b in zip(fetched, fetched[1:]))
    np.testing.assert_array_equal(
        tiling.run_tiled(img, infer, tile, margin, align, skip_blank=True, region=region), expected)
    short = tiling.ink_region(box, h, w, margin - 8, align)
    if short != region:
        assert not np.array_equal(
            tiling.run_tiled(img, infer, tile, margin, align, skip_blank=True, region=short), expected)
    with pytest.raises(ValueError, match="ink box"):
        tiling.ink_region((0, h + 1, 0, w), h, w, margin, align)


def test_tiles_are_chosen_by_the_ones_that_run(default_style) -> None:
    """A figure over a line along the frame's bottom: the ink's box is most of the frame, but
    the frame's own tiles above the line are blank and skipped. With the ink map the engine
    computes no more than the box's own tiling would, and the same result."""
    from linerelifer_addon.core import protocol
    from linerelifer_addon.worker.litert import LiteRTEngine

    engine = LiteRTEngine(default_style)
    img = np.zeros((2160, 3840), np.float32)
    img[200:1100, 1500:2300] = line_image(900, 800, seed=5)
    img[1700:1703, :] = 1.0
    box = tiling.ink_box(img)
    cell, cells = tiling.ink_cells(img, box)
    assert cell == 64 and cells.shape == (34, 60) and cells[1700 // 64].all() and not cells[0].any()
    squares = img[:33 * 64].reshape(33, 64, 60, 64).any(axis=(1, 3))  # 2160 rows: 33 squares and 48 rows
    assert np.array_equal(cells[:33], squares)
    assert np.array_equal(cells[33], img[33 * 64:].reshape(48, 60, 64).any(axis=(0, 2)))
    assert not tiling.ink_cells(np.zeros((100, 100), np.float32), None)[1].any()
    packed = protocol.pack_cells(cell, cells)
    assert np.array_equal(protocol.unpack_cells(packed, 2160, 3840)[1], cells)
    with pytest.raises(ValueError, match="does not fit"):
        protocol.unpack_cells(packed, 1080, 1920)
    computed: dict[str, int] = {}
    results = {}
    infer = engine._infer
    for name, map_ in (("box only", None), ("ink map", (cell, cells))):
        computed[name] = 0

        def counting(x: np.ndarray, name: str = name) -> np.ndarray:
            computed[name] += x.size
            return infer(x)
        engine._infer = counting
        out = np.zeros(img.shape, np.float32)
        assert engine.refine_banded(img.shape, lambda a, b: img[a:b], lambda y0, band: out.__setitem__(
            slice(y0, y0 + band.shape[0]), band), ink_box=box, ink_cells=map_)
        results[name] = out
    assert computed["ink map"] < 0.95 * computed["box only"], computed
    assert np.abs(results["ink map"] - results["box only"]).max() <= 1e-3


def test_auto_tile_takes_the_cheapest_shape_within_the_memory_bound() -> None:
    """Tiles need not be square: 1080p takes one row of two 1184×1056 tiles (2.57 Mpx computed,
    where two squares of 1184² computed 2.87). Whatever the frame, the shape is the cheapest of
    all on the 16 px grid with at most hi² pixels and sides up to 2·hi (a brute-force search)."""
    m, a, hi = 48, 8, 1280
    assert tiling.auto_tile(1080, 1920, m, a, hi=hi) == (1184, 1056)
    assert tiling.tile_cost(1080, 1920, (1184, 1056), m) < 0.9 * tiling.tile_cost(1080, 1920, 1184, m)
    sides = range(112, 2 * hi + 1, 16)
    for h, w in [(1080, 1920), (2160, 3840), (720, 1280), (500, 3100), (3020, 500), (100, 100), (1, 9000)]:
        th, tw = tiling.auto_tile(h, w, m, a, hi=hi)
        assert th * tw <= hi * hi and max(th, tw) <= 2 * hi and th % a == tw % a == 0 and min(th, tw) > 2 * m
        brute = min(tiling.tile_cost(h, w, (y, x), m) for y in sides for x in sides if y * x <= hi * hi)
        assert tiling.tile_cost(h, w, (th, tw), m) == brute, (h, w)


def test_lean_tiles_are_taken_when_large_ones_save_little() -> None:
    """With a lean bound, the best shape within it is taken unless the larger one saves over 5 %."""
    m, a = 48, 8
    big = tiling.auto_tile(780, 2060, m, a, hi=1280)
    lean = tiling.auto_tile(780, 2060, m, a, hi=1280, lo_memory=896)
    assert big == (880, 1136) and lean == (880, 784)
    assert tiling.tile_cost(780, 2060, lean, m) <= 1.05 * tiling.tile_cost(780, 2060, big, m)
    # 1080p: the lean bound's best (four tiles) computes 10 % more, so the larger tiles stay.
    assert tiling.auto_tile(1080, 1920, m, a, hi=1280, lo_memory=896) == (1184, 1056)


def test_a_requested_tile_never_exceeds_the_frame_and_its_margins(default_style) -> None:
    """`--tile 20000` on a small frame runs one tile the frame's size (plus margins), not a
    20000² one of padding that could exhaust the worker's memory; same result."""
    from linerelifer_addon.worker.litert import LiteRTEngine

    engine = LiteRTEngine(default_style)
    m, a = engine.margin, engine.align
    assert engine.tile_for(100, 120, 20000) == (tiling.round_up(100 + 2 * m, a), tiling.round_up(120 + 2 * m, a))
    assert engine.tile_for(1000, 1200, 256) == (256, 256)  # smaller requests stand
    img = line_image(100, 120, seed=2)
    np.testing.assert_allclose(engine.refine(img, tile=20000), engine.refine(img), atol=1e-5)
