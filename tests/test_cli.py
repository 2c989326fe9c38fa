"""The command line: real files, a real worker, exit codes and one-line messages."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before cv2 is first imported
cv2 = pytest.importorskip("cv2")

from conftest import ROOT, line_image  # noqa: E402


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linerelifer_addon", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def write_drawing(path: Path, h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    img = np.rint((1.0 - line_image(h, w, seed=seed)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_refine_file_and_folder(tmp_path, random_style) -> None:
    src = tmp_path / "in"
    src.mkdir()
    originals = {n: write_drawing(src / n, seed=i) for i, n in enumerate(["a.png", "b.png", "c d é.png"])}
    r = run_cli("refine", str(src), "-o", str(tmp_path / "out"), "--style", str(random_style))
    assert r.returncode == 0, r.stderr
    assert "worker started 1 time" in r.stderr
    for name, img in originals.items():
        out = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert out is not None and out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(cv2.imread(str(src / name), cv2.IMREAD_UNCHANGED), img), "input modified"
    one = run_cli("refine", str(src / "a.png"), "-o", str(tmp_path / "single.png"), "--style", str(random_style),
                  "--strength", "0")
    assert one.returncode == 0, one.stderr
    # strength 0 gives back the input's lines
    assert np.abs(cv2.imread(str(tmp_path / "single.png"), 0).astype(int) - originals["a.png"]).max() <= 1


def test_strength_zero_writes_the_input_exactly_and_two_is_accepted(tmp_path, random_style) -> None:
    rgba = np.zeros((90, 100, 4), np.uint8)
    rgba[..., :3] = (30, 60, 200)
    rgba[..., 3] = np.rint(line_image(90, 100, seed=3) * 255)
    gray16 = np.rint((1 - line_image(90, 100, seed=4)) * 65535).astype(np.uint16)
    for name, img in (("pass.png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)), ("gray16.png", gray16)):
        cv2.imwrite(str(tmp_path / name), img)
        r = run_cli("refine", str(tmp_path / name), "-o", str(tmp_path / f"s0-{name}"), "--style", str(random_style),
                    "--strength", "0")
        assert r.returncode == 0, r.stderr
        assert np.array_equal(cv2.imread(str(tmp_path / f"s0-{name}"), cv2.IMREAD_UNCHANGED), img)
    r = run_cli("refine", str(tmp_path / "pass.png"), "-o", str(tmp_path / "s2.png"), "--style", str(random_style),
                "--strength", "2")
    assert r.returncode == 0, r.stderr


def test_thick_thin_draws_other_lines_and_strength_zero_still_gives_the_input(tmp_path) -> None:
    """--thick-thin reaches the refined file (the default style, a real worker), and without it
    the style's own is drawn (the default style's is 1); strength 0 still writes the input's
    lines exactly."""
    img = write_drawing(tmp_path / "in.png", 160, 200, seed=5)
    outs = {}
    for tt in ("0", "1", "style's"):
        flag = [] if tt == "style's" else ["--thick-thin", tt]
        r = run_cli("refine", str(tmp_path / "in.png"), "-o", str(tmp_path / f"tt{tt}.png"), *flag)
        assert r.returncode == 0, r.stderr
        outs[tt] = 1.0 - cv2.imread(str(tmp_path / f"tt{tt}.png"), 0) / 255.0
    assert np.array_equal(outs["style's"], outs["1"])
    assert np.abs(outs["1"] - outs["0"]).sum() > 0.05 * outs["0"].sum()
    assert 0.7 <= outs["1"].sum() / outs["0"].sum() <= 1.6
    r = run_cli("refine", str(tmp_path / "in.png"), "-o", str(tmp_path / "s0.png"), "--thick-thin", "1",
                "--strength", "0")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(cv2.imread(str(tmp_path / "s0.png"), cv2.IMREAD_UNCHANGED), img)


def test_rgba_pass_keeps_its_convention(tmp_path, random_style) -> None:
    rgba = np.zeros((90, 100, 4), np.uint8)
    rgba[..., :3] = (30, 60, 200)
    rgba[..., 3] = np.rint(line_image(90, 100, seed=2) * 255)
    cv2.imwrite(str(tmp_path / "pass.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    r = run_cli("refine", str(tmp_path / "pass.png"), "-o", str(tmp_path / "o.png"), "--style", str(random_style))
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (90, 100, 4)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "same_as_input", "strength", "thick_thin", "style",
                                  "usage"])
def test_bad_input_exits_2_with_one_line(tmp_path, random_style, case: str) -> None:
    good = tmp_path / "good.png"
    write_drawing(good)
    args = {
        "missing": [str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png")],
        "empty": [str(tmp_path / "empty.png"), "-o", str(tmp_path / "o.png")],
        "text": [str(tmp_path / "text.png"), "-o", str(tmp_path / "o.png")],
        "same_as_input": [str(good), "-o", str(good)],
        "strength": [str(good), "-o", str(tmp_path / "o.png"), "--strength", "2.5"],
        "thick_thin": [str(good), "-o", str(tmp_path / "o.png"), "--thick-thin", "1.5"],
        "style": [str(good), "-o", str(tmp_path / "o.png"), "--style", "no-such-style"],
        "usage": ["--bogus"],
    }[case]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    if case not in ("style", "usage"):
        args += ["--style", str(random_style)]
    before = good.read_bytes()
    r = run_cli("refine", *args)
    assert r.returncode == 2, r.stderr
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:") or l.startswith("usage")]
    assert errors, r.stderr
    assert "Traceback" not in r.stderr
    if case in ("missing", "empty", "text"):
        assert Path(args[0]).name in errors[0]
    assert good.read_bytes() == before
    assert not (tmp_path / "o.png").exists()


def test_internal_error_exits_1(tmp_path, random_style) -> None:
    style = tmp_path / "odd.keras"
    shutil.copy(random_style, style)
    meta = json.loads(random_style.with_suffix(".json").read_text())
    meta["margin"] = 41  # not on the network's stride: inference cannot tile
    style.with_suffix(".json").write_text(json.dumps(meta))
    good = tmp_path / "good.png"
    write_drawing(good)
    r = run_cli("refine", str(good), "-o", str(tmp_path / "o.png"), "--style", str(style))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "--debug" in r.stderr
    r = run_cli("refine", str(good), "-o", str(tmp_path / "o.png"), "--style", str(style), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_styles_lists_bundled_and_user(tmp_path, random_style) -> None:
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(random_style, user / "mine.keras")
    shutil.copy(random_style.with_suffix(".json"), user / "mine.json")
    env = {**__import__("os").environ, "LINERELIFER_STYLES_DIR": str(user)}
    r = run_cli("styles", env=env)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert any(l.split()[:2] == ["mine", "user"] for l in lines)
    assert any(l.split()[:2] == ["default", "bundled"] for l in lines)
    assert f"user styles folder: {user}" in r.stderr
    # A model copied without its metadata is named, not silently left out.
    shutil.copy(random_style, user / "house.keras")
    r = run_cli("styles", env=env)
    assert "house" not in r.stdout and re.search(r"skipped: style metadata \S*house\.json is missing", r.stderr), r.stderr
    r = run_cli("refine", str(tmp_path / "x.png"), "-o", str(tmp_path / "y.png"), "--style", "house", env=env)
    assert r.returncode == 2 and "house.json is missing; copy it from where the style was trained" in r.stderr, r.stderr


def test_a_style_without_metadata_is_named_in_a_relative_styles_folder(tmp_path, random_style, monkeypatch) -> None:
    from linerelifer_addon.core.styles import StyleError, resolve_style

    shutil.copy(random_style, tmp_path / "house.keras")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINERELIFER_STYLES_DIR", ".")
    with pytest.raises(StyleError, match=r"house\.json is missing"):
        resolve_style("house")


def _exif_rotated_jpeg(path: Path, img: np.ndarray) -> None:
    """A JPEG whose EXIF orientation (6: turn 90° clockwise to show it) says it is portrait,
    as a phone held upright writes it."""
    import struct

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 98])
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


def test_files_from_cameras_and_compositors_keep_what_they_hold(tmp_path) -> None:
    """EXR passes are premultiplied (Blender writes and reads them so), EXR values above 1
    stay, a phone photo comes back the way it is shown, a style's ink tone is a displayed grey
    in linear files too; files that cannot be refined are named in one line."""
    from linerelifer_addon.core.conversion import srgb_to_linear

    cov = line_image(96, 128, seed=5)
    color = np.array([0.8, 0.2, 0.1], np.float32)
    premult = np.dstack([cov[..., None] * color, cov]).astype(np.float32)
    cv2.imwrite(str(tmp_path / "pass.exr"), cv2.cvtColor(premult, cv2.COLOR_RGBA2BGRA))
    r = run_cli("refine", str(tmp_path / "pass.exr"), "-o", str(tmp_path / "out.exr"), "--quiet")
    assert r.returncode == 0, r.stderr
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "out.exr"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    a = out[..., 3]
    seen = a > 0.05
    straight = out[..., :3][seen] / a[seen][:, None]
    # Every pixel with some ink unpremultiplies to the lines' colour (straight alpha written
    # into an EXR came back up to 39 times too bright there).
    assert np.abs(straight - color).max() < 0.03, np.abs(straight - color).max()
    assert np.abs(a - cov).max() > 0.1  # and the style did change the lines

    # A tone-keeping style in a linear file: its grey as displayed, not as a linear value.
    styles = tmp_path / "styles"
    styles.mkdir()
    for ext in ("keras", "tflite"):
        shutil.copy(ROOT / "linerelifer_addon" / "styles" / f"default.{ext}", styles / f"grey.{ext}")
    meta = json.loads((ROOT / "linerelifer_addon" / "styles" / "default.json").read_text())
    (styles / "grey.json").write_text(json.dumps({**meta, "name": "grey", "ink_tone": 0.4}))
    r = run_cli("refine", str(tmp_path / "pass.exr"), "-o", str(tmp_path / "grey.exr"), "--style",
                str(styles / "grey.keras"), "--quiet")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "grey.exr"), cv2.IMREAD_UNCHANGED)
    inked = out[..., 3] > 0.9
    assert np.abs(out[..., :3][inked] / out[..., 3][inked][:, None] - srgb_to_linear(np.float32(0.4))).max() < 0.01

    # HDR: a drawing on paper at 4.0 keeps it, at strength 0 every value.
    hdr = np.repeat((4.0 - 3.9 * line_image(96, 128, seed=6))[..., None], 3, axis=2).astype(np.float32)
    cv2.imwrite(str(tmp_path / "hdr.exr"), hdr)
    for strength in ("0", "1"):
        r = run_cli("refine", str(tmp_path / "hdr.exr"), "-o", str(tmp_path / f"hdr{strength}.exr"),
                    "--strength", strength, "--quiet")
        assert r.returncode == 0, r.stderr
        back = cv2.imread(str(tmp_path / f"hdr{strength}.exr"), cv2.IMREAD_UNCHANGED)
        if strength == "0":
            np.testing.assert_array_equal(back, hdr)
        else:
            assert np.mean(back == 4.0) > 0.5, "paper above 1 was clipped"

    # A phone photo stored landscape with an EXIF turn comes back upright, as it was shown.
    photo = np.full((80, 140), 255, np.uint8)
    cv2.line(photo, (10, 40), (130, 40), 0, 3)
    _exif_rotated_jpeg(tmp_path / "phone.jpg", photo)
    r = run_cli("refine", str(tmp_path / "phone.jpg"), "-o", str(tmp_path / "phone.png"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "phone.png"), cv2.IMREAD_UNCHANGED).shape[:2] == (140, 80)

    # One line each: a damaged EXR, signed 16-bit pixels, a file name given for several outputs.
    (tmp_path / "cut.exr").write_bytes((tmp_path / "pass.exr").read_bytes()[:300])
    cv2.imwrite(str(tmp_path / "signed.tif"), (photo.astype(np.int16) - 128))
    for args, expect in (([str(tmp_path / "cut.exr"), "-o", str(tmp_path / "x.png")], "an EXR that cannot be read"),
                         ([str(tmp_path / "signed.tif"), "-o", str(tmp_path / "x.png")], "int16 pixels are not supported"),
                         ([str(tmp_path / "hdr.exr"), str(tmp_path / "pass.exr"), "-o", str(tmp_path / "both.exr")],
                          "names an image file, but several inputs need an output folder")):
        r = run_cli("refine", *args, "--quiet")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and expect in lines[0], r.stderr
    assert not (tmp_path / "both.exr").exists()


def test_drawings_in_several_inks_and_on_a_transparent_card_are_refined_as_drawn(tmp_path) -> None:
    """A red and a blue line keep their colours (one typical ink colour painted the red line
    blue); a drawing on an opaque card with a transparent margin (a rotated scan) is refined
    as a drawing, its transparency untouched (it was taken for a pass: lines left as they
    were, the card's edge refined)."""
    img = np.full((160, 240, 3), 255, np.uint8)
    cv2.line(img, (10, 30), (230, 40), (255, 0, 0), 2, cv2.LINE_AA)  # BGR: blue
    cv2.line(img, (10, 120), (230, 130), (0, 0, 255), 2, cv2.LINE_AA)  # red
    cv2.imwrite(str(tmp_path / "inks.png"), img)
    r = run_cli("refine", str(tmp_path / "inks.png"), "-o", str(tmp_path / "inks_out.png"), "--quiet")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "inks_out.png"))
    assert np.abs(out.astype(int) - img).max() > 60  # the style changed the lines
    for band, channel in ((slice(15, 55), 0), (slice(105, 145), 2)):  # BGR index of the line's colour
        inked = out[band][out[band].min(axis=2) < 128]
        assert len(inked) > 200
        others = [c for c in range(3) if c != channel]
        # the default style's thick-thin thins these lines: more part-covered edge pixels (40.8)
        assert inked[:, channel].min() > 200 and inked[:, others].mean() < 48, inked.mean(axis=0)

    card = np.zeros((160, 200, 4), np.uint8)
    card[20:140, 20:180] = 255
    cv2.line(card, (30, 30), (170, 125), (0, 0, 0, 255), 2, cv2.LINE_AA)
    cv2.circle(card, (100, 80), 40, (0, 0, 0, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "card.png"), card)
    r = run_cli("refine", str(tmp_path / "card.png"), "-o", str(tmp_path / "card_out.png"), "--quiet")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "card_out.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(out[..., 3], card[..., 3]), "the card's transparency changed"
    assert np.count_nonzero((out[..., :3] != card[..., :3]).any(axis=2)) > 300, "the lines were not refined"
