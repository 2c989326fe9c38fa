"""Data side of training/: synthesis, degradation, preparation, sampling, eval set."""

import re

import cv2
import numpy as np
import pytest

from training.dataset import PairSampler
from training.degrade import add_gap, degrade
from training.evalset import EVAL_SEED_BASE, make_evalset
from training.metrics import gap_closed, line_prf, speck_removed
from training.prepare import centerline, load_drawing, prepare_folder
from training.synth import (MAX_INK_WIDTH, TIED_WIDTHS, Stroke, pen_stroke, render_inked, render_tied, render_uniform,
                            synth_pair, synth_sample)


def _ink(img):
    return img > 0.25


# ---------------------------------------------------------------- synth


def test_synth_is_deterministic_per_seed():
    a_in, a_tg = synth_pair(7)
    b_in, b_tg = synth_pair(7)
    c_in, c_tg = synth_pair(8)
    assert a_in.dtype == np.float32 and a_in.shape == (256, 256) and a_tg.shape == (256, 256)
    assert np.array_equal(a_in, b_in) and np.array_equal(a_tg, b_tg)
    assert not np.array_equal(a_in, c_in) and not np.array_equal(a_tg, c_tg)


def test_synth_ink_fraction_and_range():
    fractions = []
    for seed in range(8):
        x, y = synth_pair(seed)
        assert 0.0 <= x.min() and x.max() <= 1.0 and 0.0 <= y.min() and y.max() <= 1.0
        fractions.append(_ink(y).mean())
    assert all(0.03 <= f <= 0.2 for f in fractions), fractions
    assert 0.05 <= np.median(fractions) <= 0.15


def test_synth_size_parameter():
    x, y = synth_pair(3, size=96)
    assert x.shape == y.shape == (96, 96)
    assert _ink(y).any()


def _cross_section(img):
    """Ink mass per column of a horizontal stroke = its width in px."""
    return img.sum(axis=0)


def test_inked_stroke_varies_and_tapers_uniform_does_not():
    rng = np.random.default_rng(0)
    pts = np.stack([np.linspace(10, 150, 50), np.full(50, 20.3)], axis=1)
    stroke = pen_stroke(rng, pts)
    inked = _cross_section(render_inked([stroke], 40, 160, rng, max_width=4.0))
    uniform = _cross_section(render_uniform([stroke], 40, 160, 2.0))
    body = slice(30, 130)
    assert np.ptp(uniform[body]) < 0.05
    assert abs(uniform[body].mean() - 2.0) < 0.1
    assert np.ptp(inked[body]) > 0.5  # pressure changes the width
    assert inked.max() <= MAX_INK_WIDTH
    assert inked[11] < 0.5 * inked[body].mean() and inked[149] < 0.5 * inked[body].mean()  # tapered tips
    assert uniform[11] > 0.9 * uniform[body].mean()  # the uniform line keeps its width to the end


def _local_widths(cov, r=4):
    """Ink mass in a disc around each skeleton pixel over the disc diameter = local line width."""
    disc = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    cv2.circle(disc, (r, r), r, 1.0, -1)
    return (cv2.filter2D(cov, -1, disc) / (2 * r + 1))[centerline(cov)]


@pytest.mark.parametrize("seed", [0, 2, 11])
def test_synth_target_widths_vary_and_input_is_uniform(seed):
    s = synth_sample(seed)
    wx, wy = _local_widths(s.input), _local_widths(s.target)
    # junctions and ends inflate the upper quantiles, so compare the lower half
    straight = Stroke(np.array([[10.0, 30.3], [110.0, 37.1]]), np.ones(2))
    reference = np.median(_local_widths(render_uniform([straight], 64, 120, s.width)))
    assert abs(np.median(wx) - reference) < 0.1  # lines are as wide as the drawing's width says
    assert np.percentile(wx, 50) - np.percentile(wx, 10) < 0.2
    assert np.percentile(wy, 50) - np.percentile(wy, 10) > 0.4


@pytest.mark.parametrize("seed", [0, 1, 2, 5, 11, 23])
def test_tied_targets_follow_the_input_width_with_thick_thin_tapers_and_solid_cores(seed):
    from linerelifer_addon.core.linewidth import line_width
    from training.realmetrics import real_metrics

    tied = synth_sample(seed, tied=True)
    assert TIED_WIDTHS[0] <= tied.width <= TIED_WIDTHS[1]
    assert line_width(tied.input) == pytest.approx(tied.width, rel=0.25)
    assert 0.85 <= line_width(tied.target) / line_width(tied.input) <= 1.4, (seed, tied.width)
    r = real_metrics(tied.input, tied.target)
    assert r["darkness_kept"] >= 0.9, r
    assert r["width_cv"] >= 0.07 and r["width_cv"] > 1.4 * r["width_cv_in"], r  # the input is uniform
    assert r["taper"] < 0.4 < 0.9 < r["taper_in"], r


