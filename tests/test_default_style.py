"""The shipped default style on real Freestyle renders (the committed crops of tests/data/realset)
and on the held-out gap/speck probes, refined as the CLI and Blender refine: through the real
worker, with the style's own width settings and edge gain."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from test_realset import crops  # noqa: E402
from linerelifer_addon.core.client import WorkerClient  # noqa: E402
from training.probes import make_probes, score_probes  # noqa: E402
from training.realmetrics import real_metrics, shift_change  # noqa: E402

ANTI_ALIASED = [f"figure_t{t}_720p_s8" for t in (1, 2, 3, 5, 8, 12)]
ALIASED = ["architecture_t3_720p_s1", "architecture_t8_720p_s1", "figure_t2_720p_s1"]


@pytest.fixture(scope="module")
def client():
    with WorkerClient() as c:
        yield c


@pytest.mark.parametrize("name", ANTI_ALIASED + ALIASED)
def test_real_lines_stay_solid_dark_and_about_as_wide(client, default_style, name) -> None:
    """Issue 13's bars at every Freestyle thickness: recall, darkness, no hollow cores, width;
    and from 3 px no ghost edges and no slits between close lines inked over."""
    _, x = crops()[name]
    r = real_metrics(x, client.refine(x, default_style))
    assert r["recall"] >= 0.98, r
    assert r["darkness_kept"] >= 0.95, r
    assert r["hollow"] <= 0.01, r
    assert 0.7 <= r["width_ratio"] <= 1.5, r
    if "_t1_" not in name and "_t2_" not in name:  # thin lines' pixel phase makes slits of its own
        # no faint copy of the input's edge beside a thinner core (this style: 0.12 % on the
        # aliased 3 px crop, 10 of its 8571 line pixels, where the style before it had 0.08 %;
        # 0.04 % at most on the others; 0.26 % at 12 px with an 8000-step run that was not
        # shipped, training/README.md)
        assert r["ghost_edge"] <= 0.002, r
    if name in ANTI_ALIASED[2:]:
        # the paper between close lines stays paper (this style: 1.6 % at most; the style before
        # it 16 % at 12 px; the 8000-step field13 inked 63-64 % at 8-12 px, dense detail gone to blots)
        assert r["filled_slit"] <= 0.3, r


@pytest.mark.parametrize("thick_thin", [0.0, None], ids=["network", "as_applied"])
@pytest.mark.parametrize("name", [ANTI_ALIASED[0], ANTI_ALIASED[2], ANTI_ALIASED[4], ALIASED[2]])
def test_moving_the_frame_moves_the_lines_and_changes_nothing_else(client, default_style, name, thick_thin) -> None:
    """Shift stability (a slow camera pan): refine(shift(x)) against shift(refine(x)), 1-7 px,
    held to issue 13's bar of 1.5 %, without the thick-thin and as applied (with the style's own).

    This style: 1.17 / 0.24 / 0.64 % on the 1 / 3 / 8 px crops, 1.40 / 0.71 / 0.67 % as applied;
    0.56 % and 0.97 % on the aliased 2 px crop (the nib before its whole-pixel thin sides: 1.05 %
    as applied; with them but the line width read on one grid of cells, 2.35 %).
    The style before it changed 1.72 % of the 1 px crop's ink (the test then held that crop to
    2 %); its fine-tune priced the shift change 2.5x as much (training/README.md, "Fine-tuning the
    default").
    """
    _, x = crops()[name]
    change = shift_change(lambda a: client.refine(a, default_style, thick_thin=thick_thin), x)
    assert change <= 0.015, change


@pytest.mark.parametrize("name", ANTI_ALIASED + ALIASED)
def test_as_applied_with_its_thick_thin_lines_stay_solid_dark_and_about_as_wide(client, default_style, name) -> None:
    """The bars of test_real_lines_stay_solid_dark_and_about_as_wide for the style as the CLI and
    Blender apply it (its own thick-thin, 1). Not its ghost-edge and slit checks: on these
    crops the nib draws 0.43 % ghost edges at 5 px and inks 35 % of the dense aliased 8 px
    crop's slits (19 % without), the cost README.md's limitations give."""
    _, x = crops()[name]
    r = real_metrics(x, client.refine(x, default_style, thick_thin=None))
    assert r["recall"] >= 0.98 and r["darkness_kept"] >= 0.95 and r["hollow"] <= 0.01, r
    assert 0.7 <= r["width_ratio"] <= 1.5, r


@pytest.mark.parametrize("name", [ANTI_ALIASED[4], ANTI_ALIASED[5], ALIASED[2]])
def test_thick_thin_varies_the_width_along_strokes_and_keeps_them_solid(client, default_style, name) -> None:
    """Thick-thin 1 (core/nib.py) over the default as applied: the width variation issue 13
    asks for (median CV >= 0.12; on these crops 0.21 / 0.20 at 8 / 12 px, 0.10 / 0.06 without;
    0.31 on the aliased 2 px crop, 0.09 without), with the lines still solid, dark and about as
    wide. Whole-pixel 2 px lines' thin sides and free ends lose a row: there the nib before
    only thickened them (CV 0.14, and 2 px in from a free end still 0.74 of the stroke's
    width, against 0.58 now)."""
    _, x = crops()[name]
    plain = real_metrics(x, client.refine(x, default_style))
    r = real_metrics(x, client.refine(x, default_style, thick_thin=1.0))
    assert r["width_cv"] >= 0.12 and r["width_cv"] >= 1.5 * plain["width_cv"], (r, plain)
    assert r["darkness_kept"] >= 0.95 and r["hollow"] <= 0.01, r
    assert 0.7 <= r["width_ratio"] <= 1.5 and r["recall"] >= 0.98, r
    if name in ALIASED:
        assert r["width_cv"] >= 0.2 and r["taper"] <= 0.6 and r["tip_taper"] <= 0.7, r


def test_the_renders_own_thick_and_thin_stays(client, default_style) -> None:
    """Freestyle's noise thickness modifier on a 3 px render (the crop's own width variation
    0.16): the network alone draws 0.10 of it and so did the nib before it read the render's
    own widths; as applied now 0.14, with the lines solid, about as wide, and as steady under
    a pan as issue 13 asks."""
    _, x = crops()["figure_t3_720p_s8_noise"]
    refine = lambda a: client.refine(a, default_style, thick_thin=None)
    r = real_metrics(x, refine(x))
    assert r["width_cv"] >= 0.12, r
    assert r["darkness_kept"] >= 0.95 and r["hollow"] <= 0.01 and r["recall"] >= 0.98, r
    assert 0.7 <= r["width_ratio"] <= 1.5, r
    assert shift_change(refine, x) <= 0.015


def test_held_out_probe_specks_go_and_gaps_close(client, default_style) -> None:
    """Probes from a generator training never samples (training/probes.py): issue 13's bars, 90 %
    of specks removed and 95 % of 1-4 px gaps closed (the style before this one closed 24 %)."""
    scores = score_probes(lambda a: client.refine(np.asarray(a, np.float32), default_style), make_probes())
    assert scores["probe_speck_removal"] >= 0.90, scores
    assert scores["probe_gap_closure"] >= 0.95, scores


def test_lines_leaving_the_frame_keep_their_width_to_the_edge(client, default_style) -> None:
    """The frame edge is not a line's end: beyond it the picture goes on (the tiles see the
    frame mirrored there, not blank paper), so a line running out of frame is not tapered."""
    x = np.zeros((120, 200), np.float32)
    x[58:62, :150] = 1.0  # 4 px, from the left edge to a free end at x = 150
    for thick_thin in (0.0, None):  # the network alone, and as applied (with the style's thick-thin)
        y = client.refine(x, default_style, thick_thin=thick_thin)
        ink = lambda cols: y[:, cols].sum(axis=0).mean()  # noqa: E731  ink across the line per column
        body = ink(slice(60, 90))
        assert ink(slice(0, 3)) >= 0.9 * body, (thick_thin, ink(slice(0, 3)), body)  # the edge: as wide as the body
        assert ink(slice(146, 150)) < 0.8 * body, thick_thin  # the free end does taper: the style is working
