"""Metrics on tiny hand-made images whose answers can be worked out by hand."""

import numpy as np
import pytest

from training.evalset import make_evalset
from training.evaluate import METRICS, evaluate_items, format_table, identity
from training.metrics import (chamfer, gap_closed, hallucinated_ink, line_prf, speck_removed, stroke_widths,
                              width_hist_distance)


def hline(row, width=2, cols=(10, 54), size=64):
    """Horizontal line `width` px thick starting at `row`, columns [cols)."""
    img = np.zeros((size, size), np.float32)
    img[row:row + width, cols[0]:cols[1]] = 1.0
    return img


def test_identical_images_are_perfect():
    a = hline(30)
    prf = line_prf(a, a)
    assert prf == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert hallucinated_ink(a, a) == 0.0
    assert chamfer(a, a) == 0.0
    assert width_hist_distance(a, a) == 0.0


def test_empty_cases():
    blank = np.zeros((32, 32), np.float32)
    assert line_prf(blank, blank)["f1"] == 1.0
    assert chamfer(blank, blank) == 0.0
    assert line_prf(blank, hline(10, size=32, cols=(2, 30)))["f1"] == 0.0
    assert line_prf(hline(10, size=32, cols=(2, 30)), blank)["f1"] == 0.0
    assert chamfer(blank, hline(10, size=32, cols=(2, 30))) == pytest.approx(np.hypot(32, 32))
    assert hallucinated_ink(blank, hline(10)) == 0.0
    assert width_hist_distance(blank, hline(10)) == 2.0


def test_shift_within_and_beyond_tolerance():
    target = hline(30)
    assert line_prf(hline(31), target, tol=2.0)["f1"] == 1.0
    far = line_prf(hline(35), target, tol=2.0)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["f1"] == 0.0


def test_chamfer_by_hand():
    # rows 30,31 vs rows 33,34: distances 2 and 3 both ways -> mean 2.5
    assert chamfer(hline(33), hline(30)) == pytest.approx(2.5)


def test_faint_antialiasing_is_not_ink():
    target = hline(30)
    out = target.copy()
    out[5, 5] = 0.2  # below the 0.25 ink threshold
    assert hallucinated_ink(out, target) == 0.0
    out[5, 5] = 0.3
    assert hallucinated_ink(out, target) == pytest.approx(1 / (2 * 44 + 1))


def test_hallucinated_fraction_by_hand():
    target = hline(30)
    out = target.copy()
    out[5:7, 5:7] = 1.0  # 4 px blob 23 rows away from the line
    out[33, 20] = 1.0  # 2 px from the line: within dist=3, not hallucinated
    assert hallucinated_ink(out, target, dist=3.0) == pytest.approx(4 / (88 + 4 + 1))


def test_gap_open_and_bridged():
    img = np.zeros((64, 64), np.float32)
    img[31, 10:30] = 1.0
    img[31, 33:54] = 1.0  # columns 30, 31, 32 missing: a 3 px gap
    a, b = (31, 28), (31, 35)
    assert not gap_closed(img, a, b)
    bridged = img.copy()
    bridged[31, 30:33] = 1.0
    assert gap_closed(bridged, a, b)
    diagonal = img.copy()
    diagonal[30, 30], diagonal[30, 31], diagonal[31, 32] = 1.0, 1.0, 1.0  # bridge via diagonal steps
    assert gap_closed(diagonal, a, b)


def test_gap_detour_outside_window_does_not_count():
    img = np.zeros((64, 64), np.float32)
    img[31, 10:30] = 1.0
    img[31, 33:54] = 1.0
    img[5, 10:54] = 1.0  # a long way round, far outside the local window
    img[5:32, 10] = 1.0
    img[5:32, 53] = 1.0
    assert not gap_closed(img, (31, 28), (31, 35))


def test_speck_present_and_removed():
    img = hline(40)
    img[10:12, 10:12] = 1.0
    assert not speck_removed(img, (10, 10))
    assert speck_removed(hline(40), (10, 10))
    far = hline(40)
    far[10, 15] = 1.0  # 5 px away: outside radius 3
    assert speck_removed(far, (10, 10), radius=3)


def test_width_estimate_and_histogram_distance():
    assert np.median(stroke_widths(hline(30, width=3))) == pytest.approx(3.0)
    assert np.median(stroke_widths(hline(30, width=5))) == pytest.approx(5.0)
    thin, thick = hline(30, width=2), hline(28, width=5)
    d = width_hist_distance(thin, thick)
    assert d == pytest.approx(2.0)  # all mass in different bins
    mixed = np.maximum(hline(10, width=2), hline(40, width=5))
    assert 0.0 < width_hist_distance(mixed, thin) < 2.0


def test_evaluate_identity_oracle_and_table():
    items = make_evalset(n=2, size=128)
    truth = {i.input.tobytes(): i.target for i in items}
    ident = evaluate_items(identity, items)
    oracle = evaluate_items(lambda x: truth[x.tobytes()], items)
    assert list(ident) == list(METRICS)
    assert ident["gap_closure"] == 0.0 and ident["speck_removal"] == 0.0
    assert ident["l1"] > 0.0 and ident["width_hist"] > 0.0
    assert oracle["gap_closure"] == 1.0 and oracle["speck_removal"] == 1.0
    assert oracle["f1"] == 1.0 and oracle["l1"] == 0.0 and oracle["hallucinated"] == 0.0
    table = format_table({"identity": ident, "oracle": oracle})
    lines = table.splitlines()
    assert "identity" in lines[0] and "oracle" in lines[0]
    l1_row = next(line for line in lines if line.startswith("l1"))
    assert "lower" in l1_row and l1_row.rstrip().endswith("oracle")
    f1_row = next(line for line in lines if line.startswith("f1"))
    assert "higher" in f1_row and f1_row.rstrip().endswith("oracle")
    with pytest.raises(ValueError):
        evaluate_items(lambda x: x[:10], items)