def test_tied_nib_and_tapers():
    """The target's thick-thin follows direction (30° nib): verticals, horizontals and the two
    diagonals all differ; long free strokes taper to a point, dots keep their round ends."""
    from linerelifer_addon.core.linewidth import line_width

    def stroke(angle_deg, length=120.0):
        t = np.linspace(-length / 2, length / 2, 80)
        a = np.radians(angle_deg)
        return Stroke(np.stack([80 + t * np.cos(a), 80 + t * np.sin(a)], axis=1), np.full(80, 0.7))

    widths = {a: line_width(render_tied([stroke(a)], 160, 160, 4.0)) for a in (0, 45, 90, 135)}
    assert max(widths.values()) > 1.4 * min(widths.values()), widths
    assert abs(widths[0] - widths[90]) > 0.5, widths
    img = render_tied([stroke(0)], 160, 160, 4.0)
    assert img[80, 60:100].min() > 0.95  # solid core
    tip, body = img[:, 21].sum(), img[:, 80].sum()  # 1 px from the free end vs the middle
    assert tip < 0.5 * body
    dot = render_tied([Stroke(np.array([[40.0, 40.0], [41.0, 40.0]]), np.full(2, 0.7))], 80, 80, 4.0)
    assert dot.max() > 0.95


def test_a_broader_nib_widens_the_thick_thin_and_reaches_the_training_pool():
    """`train --nib 0.4,2.0` draws the tied targets with that nib: thinnest and thickest
    directions further apart than the default nib's, and the sampler's pool is drawn with it."""
    from linerelifer_addon.core.linewidth import line_width
    from training.dataset import PairSampler

    def stroke(angle_deg):
        t = np.linspace(-60.0, 60.0, 80)
        a = np.radians(angle_deg)
        return Stroke(np.stack([80 + t * np.cos(a), 80 + t * np.sin(a)], axis=1), np.full(80, 0.7))

    def spread(nib):
        w = [line_width(render_tied([stroke(a)], 160, 160, 4.0, nib)) for a in (30, 120)]
        return max(w) / min(w)

    assert spread((0.4, 2.0)) > 1.5 * spread((0.65, 1.55)) > 1.5, (spread((0.4, 2.0)), spread((0.65, 1.55)))
    plain, broad = (PairSampler(pool_size=2, seed=3, tied=True, nib=nib).pairs for nib in (None, (0.4, 2.0)))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain, broad))  # the same inputs
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(plain, broad))  # other targets


# ---------------------------------------------------------------- degrade


def test_degrade_adds_gaps_and_specks_without_touching_arguments():
    x, y = synth_pair(5)
    x0, y0 = x.copy(), y.copy()
    d = degrade(x, np.random.default_rng(1), gaps=(5, 5), specks=(4, 4), spurs=(0, 0), jitter=0.0)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    removed = (x > 0.5) & (d < 0.25)
    assert removed.sum() >= 5
    # specks: new ink components that are far from every original line
    far = cv2.distanceTransform((~_ink(x)).astype(np.uint8), cv2.DIST_L2, 3) > 3
    n, _, stats, _ = cv2.connectedComponentsWithStats((_ink(d) & far).astype(np.uint8), connectivity=8)
    assert n - 1 >= 4
    assert stats[1:, cv2.CC_STAT_AREA].max() <= 9  # specks are 1-3 px blobs


def test_degrade_reports_the_ink_its_gaps_cut():
    """The cut map is exactly the ink the gaps took (specks and spurs add ink; they are not in it),
    and asking for it does not change the degraded image."""
    x, _ = synth_pair(5)
    cut = np.full(x.shape, -1.0, np.float32)
    kw = dict(gaps=(5, 5), specks=(4, 4), spurs=(2, 2), jitter=0.0)
    d = degrade(x, np.random.default_rng(1), cut_out=cut, **kw)
    assert np.array_equal(d, degrade(x, np.random.default_rng(1), **kw))
    assert cut.min() >= 0.0 and (cut > 0.5).sum() >= 5
    assert np.all(d[cut > 0.5] < x[cut > 0.5])
    none = np.ones_like(cut)
    degrade(x, np.random.default_rng(1), cut_out=none, gaps=(0, 0), specks=(4, 4), spurs=(2, 2), jitter=0.0)
    assert not none.any()


def test_degrade_is_deterministic_and_jitter_is_small():
    x, _ = synth_pair(6)
    a = degrade(x, np.random.default_rng(3))
    b = degrade(x, np.random.default_rng(3))
    assert np.array_equal(a, b)
    j = degrade(x, np.random.default_rng(4), gaps=(0, 0), specks=(0, 0), spurs=(0, 0), jitter=0.4)
    assert not np.array_equal(j, x)
    assert line_prf(j, x, tol=1.0)["f1"] > 0.99  # lines move by well under a pixel


def test_aliased_inputs_are_point_sampled_and_off_changes_nothing():
    """`aliased` turns an input into hard ink/paper pixels, ink where a pixel's centre lies in a
    stroke (the anti-aliased coverage at least a half, so the ink area stays); at 0 the result
    is the same as without it, rng and all."""
    x, _ = synth_pair(7)
    kw = dict(gaps=(2, 2), specks=(2, 2), spurs=(1, 1), jitter=0.0)
    soft = degrade(x, np.random.default_rng(5), **kw)
    assert np.array_equal(soft, degrade(x, np.random.default_rng(5), aliased=0.0, **kw))
    assert ((soft > 0.05) & (soft < 0.95)).mean() > 0.01
    hard = degrade(x, np.random.default_rng(5), aliased=1.0, **kw)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert np.array_equal(hard, (soft >= 0.5).astype(np.float32))
    assert abs(hard.sum() / soft.sum() - 1.0) < 0.1
    rng = np.random.default_rng(6)
    shares = [set(np.unique(degrade(x, rng, aliased=0.5, **kw))) == {0.0, 1.0} for _ in range(40)]
    assert 8 <= sum(shares) <= 32


def test_add_gap_fully_cuts_the_stroke():
    x, _ = synth_pair(9)
    rng = np.random.default_rng(2)
    for length in (1, 2, 3, 4):
        cut, a, b = add_gap(x, rng, length)
        assert a is not None
        assert gap_closed(x, a, b) and not gap_closed(cut, a, b)


# ---------------------------------------------------------------- prepare


def _marker_drawing(h=240, w=320):
    """Thick uniform 6 px marker strokes, black on white, 8-bit."""
    img = np.full((h, w), 255, np.uint8)
    cv2.polylines(img, [np.array([[20, 200], [80, 40], [140, 190], [200, 60]], np.int32)], False, 0, 6, cv2.LINE_AA)
    cv2.circle(img, (255, 150), 45, 0, 6, cv2.LINE_AA)
    cv2.line(img, (30, 20), (300, 30), 0, 6, cv2.LINE_AA)
    return img


def _write_set(folder):
    img = _marker_drawing()
    cv2.imwrite(str(folder / "a_gray8.png"), img)
    cv2.imwrite(str(folder / "b_gray16.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "c_inverted.png"), cv2.cvtColor(255 - img, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(folder / "d_photo.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 75])
    rgba = np.zeros((*img.shape, 4), np.uint8)  # black ink on a transparent sheet
    rgba[:, :, 3] = 255 - img
    cv2.imwrite(str(folder / "e_alpha.png"), rgba)
    return (255 - img).astype(np.float32) / 255.0


def test_load_drawing_formats(tmp_path):
    ink = _write_set(tmp_path)
    expect = 1.0 - ink
    for name in ("a_gray8.png", "b_gray16.png", "e_alpha.png"):
        lum = load_drawing(tmp_path / name)
        assert lum.dtype == np.float32 and lum.shape == ink.shape
        assert np.abs(lum - expect).max() < 0.01, name
    assert np.abs(load_drawing(tmp_path / "c_inverted.png") - ink).max() < 0.01


def test_prepare_folder_pairs_follow_the_drawing(tmp_path):
    ink = _write_set(tmp_path)
    pairs = prepare_folder(tmp_path)
    assert len(pairs) == 5
    stroke = _ink(ink)
    near_stroke = cv2.dilate(stroke.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    for x, y in pairs:
        assert x.shape == y.shape == ink.shape and x.dtype == np.float32 and y.dtype == np.float32
        # target is the drawing itself, inverted one included
        assert np.abs(y - ink).mean() < 0.01
        iou = (_ink(y) & stroke).sum() / (_ink(y) | stroke).sum()
        assert iou > 0.95
        # input: thin uniform lines lying on the strokes and following all of them
        assert near_stroke[_ink(x)].mean() > 0.99
        assert _ink(x).sum() < 0.7 * stroke.sum()
        assert line_prf(x, y, tol=4.0)["recall"] > 0.97


def test_prepare_downscales_large_scans(tmp_path):
    big = cv2.resize(_marker_drawing(), (960, 720), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "scan.png"), big)
    (x, y), = prepare_folder(tmp_path, max_side=400)
    assert max(x.shape) == 400 and x.shape == y.shape == (300, 400)


def test_one_pen_keeps_one_width_across_scans_of_different_sizes(tmp_path):
    # A studio's scans cropped to their drawings: a small crop and a full page drawn with the
    # same 8 px pen. Fitting each to max_side on its own drew the page's lines 3x thinner.
    from linerelifer_addon.core.linewidth import line_width

    def page(h, w):
        img = np.full((h, w), 255, np.uint8)
        for i in range(1, 5):
            cv2.line(img, (w // 10, i * h // 5), (w - w // 10, i * h // 5 + h // 20), 0, 8, cv2.LINE_AA)
        return img

    cv2.imwrite(str(tmp_path / "crop.png"), page(240, 320))
    cv2.imwrite(str(tmp_path / "page.png"), page(720, 960))
    cv2.imwrite(str(tmp_path / "page2.png"), page(720, 960))
    pairs = prepare_folder(tmp_path, max_side=480)  # the median long side, 960, is halved
    widths = [line_width(y) for _, y in pairs]
    assert [y.shape for _, y in pairs] == [(120, 160), (360, 480), (360, 480)]
    assert max(widths) / min(widths) < 1.15, widths
    assert 3.2 < np.median(widths) < 4.8, widths


def _page(h=1200, w=1600, pen=6, ink=20):
    """A line drawing on white paper (uint8 gray) and its true ink mask."""
    img = np.full((h, w), 250, np.uint8)
    cv2.circle(img, (w // 3, h // 2), h // 4, ink, pen, cv2.LINE_AA)
    cv2.polylines(img, [np.array([[w // 10, h - h // 6], [w // 2, h // 8], [w - w // 10, h - h // 5]], np.int32)],
                  False, ink, pen, cv2.LINE_AA)
    cv2.line(img, (w // 8, h // 10), (w - w // 8, h // 6), ink, pen, cv2.LINE_AA)
    return img, img < 135


def test_uneven_light_stays_paper_and_keeps_the_ink_tone(tmp_path):
    # A phone photo: lit 250 on one side, 150 on the other, darker still in the corners. Half
    # the page used to become ink (a third of it at the training size), with a grey ink tone.
    from training.prepare import even_light, ink_tone, paper_light

    img, truth = _page()
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    light = np.linspace(1.0, 0.6, w)[None, :] * (1 - 0.3 * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2))
    for name, page in (("photo", np.clip(img * light, 0, 255)), ("even", img)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "page.png"), page.astype(np.uint8))
    (_, y), = prepare_folder(tmp_path / "photo", max_side=800)
    (_, y_even), = prepare_folder(tmp_path / "even", max_side=800)
    small_truth = cv2.resize(truth.astype(np.float32), y.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
    paper = ~cv2.dilate(small_truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert (y[paper] > 0.25).mean() < 0.001, (y[paper] > 0.25).mean()
    assert abs(int((y > 0.5).sum()) - int((y_even > 0.5).sum())) < 0.03 * (y_even > 0.5).sum()
    assert ink_tone(tmp_path / "photo") * 255 == pytest.approx(ink_tone(tmp_path / "even") * 255, abs=4)
    assert ink_tone(tmp_path / "photo") * 255 == pytest.approx(20, abs=6)
    flat = np.full((300, 400), 0.9, np.float32)
    assert paper_light(flat) is None and even_light(flat) is flat  # even light: untouched


def test_a_fine_pen_reads_black_and_pencil_grain_is_not_paper(tmp_path):
    # A 2 px pen on a large scan has no solid core at training size: its black ink read as
    # mid-grey. Grain inside pencil strokes thinned into little loops of centerline.
    from training.prepare import centerline, drawing_to_target, fill_pinholes, ink_tone, trace_polylines

    img, _ = _page(pen=2)
    (tmp_path / "fine").mkdir()
    cv2.imwrite(str(tmp_path / "fine" / "scan.png"), img)
    assert ink_tone(tmp_path / "fine") * 255 == pytest.approx(20, abs=8)
    rng = np.random.default_rng(3)
    pencil, truth = _page(h=600, w=800, pen=5, ink=100)
    pencil = np.where(truth & (rng.random(pencil.shape) < 0.04), 250, pencil).astype(np.uint8)  # paper specks in the strokes
    target = drawing_to_target(pencil.astype(np.float32) / 255)
    clean = len(trace_polylines(centerline(drawing_to_target(_page(h=600, w=800, pen=5, ink=100)[0].astype(np.float32) / 255))))
    assert len(trace_polylines(centerline(target))) > clean + 10  # the loops the grain makes
    assert len(trace_polylines(centerline(fill_pinholes(target)))) <= clean + 2


def test_centerline_is_thin_and_on_the_stroke():
    img = np.zeros((60, 80), np.float32)
    cv2.line(img, (10, 30), (70, 30), 1.0, 7)
    skel = centerline(img)
    cols = skel[:, 15:65]
    assert (cols.sum(axis=0) == 1).all()  # exactly one pixel thick
    assert set(np.nonzero(cols)[0]) <= {29, 30, 31}


def test_prepare_folder_uses_line_norm_pairs(tmp_path):
    (tmp_path / "line").mkdir()
    (tmp_path / "norm").mkdir()
    line = np.full((100, 120), 255, np.uint8)
    cv2.line(line, (10, 50), (110, 50), 0, 2, cv2.LINE_AA)
    norm = np.full((100, 120), 255, np.uint8)
    cv2.line(norm, (10, 50), (110, 50), 0, 5, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "line" / "shot01.png"), line)
    cv2.imwrite(str(tmp_path / "norm" / "shot01.png"), norm)
    cv2.imwrite(str(tmp_path / "line" / "unmatched.png"), line)
    cv2.imwrite(str(tmp_path / "loose_drawing.png"), norm)  # ignored: explicit pairs win
    pairs = prepare_folder(tmp_path)
    assert len(pairs) == 1
    x, y = pairs[0]
    assert np.abs(x - (255 - line) / 255.0).mean() < 0.01
    assert np.abs(y - (255 - norm) / 255.0).mean() < 0.01


def test_prepare_folder_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty_drawings"
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        prepare_folder(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.png"):
        prepare_folder(bad)


def test_a_scanners_dark_frame_is_not_ink(tmp_path):
    """A page scanned with the lid open has black along its edges: it must neither set the ink
    level, nor train as a line, nor turn a grey marker's tone black; lines off the edge stay."""
    from conftest import marker_drawings
    from training.prepare import INK, drawing_to_target, ink_tone, scan_border

    marker_drawings(tmp_path / "plain", grey=60)
    framed = tmp_path / "framed"
    framed.mkdir()
    for f in sorted((tmp_path / "plain").glob("*.png")):
        img = cv2.imread(str(f), 0)
        img[:, :25] = 8
        img[-40:, :] = 10
        cv2.imwrite(str(framed / f.name), img)
    inside = np.zeros((240, 300), bool)
    inside[:-40 - 8, 25 + 8:] = True
    for f in sorted((tmp_path / "plain").glob("*.png")):
        plain, boxed = drawing_to_target(load_drawing(f)), drawing_to_target(load_drawing(framed / f.name))
        assert (boxed[~inside] > INK).mean() < 0.01, "the frame became ink"
        assert np.abs(plain[inside] - boxed[inside]).max() < 0.05
        assert not scan_border(load_drawing(f)).any()  # the marker's strokes run off the page: not a frame
    assert abs(ink_tone(framed) * 255 - 60) <= 3 and abs(ink_tone(tmp_path / "plain") * 255 - 60) <= 3
    # Thick strokes that run off the page are drawing, not frame: a 20 px grey marker off the
    # left edge of a page, and a 10 px one off a small page's bottom.
    page = np.full((800, 1024), 255, np.uint8)
    cv2.line(page, (-50, 400), (600, 300), 60, 20)
    small = np.full((240, 300), 255, np.uint8)
    cv2.line(small, (150, 100), (170, 260), 0, 10)
    for img in (page, small):
        assert not scan_border(img.astype(np.float32) / 255).any()


# ---------------------------------------------------------------- sampler


def test_sampler_batches_are_aligned_deterministic_and_inky():
    x, y = synth_pair(21)
    off = {"gaps": (0, 0), "specks": (0, 0), "spurs": (0, 0), "jitter": 0.0}
    same = PairSampler([(y, y)], crop=64, seed=1, degrade_kwargs=off)
    bx, by = same.batch(6)
    assert bx.shape == by.shape == (6, 64, 64, 1) and bx.dtype == np.float32
    assert np.array_equal(bx, by)  # input and target get the very same crop and augmentation

    s1 = PairSampler([(x, y)], crop=64, seed=4)
    s2 = PairSampler([(x, y)], crop=64, seed=4)
    a, b = s1.batch(8), s2.batch(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert (np.mean(a[1] > 0.25, axis=(1, 2, 3)) >= 0.01).mean() >= 0.75

    synthetic = PairSampler(None, crop=64, seed=2, pool_size=3)
    sx, sy = synthetic.batch(4)
    assert sx.shape == (4, 64, 64, 1) and not np.array_equal(sx, sy)


def test_sampler_pads_small_drawings():
    x = np.zeros((40, 50), np.float32)
    x[20, 5:45] = 1.0
    bx, by = PairSampler([(x, x)], crop=64, seed=0).batch(2)
    assert bx.shape == (2, 64, 64, 1)


def test_worker_sampler_is_repeatable_per_seed_and_reports_a_failed_process():
    """--data-workers: batches made by spawned processes, taken in turn, the same for a given seed
    and worker count; each process draws its own crops from the same pool; a process that fails,
    or is killed, raises in the trainer instead of leaving it waiting."""
    import functools

    from training.dataset import WorkerSampler

    x, y = synth_pair(21)
    make = functools.partial(PairSampler, [(x, y)], crop=64, seed=4)
    runs = []
    for _ in range(2):
        sampler = WorkerSampler(make, 4, workers=2, n=3)
        try:
            runs.append([sampler.batch(3, with_cuts=True) for _ in range(4)])
            with pytest.raises(ValueError, match="batches of 3"):
                sampler.batch(5)
        finally:
            sampler.close()
    for a, b in zip(*runs):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
    first = runs[0]
    assert first[0][0].shape == (3, 64, 64, 1) and len(first[0]) == 3
    assert not np.array_equal(first[0][0], first[1][0])  # the two processes draw different crops
    for k in (0, 1):  # process k: the sampler as built, then seed sequence [seed, k]
        own = make()
        own.rng = np.random.default_rng([4, k])
        assert np.array_equal(first[k][0], own.batch(3)[0]) and np.array_equal(first[k + 2][0], own.batch(3)[0])

    # synthetic data: the same pool as the one-process sampler's (its seeds come from the same rng)
    pool = functools.partial(PairSampler, None, crop=64, seed=5, pool_size=2)
    spread = WorkerSampler(pool, 5, workers=1, n=2)
    try:
        got = spread.batch(2)
    finally:
        spread.close()
    own = pool()
    one_process = own.batch(2)[0]
    own.rng = np.random.default_rng([5, 0])
    assert np.array_equal(got[0], own.batch(2)[0]) and not np.array_equal(got[0], one_process)

    broken = WorkerSampler(functools.partial(PairSampler, [], crop=64), 1, workers=1, n=2)
    try:
        with pytest.raises(RuntimeError, match="empty list of pairs"):
            broken.batch(2)
    finally:
        broken.close()

    killed = WorkerSampler(make, 4, workers=1, n=3, wait=0.5)
    try:  # killed while still starting (spawning takes over a second): it never writes a batch
        killed.procs[0].kill()
        killed.procs[0].join()
        with pytest.raises(RuntimeError, match="process 0 ended"):
            killed.batch(3)
    finally:
        killed.close()


# ---------------------------------------------------------------- eval set


def test_evalset_is_deterministic_with_real_probes():
    items = make_evalset(n=3)
    again = make_evalset(n=3)
    assert [i.seed for i in items] == [i.seed for i in again]
    assert all(np.array_equal(a.input, b.input) for a, b in zip(items, again))
    assert all(i.seed >= EVAL_SEED_BASE for i in items)
    for item in items:
        assert sorted(g[2] for g in item.gaps) == [1, 2, 3, 4]
        for a, b, _ in item.gaps:
            assert not gap_closed(item.input, a, b) and gap_closed(item.target, a, b)
        assert len(item.specks) == 3
        for p in item.specks:
            assert not speck_removed(item.input, p) and speck_removed(item.target, p)
