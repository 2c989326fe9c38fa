"""A battery of bad and odd inputs, through the CLI and through the extension's code path.

Every case ends in either a correct result (shape, dtype and convention of the input kept)
or one line naming the file and the cause (exit code 2 from the CLI, one `report`/log line
in Blender), with the input's bytes unchanged, no temp file left beside the output and no
partial output. Three routes, all with real components:

* the CLI: `python -m linerelifer_addon refine ...` in a subprocess, the bundled style;
* the extension's Blender-free path: the conversion -> WorkerClient.refine -> conversion
  calls the pipeline makes (pipeline.py itself imports bpy), on one warm worker;
* the extension itself: tests/blender_bad_inputs.py runs in a bpy subprocess and sends the
  same files through pipeline.refine_frame_sync (auto-refine of a written frame) and the
  Refine Lines operator.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import ROOT, dilate, line_image  # noqa: E402
from linerelifer_addon.core.client import RequestError, WorkerClient  # noqa: E402
from linerelifer_addon.core.conversion import from_coverage, to_coverage  # noqa: E402
from linerelifer_addon.imagefiles import read_image  # noqa: E402

TESTS = Path(__file__).resolve().parent
H, W = 150, 190  # drawings: lines in the top-left part, blank paper elsewhere
MARGIN = 40  # beyond this many pixels from the input's ink, nothing may change


# -- inputs ----------------------------------------------------------------------------

def drawing_cov(h: int = H, w: int = W, seed: int = 1) -> np.ndarray:
    cov = np.zeros((h, w), np.float32)
    ph, pw = min(80, h), min(100, w)
    cov[10:10 + ph, 10:10 + pw] = line_image(ph, pw, seed=seed)[: h - 10, : w - 10]
    return cov


COV = drawing_cov()


def u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def u16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def imwrite(path: Path, rgb_or_gray: np.ndarray, params: tuple = ()) -> None:
    img = rgb_or_gray
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix, img, list(params))
    assert ok, path
    path.write_bytes(buf.tobytes())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w×h pixels and holds almost none (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" + b"\xff" * 64)) + png_chunk(b"IEND", b""))


def write_la_png(path: Path, gray: np.ndarray, alpha: np.ndarray) -> None:
    """Gray+alpha PNG (colour type 4), which OpenCV cannot write."""
    from PIL import Image

    Image.fromarray(np.dstack([gray, alpha]).astype(np.uint8), "LA").save(path)


FAR = ~dilate(COV > 0, MARGIN)


# -- the odd inputs that must work -----------------------------------------------------
# name -> (file name, maker(path), check(input pixels, output pixels)); pixels as
# read_image returns them (RGB order).

def _make_row(path: Path) -> None:
    row = np.full((1, 20000), 255, np.uint8)
    row[0, 5000:5100] = 0
    imwrite(path, row)


def _make_col(path: Path) -> None:
    col = np.full((20000, 1), 255, np.uint8)
    col[12000:12100, 0] = 0
    imwrite(path, col)


def _colour(cov: np.ndarray) -> np.ndarray:
    paper = np.array([0.94, 0.86, 0.66], np.float32)
    ink = np.array([0.10, 0.12, 0.45], np.float32)
    return paper * (1 - cov[..., None]) + ink * cov[..., None]


def _make_exr(path: Path) -> None:
    gray = (1 - COV).astype(np.float32)
    gray[0, 0], gray[0, 1], gray[0, 2] = np.nan, np.inf, -np.inf
    gray[H - 1, :20] = -0.5
    gray[H - 2, :20] = 4.0  # HDR paper
    imwrite(path, np.dstack([gray] * 3))


def _make_exr_pass(path: Path) -> None:
    rgba = np.zeros((H, W, 4), np.float32)
    rgba[..., :3] = (0.05, 0.1, 0.6)
    rgba[..., 3] = COV
    rgba[5, 5, :3] = np.nan
    rgba[6, 6, 3] = np.inf
    imwrite(path, rgba)


def _make_pass(path: Path, dtype=np.uint8) -> None:
    conv = u8 if dtype == np.uint8 else u16
    rgba = np.zeros((H, W, 4), np.float32)
    rgba[..., :3] = (0.1, 0.2, 0.8)
    rgba[..., 3] = COV
    imwrite(path, conv(rgba))


def _chk_shape(inp: np.ndarray, out: np.ndarray) -> None:
    assert out.shape == inp.shape, (out.shape, inp.shape)
    assert out.dtype == inp.dtype, (out.dtype, inp.dtype)


def _chk_equal(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)
    assert np.array_equal(inp, out), "an input without lines must come back unchanged"


def _scale(a: np.ndarray) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)


def _chk_drawing(dark_on_light: bool, alpha_kept: bool = False):
    """Paper far from the lines unchanged, the lines still there and on the same side."""
    def check(inp: np.ndarray, out: np.ndarray) -> None:
        _chk_shape(inp, out)
        s = _scale(inp)
        fi, fo = inp.astype(np.float64) / s, out.astype(np.float64) / s
        assert np.abs(fi[FAR] - fo[FAR]).max() <= 1.5 / 255, "paper far from the lines changed"
        lum_in = fi[..., :3].mean(axis=-1) if fi.ndim == 3 else fi
        lum_out = fo[..., :3].mean(axis=-1) if fo.ndim == 3 else fo
        ink = COV > 0.9
        paper = np.median(lum_in)
        if dark_on_light:
            assert lum_out[ink].mean() < paper - 0.3, "the dark lines disappeared"
            assert np.median(lum_out) == pytest.approx(paper, abs=2 / 255)
        else:
            assert lum_out[ink].mean() > paper + 0.3, "the light lines disappeared"
            assert np.median(lum_out) == pytest.approx(paper, abs=2 / 255), "the background turned light"
        if alpha_kept:
            assert np.array_equal(inp[..., 3], out[..., 3]), "an opaque drawing's alpha changed"
    return check


def _chk_pass(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)
    s = _scale(inp)
    a_in, a_out = inp[..., 3] / s, out[..., 3] / s
    assert np.abs(a_in[FAR] - a_out[FAR]).max() <= 1.5 / 255, "transparency far from the lines changed"
    ink = COV > 0.9
    assert a_out[ink].mean() > 0.5, "the lines disappeared"
    # The line colour is kept where there are lines.
    strong = a_out > 0.5
    rgb = out[..., :3][strong].astype(np.float64) / s
    assert np.abs(rgb.mean(axis=0) - np.array([0.1, 0.2, 0.8])).max() < 0.02


def _chk_exr(inp: np.ndarray, out: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape == inp.shape
    assert np.isfinite(out).all(), "NaN or inf in the output"
    assert out.min() >= 0.0 and out.max() <= 4.0
    # HDR paper stays as it was, not clipped to 1 (an EXR render loses no highlights)
    assert (out[H - 2, :20] == 4.0).all(), "HDR values were clipped"
    ink = COV > 0.9
    assert out[ink].mean() < 0.4, "the lines disappeared"
    far = FAR.copy()
    far[:3, :] = far[-3:, :] = False  # the NaN/inf/negative/HDR test pixels
    assert np.abs(np.nan_to_num(inp[far]) - out[far]).max() <= 1e-3


def _chk_exr_pass(inp: np.ndarray, out: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape == inp.shape
    assert np.isfinite(out).all(), "NaN or inf in the output"
    assert out[..., 3][COV > 0.9].mean() > 0.5


def _chk_row(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)
    assert out[0, 5000:5100].mean() < 128, "the line disappeared"
    assert (out[0, :4900] == 255).all() and (out[0, 5200:] == 255).all()


def _chk_col(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)
    assert out[12000:12100, 0].mean() < 128, "the line disappeared"
    assert (out[:11900, 0] == 255).all() and (out[12200:, 0] == 255).all()


def _chk_16bit(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_drawing(True)(inp, out)
    assert (out % 257 != 0).any(), "the output lost its 16-bit precision"


def _chk_jpeg(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)
    ink = COV > 0.9
    assert out[ink].mean() < 100 and np.median(out) >= 240


def _chk_noise(inp: np.ndarray, out: np.ndarray) -> None:
    _chk_shape(inp, out)


OK_CASES = {
    "1x1": ("one.png", lambda p: imwrite(p, np.zeros((1, 1), np.uint8)), _chk_equal),
    "1x1_rgba": ("one_rgba.png", lambda p: imwrite(p, np.full((1, 1, 4), 255, np.uint8)), _chk_equal),
    "1x20000": ("row.png", _make_row, _chk_row),
    "20000x1": ("col.png", _make_col, _chk_col),
    "all_black": ("black.png", lambda p: imwrite(p, np.zeros((64, 64), np.uint8)), _chk_equal),
    "all_white": ("white.png", lambda p: imwrite(p, np.full((64, 64), 255, np.uint8)), _chk_equal),
    "all_transparent": ("clear.png", lambda p: imwrite(p, np.zeros((40, 50, 4), np.uint8)), _chk_equal),
    "white_on_black": ("wob.png", lambda p: imwrite(p, u8(COV)), _chk_drawing(False)),
    "coloured_background": ("colour.png", lambda p: imwrite(p, u8(_colour(COV))), _chk_drawing(True)),
    "gray_alpha": ("gray_alpha.png", lambda p: write_la_png(p, u8(1 - COV), np.full(COV.shape, 255)),
                   _chk_drawing(True, alpha_kept=True)),
    "rgba_opaque": ("opaque.png", lambda p: imwrite(p, u8(np.dstack([1 - COV] * 3 + [np.ones_like(COV)]))),
                    _chk_drawing(True, alpha_kept=True)),
    "freestyle_pass_8bit": ("pass8.png", _make_pass, _chk_pass),
    "freestyle_pass_16bit": ("pass16.png", lambda p: _make_pass(p, np.uint16), _chk_pass),
    "gray_16bit": ("gray16.png", lambda p: imwrite(p, u16(1 - COV)), _chk_16bit),
    "exr_nan_inf_negative": ("float.exr", _make_exr, _chk_exr),
    "exr_pass_nan": ("pass.exr", _make_exr_pass, _chk_exr_pass),
    "float_tiff": ("float.tif", lambda p: imwrite(p, (1 - COV).astype(np.float32)), _chk_drawing(True)),
    "bmp": ("drawing.bmp", lambda p: imwrite(p, u8(1 - COV)), _chk_drawing(True)),
    "heavy_jpeg_artefacts": ("artefacts.jpg", lambda p: imwrite(p, u8(1 - COV), (cv2.IMWRITE_JPEG_QUALITY, 3)),
                             _chk_jpeg),
    "noise": ("noise.png", lambda p: imwrite(p, np.random.default_rng(0).integers(0, 256, (60, 70, 3), np.uint8)),
              _chk_noise),
    "space_and_non_ascii_name": ("a b ç 日本.png", lambda p: imwrite(p, u8(1 - COV)), _chk_drawing(True)),
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stray_files(folder: Path) -> list[str]:
    """Temp files (.NAME-*), probes and Blender's .lr-tmp files left in a folder."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@contextlib.contextmanager
def read_only(folder: Path):
    """A folder nobody can write in (root ignores permissions, so it is made immutable)."""
    folder.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as root without chattr: cannot make a read-only folder")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linerelifer_addon", "refine", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_error(r: subprocess.CompletedProcess, names: tuple[str, ...], cause: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    line = errors[0]
    assert any(n in line for n in names), (names, line)
    assert re.search(cause, line, re.I), (cause, line)
    return line


# -- shared fixtures -------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs") / "odd inputs é 日本"
    folder.mkdir()
    paths = {}
    for name, (fname, make, _) in OK_CASES.items():
        paths[name] = folder / fname
        make(paths[name])
    return paths


@pytest.fixture(scope="module")
def hashes(odd_inputs) -> dict[str, str]:
    return {name: sha(p) for name, p in odd_inputs.items()}


@pytest.fixture(scope="module")
def bad_styles(tmp_path_factory, default_style) -> dict[str, Path]:
    """Style files a user might be handed: broken ones and ones that try to run code."""
    import keras

    folder = tmp_path_factory.mktemp("bad styles")
    meta = json.loads(default_style.with_suffix(".json").read_text())
    marker = folder / "CODE_RAN"
    styles = {}

    def save(name: str, model=None, raw: bytes | None = None, with_meta: bool = True) -> None:
        path = folder / f"{name}.keras"
        if model is not None:
            model.save(path)
        else:
            path.write_bytes(raw)
        if with_meta:
            path.with_suffix(".json").write_text(json.dumps({**meta, "name": name}))
        styles[name] = path

    inp = keras.Input((None, None, 1))
    marker_path = str(marker)  # the lambda's closure is saved with it
    m = keras.Model(inp, keras.layers.Lambda(lambda x: (open(marker_path, "w").close(), x)[1])(inp))
    if marker.exists():  # building the model called the lambda once
        marker.unlink()
    save("lambda_layer", m)

    @keras.saving.register_keras_serializable(package="linerelifer_tests")
    class MarkerLayer(keras.layers.Layer):
        def call(self, x):
            open(marker_path, "w").close()
            return x

    inp = keras.Input((None, None, 1))
    save("custom_object", keras.Model(inp, MarkerLayer()(inp)))
    if marker.exists():
        marker.unlink()

    # A config that names a function of another module (os.system) as a layer.
    import zipfile

    src = zipfile.ZipFile(default_style)
    cfg = json.loads(src.read("config.json"))
    layer = cfg["config"]["layers"][1]
    cfg["config"]["layers"][1] = {**layer, "module": "os", "class_name": "system", "registered_name": None,
                                  "config": {"command": f"touch '{marker}'"}}
    hacked = folder / "module_function.keras"
    with zipfile.ZipFile(hacked, "w") as z:
        for n in src.namelist():
            z.writestr(n, json.dumps(cfg) if n == "config.json" else src.read(n))
    hacked.with_suffix(".json").write_text(json.dumps({**meta, "name": "module_function"}))
    styles["module_function"] = hacked

    inp3 = keras.Input((None, None, 3))
    save("wrong_shape", keras.Model(inp3, keras.layers.Conv2D(2, 1)(inp3)))
    save("corrupt", raw=b"this is not a keras file\n" * 10)
    save("truncated", raw=default_style.read_bytes()[: default_style.stat().st_size // 2])
    save("without_metadata", raw=default_style.read_bytes(), with_meta=False)
    styles["_marker"] = marker
    return styles


STYLE_CASES = {  # name -> what the one line must say
    "lambda_layer": r"could not be loaded safely \(.*Lambda",
    "custom_object": r"could not be loaded safely \(Could not locate class 'MarkerLayer'",
    "module_function": r"could not be loaded safely \(Could not locate class 'system'",
    "wrong_shape": r"is not a line style",
    "corrupt": r"not a \.keras file",
    "truncated": r"not a \.keras file",
    "without_metadata": r"metadata .*without_metadata\.json is missing",
}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """An interpreter without TensorFlow."""
    venv = tmp_path_factory.mktemp("bare venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


# -- the CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_batch(odd_inputs, hashes, tmp_path_factory):
    """All the odd-but-valid inputs refined by one CLI call (one warm worker)."""
    out = tmp_path_factory.mktemp("outputs") / "out ü"
    out.mkdir()
    present = out / OK_CASES["white_on_black"][0]
    present.write_bytes(b"an older output, to be replaced")
    folder = next(iter(odd_inputs.values())).parent
    r = run_cli(str(folder), "-o", str(out))
    return r, out


def test_cli_odd_inputs_run(cli_batch, odd_inputs, hashes) -> None:
    r, out = cli_batch
    assert r.returncode == 0, r.stderr
    assert not error_lines(r.stderr) and "Traceback" not in r.stderr
    assert f"{len(OK_CASES)} refined, 0 failed; worker started 1 time" in r.stderr
    assert stray_files(out) == [], "temp files left in the output folder"
    assert stray_files(next(iter(odd_inputs.values())).parent) == []


@pytest.mark.parametrize("case", sorted(OK_CASES))
def test_cli_odd_input(cli_batch, odd_inputs, hashes, case: str) -> None:
    r, out = cli_batch
    src = odd_inputs[case]
    assert sha(src) == hashes[case], "the input was modified"
    dst = out / src.name
    assert dst.is_file(), r.stderr
    OK_CASES[case][2](read_image(src), read_image(dst))
    if case == "white_on_black":  # the output already present was replaced, with normal permissions
        assert dst.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("case, out_name, channels, dtype", [
    ("freestyle_pass_8bit", "rgba as.jpg", 3, np.uint8),   # RGBA input, JPEG output: over white paper
    ("gray_16bit", "sixteen bit.jpg", 0, np.uint8),       # 16-bit input, 8-bit format
    ("exr_nan_inf_negative", "from float.png", 3, np.uint16),  # float input, PNG keeps 16 bits, sRGB
    ("gray_16bit", "to float.exr", 0, np.float32),        # 16-bit input, EXR: linear floats in 0..1
])
def test_cli_output_format_differs(odd_inputs, hashes, tmp_path, case, out_name, channels, dtype) -> None:
    src = odd_inputs[case]
    dst = tmp_path / out_name
    r = run_cli(str(src), "-o", str(dst), "--quiet")
    assert r.returncode == 0, r.stderr
    out = read_image(dst)
    assert out.dtype == dtype and out.shape[:2] == read_image(src).shape[:2]
    assert (out.ndim == 2 if channels == 0 else out.shape[2] == channels), out.shape
    assert sha(src) == hashes[case] and stray_files(tmp_path) == []
    # What the values mean carries over: lines stay where they were, paper stays paper.
    lum = out.astype(np.float64).mean(axis=-1) if out.ndim == 3 else out.astype(np.float64)
    full = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0}[dtype]
    far = ~dilate(COV > 0.05, 4)
    assert abs(np.median(lum[far]) / full - 1.0) < 0.02, "paper is not white"
    assert np.median(lum[COV > 0.9]) / full < 0.35, "the lines are gone"


def test_cli_one_frame_folder_and_thread_count(odd_inputs, tmp_path) -> None:
    """A folder holding one frame goes to a new output folder as a folder of several does;
    --threads 0 is refused as a usage error, not blamed on the style."""
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(odd_inputs["freestyle_pass_8bit"], frames / "f0001.png")
    r = run_cli(str(frames), "-o", str(tmp_path / "new" / "refined"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "refined" / "f0001.png").is_file()
    r = run_cli(str(frames / "f0001.png"), "-o", str(tmp_path / "other") + os.sep, "--quiet")  # -o new/
    assert r.returncode == 0 and (tmp_path / "other" / "f0001.png").is_file(), r.stderr
    r = run_cli(str(frames / "f0001.png"), "-o", str(tmp_path / "x.png"), "--threads", "0")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --threads 0 must be 1 or more (leave it out to use every core)"], r.stderr


def test_values_are_recoded_between_integer_and_float_files(tmp_path) -> None:
    """Integer files hold sRGB-encoded values, EXR linear ones; alpha is coverage in both."""
    from linerelifer_addon.imagefiles import write_image

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[..., 3] = [[0, 64, 128, 255]] * 4
    write_image(tmp_path / "a.exr", rgba)
    back = read_image(tmp_path / "a.exr")
    assert back.dtype == np.float32
    alpha = np.array([0, 64 / 255, 128 / 255, 1], np.float32)
    np.testing.assert_allclose(back[0, :, 3], alpha, atol=1e-6)  # alpha as is
    # sRGB 128/255 made linear, and multiplied by alpha as EXR stores it (Blender reads it so)
    np.testing.assert_allclose(back[0, :, :3], 0.2158605 * alpha[:, None].repeat(3, 1), atol=1e-4)
    write_image(tmp_path / "d.png", back, premultiplied=True)  # and back to straight sRGB
    again = read_image(tmp_path / "d.png")
    assert np.all(np.abs(again[0, 1:, :3].astype(np.int64) - round(128 / 255 * 65535)) <= 300), again[0]
    linear = np.full((4, 4, 3), 0.2, np.float32)
    write_image(tmp_path / "b.png", linear)
    assert np.all(np.abs(read_image(tmp_path / "b.png").astype(np.int64) - round(0.4845292 * 65535)) <= 1)
    write_image(tmp_path / "c.jpg", rgba)  # no alpha in JPEG: over white
    jpg = read_image(tmp_path / "c.jpg").astype(np.float64)[..., 0]
    a = rgba[0, :, 3] / 255.0
    expect = 128 * a + 255 * (1 - a)
    assert np.all(np.abs(jpg[1] - expect) <= 3), (jpg[1], expect)


def _bad_file(kind: str, folder: Path) -> tuple[Path, str]:
    """An input that cannot be read, and the cause its error line must give."""
    good = folder / "good.png"
    imwrite(good, u8(1 - COV))
    data = good.read_bytes()
    path = folder / {"text_named_png": "notes.png", "input_is_folder": "empty folder"}.get(kind, f"{kind}.png")
    if kind == "zero_bytes":
        path.write_bytes(b"")
        return path, "empty"
    if kind == "png_signature_only":
        path.write_bytes(data[:8])
        return path, "not a readable image"
    if kind == "truncated_png":
        path.write_bytes(data[: len(data) // 2])
        return path, "not a readable image"
    if kind == "text_named_png":
        path.write_text("these are my notes, not a picture\n" * 20)
        return path, "not a readable image"
    if kind == "header_claims_100000x100000":
        path.write_bytes(png_header_only(100000, 100000))
        return path, "larger than 16384×16384"
    if kind == "header_claims_20000x20000":
        path.write_bytes(png_header_only(20000, 20000))
        return path, "larger than 16384×16384"
    if kind == "input_is_folder":
        path.mkdir()
        return path, "holds no images"
    raise AssertionError(kind)


BAD_FILES = ["zero_bytes", "png_signature_only", "truncated_png", "text_named_png",
             "header_claims_100000x100000", "header_claims_20000x20000", "input_is_folder"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_cli_unreadable_input(tmp_path, kind: str) -> None:
    src, cause = _bad_file(kind, tmp_path)
    before = sha(src) if src.is_file() else None
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli(str(src), "-o", str(out / "result.png"))
    assert_one_error(r, (str(src),), cause)
    assert (sha(src) if src.is_file() else None) == before
    assert list(out.iterdir()) == [], "partial output or temp files"


@pytest.mark.parametrize("kind", ["read_only_folder", "unsupported_format", "missing_folder"])
def test_cli_unwritable_output(odd_inputs, hashes, tmp_path, kind: str) -> None:
    src = odd_inputs["white_on_black"]
    folder = tmp_path / "outputs"
    folder.mkdir()
    dst = folder / "result.png"
    cause = {"read_only_folder": r"cannot write in .*(permission denied|operation not permitted|read-only)",
             "unsupported_format": "unsupported output format", "missing_folder": "does not exist"}[kind]
    if kind == "unsupported_format":
        dst = folder / "result.gif"
    elif kind == "missing_folder":
        dst = folder / "not here" / "result.png"
    with read_only(folder) if kind == "read_only_folder" else contextlib.nullcontext():
        r = run_cli(str(src), "-o", str(dst))
    assert_one_error(r, (str(dst),), cause)
    assert "worker started" not in r.stderr, "the output must be checked before any refinement"
    assert list(folder.iterdir()) == []
    assert sha(src) == hashes["white_on_black"]


def test_cli_output_name_taken_by_a_folder(odd_inputs, hashes, tmp_path) -> None:
    """The output name is a folder's: refused before any refinement, one line."""
    src = odd_inputs["white_on_black"]
    out = tmp_path / "out"
    (out / src.name).mkdir(parents=True)
    r = run_cli(str(src), "-o", str(out) + os.sep)
    assert_one_error(r, (str(out / src.name),), "is a directory")
    assert "worker started" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == [src.name] and (out / src.name).is_dir()
    assert sha(src) == hashes["white_on_black"]


def test_cli_bad_file_among_good_ones(odd_inputs, tmp_path) -> None:
    """One unreadable file in a folder: its one error line, the others refined, exit 2."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(odd_inputs["coloured_background"], folder / name)
    (folder / "b.png").write_bytes(odd_inputs["coloured_background"].read_bytes()[:300])
    out = tmp_path / "out"
    r = run_cli(str(folder), "-o", str(out))
    assert_one_error(r, (str(folder / "b.png"),), "not a readable image")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


@pytest.mark.parametrize("case", sorted(STYLE_CASES))
def test_cli_bad_style(bad_styles, odd_inputs, tmp_path, case: str) -> None:
    style = bad_styles[case]
    before = sha(style)
    out = tmp_path / "o.png"
    r = run_cli(str(odd_inputs["white_on_black"]), "-o", str(out), "--style", str(style))
    line = assert_one_error(r, (str(style), str(style.with_suffix(".json"))), STYLE_CASES[case])
    assert line.count("\n") == 0 and len(line) < 400
    assert not out.exists() and stray_files(tmp_path) == []
    assert sha(style) == before
    assert not bad_styles["_marker"].exists(), "code from the style file ran"


def test_cli_missing_style(odd_inputs, tmp_path) -> None:
    style = tmp_path / "gone" / "style.keras"
    r = run_cli(str(odd_inputs["white_on_black"]), "-o", str(tmp_path / "o.png"), "--style", str(style))
    assert_one_error(r, (str(style),), "does not exist")


def test_cli_missing_interpreter(odd_inputs, tmp_path) -> None:
    python = tmp_path / "no such python" / "python3"
    r = run_cli(str(odd_inputs["white_on_black"]), "-o", str(tmp_path / "o.png"), "--python", str(python))
    assert_one_error(r, (str(python),), "does not exist")
    assert not (tmp_path / "o.png").exists()


def test_cli_interpreter_without_tensorflow(odd_inputs, tmp_path, bare_python) -> None:
    r = run_cli(str(odd_inputs["white_on_black"]), "-o", str(tmp_path / "o.png"), "--python", bare_python)
    assert_one_error(r, (bare_python,), "lacks the module")
    assert not (tmp_path / "o.png").exists() and stray_files(tmp_path) == []


# -- the extension's Blender-free path -------------------------------------------------

@pytest.fixture(scope="module")
def client():
    with WorkerClient() as c:
        yield c


@pytest.mark.parametrize("case", sorted(OK_CASES))
def test_core_path_odd_input(client, odd_inputs, hashes, default_style, case: str) -> None:
    """What the pipeline does with the pixels Blender hands it, on one warm worker."""
    pixels = read_image(odd_inputs[case])
    before = pixels.copy()
    line = to_coverage(pixels)
    refined = client.refine(line.coverage, default_style, tile=512)
    assert refined.shape == line.coverage.shape and refined.dtype == np.float32
    assert np.isfinite(refined).all()
    out = from_coverage(line, refined, strength=1.0)
    OK_CASES[case][2](before, out)
    np.testing.assert_array_equal(pixels, before)  # the caller's array is not modified
    assert client.starts == 1


@pytest.mark.parametrize("pixels, cause", [
    (np.zeros((0, 5), np.uint8), "is empty"),
    (np.zeros((5, 0, 3), np.uint8), "is empty"),
    (np.zeros((5, 5, 7), np.uint8), "not an image"),
    (np.zeros((5,), np.uint8), "is empty"),
    (np.zeros((5, 5), np.complex64), "pixel type complex64 is not supported"),
    (np.zeros((5, 5), object), "pixel type object is not supported"),
])
def test_core_path_bad_arrays(pixels, cause) -> None:
    with pytest.raises(ValueError, match=cause):
        to_coverage(pixels)


def test_core_path_bad_coverage(client, default_style) -> None:
    with pytest.raises(ValueError, match="2-D"):
        client.refine(np.zeros((4, 4, 1), np.float32), default_style)
    with pytest.raises(ValueError, match="empty"):
        client.refine(np.zeros((0, 4), np.float32), default_style)


@pytest.mark.parametrize("case", sorted(STYLE_CASES))
def test_core_path_bad_style(client, bad_styles, default_style, case: str) -> None:
    style = bad_styles[case]
    pid = client.pid
    with pytest.raises(RequestError) as err:
        client.refine(COV, style, tile=512)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    assert str(style) in message or str(style.with_suffix(".json")) in message
    assert re.search(STYLE_CASES[case], message), message
    assert not bad_styles["_marker"].exists(), "code from the style file ran"
    # The worker refused the file and goes on serving.
    assert client.refine(COV, default_style, tile=512).shape == COV.shape
    assert client.pid == pid or pid is None


# -- 16k×16k ---------------------------------------------------------------------------

BIG = 16384


def _big_drawing() -> np.ndarray:
    img = np.full((BIG, BIG), 255, np.uint8)
    img[1000:1080, 2000:2100] = u8(1 - line_image(80, 100, seed=3))
    img[BIG - 90:BIG - 10, BIG - 100:] = u8(1 - line_image(80, 100, seed=4))
    return img


def test_16k_image_worker_memory(default_style) -> None:
    """A mostly blank 16k×16k frame: the worker never holds the whole frame. A worker of its own:
    the peak is the process's, and a shared one's would include what earlier tests sent it."""
    cov = np.zeros((BIG, BIG), np.float32)
    cov[1000:1080, 2000:2100] = line_image(80, 100, seed=3)
    with WorkerClient() as client:
        refined = client.refine(cov, default_style)
        peak = client.last_stats["rss_peak_mb"]
        seconds = client.last_stats["seconds"]
    print(f"\n16k×16k: worker peak RSS {peak:.0f} MB, {seconds:.1f} s in the worker")
    assert peak <= 1024, f"worker peak RSS {peak:.0f} MB is over 1 GB"
    assert refined.shape == (BIG, BIG)
    assert refined[1000:1080, 2000:2100].max() > 0.5
    # far from the lines the result is paper, up to the blank tolerance the engine skips tiles by
    assert refined[:900].max() <= 1e-3 and refined[1200:].max() <= 1e-3


def test_16k_image_cli(tmp_path) -> None:
    """The same through the CLI: a correct file, and the CLI's own memory stays bounded
    (the conversion works in blocks of rows instead of full-size float RGB copies)."""
    src = tmp_path / "big.png"
    cv2.imwrite(str(src), _big_drawing())
    before = sha(src)
    script = ("import resource, runpy, sys; sys.argv = ['linerelifer_addon'] + sys.argv[1:]\n"
              "try:\n    runpy.run_module('linerelifer_addon', run_name='__main__')\n"
              "finally:\n    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", script, "refine", str(src), "-o", str(tmp_path / "out.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cli_mb = int(re.search(r"MAXRSS (\d+)", r.stderr).group(1)) / 1024
    worker_mb = float(re.search(r"peak memory (\d+) MB", r.stderr).group(1))
    print(f"\n16k×16k CLI: CLI process peak {cli_mb:.0f} MB, worker peak {worker_mb:.0f} MB")
    assert cli_mb < 4096, f"the CLI process peaked at {cli_mb:.0f} MB"
    assert worker_mb <= 1024
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (BIG, BIG) and out.dtype == np.uint8
    assert out[1000:1080, 2000:2100].min() < 100 and out[BIG - 90:BIG - 10, BIG - 100:].min() < 100
    assert (out[3000:14000] == 255).all()
    assert sha(src) == before and stray_files(tmp_path) == []


# -- the extension itself, in Blender ---------------------------------------------------

@pytest.fixture(scope="module")
def blender_run(tmp_path_factory, odd_inputs, hashes, bad_styles, bare_python, default_style):
    """The battery through the real add-on in a bpy process (one warm worker)."""
    base = tmp_path_factory.mktemp("blender battery")
    frames_dir = base / "frames é"
    frames_dir.mkdir()
    frames = {}
    for name, src in odd_inputs.items():
        if name in ("heavy_jpeg_artefacts", "noise", "float_tiff", "1x1_rgba"):
            continue  # render outputs are PNG/EXR/TIFF 8/16-bit; these add nothing here
        frames[name] = frames_dir / src.name
        shutil.copy(src, frames[name])
    bad_dir = base / "unreadable"
    bad_dir.mkdir()
    causes = {}
    for kind in BAD_FILES[:-1]:
        sub = bad_dir / kind
        sub.mkdir()
        frames[kind], causes[kind] = _bad_file(kind, sub)
    # An output already present is replaced; a read-only frame folder gives one line.
    (frames_dir / "linerelifer").mkdir()
    (frames_dir / "linerelifer" / frames["white_on_black"].name).write_bytes(b"old output")
    taken = base / "taken"
    (taken / "linerelifer" / "frame.png").mkdir(parents=True)
    shutil.copy(odd_inputs["white_on_black"], taken / "frame.png")
    frames["output_name_taken_by_a_folder"] = taken / "frame.png"
    ro = base / "read only"
    ro.mkdir()
    shutil.copy(odd_inputs["white_on_black"], ro / "frame.png")
    frames["read_only_folder"] = ro / "frame.png"
    styles_dir = base / "user styles"
    styles_dir.mkdir()
    names = []
    for name in STYLE_CASES:
        if name == "without_metadata":
            continue  # not listed in Blender (no metadata), so it cannot be chosen
        shutil.copy(bad_styles[name], styles_dir / bad_styles[name].name)
        shutil.copy(bad_styles[name].with_suffix(".json"), styles_dir / f"{name}.json")
        names.append(name)
    shutil.copy(default_style, styles_dir / "doomed.keras")
    shutil.copy(default_style.with_suffix(".json"), styles_dir / "doomed.json")
    spec = {
        "frames": {k: str(v) for k, v in frames.items()},
        "good_frame": str(frames["white_on_black"]),
        "styles": names,
        "deleted_style": {"name": "doomed", "files": [str(styles_dir / "doomed.keras"),
                                                       str(styles_dir / "doomed.json")]},
        "render": True,
        "pythons": {"missing_python": str(base / "no such python" / "python3"),
                    "python_without_tensorflow": bare_python},
    }
    (base / "spec.json").write_text(json.dumps(spec))
    tmp = base / "tmp"
    tmp.mkdir()
    env = {**os.environ, "LINERELIFER_STYLES_DIR": str(styles_dir), "TMPDIR": str(tmp),
           "BLENDER_USER_RESOURCES": str(base / "blender user")}
    ro_hash = sha(ro / "frame.png")
    with read_only(ro):
        proc = subprocess.run([sys.executable, str(TESTS / "blender_bad_inputs.py"), str(base / "spec.json"),
                               str(base / "result.json")], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((base / "result.json").read_text())
    return {"result": result, "frames": frames, "causes": causes, "frames_dir": frames_dir, "tmp": tmp,
            "stdout": proc.stdout, "ro_hash": ro_hash, "hashes_before": {k: sha(v) for k, v in frames.items()
                                                                           if v.is_file()} | {"read_only_folder": ro_hash}}


def _one_line(res: dict) -> str:
    assert not res["ok"], res
    msg = res["message"]
    assert "\n" not in msg and "Traceback" not in msg and msg.endswith("."), msg
    assert res["leaked_images"] == [], res["leaked_images"]
    return msg


BLANK = ("1x1", "all_black", "all_white", "all_transparent")
BLENDER_OK = sorted(set(OK_CASES) - {"heavy_jpeg_artefacts", "noise", "float_tiff", "1x1_rgba"})


@pytest.mark.parametrize("case", BLENDER_OK)
def test_blender_odd_frame(blender_run, odd_inputs, case: str) -> None:
    res = blender_run["result"]["frames"][case]
    assert res["ok"], res.get("traceback")
    assert res["leaked_images"] == []
    src = blender_run["frames"][case]
    dst = Path(res["value"])
    assert dst == src.parent / "linerelifer" / src.name
    inp, out = read_image(src), read_image(dst)
    assert out.shape[:2] == inp.shape[:2]
    assert out.dtype == inp.dtype or (inp.dtype == np.float32 and out.dtype == np.float16), (inp.dtype, out.dtype)
    if out.dtype.kind == "f":
        assert np.isfinite(out).all(), "NaN or inf in the refined frame"
    if case in BLANK:  # no lines: written back unchanged, so the refined sequence has no gap
        np.testing.assert_array_equal(out, inp)
    elif case in ("white_on_black", "coloured_background", "gray_16bit", "gray_alpha", "rgba_opaque"):
        OK_CASES[case][2](inp, out)
    assert sha(src) == blender_run["hashes_before"][case], "the frame was modified"
    assert stray_files(dst.parent) == [] and stray_files(src.parent) == []


@pytest.mark.parametrize("kind", BAD_FILES[:-1])
def test_blender_unreadable_frame(blender_run, kind: str) -> None:
    msg = _one_line(blender_run["result"]["frames"][kind])
    src = blender_run["frames"][kind]
    assert str(src) in msg
    cause = {"empty": "empty"}.get(blender_run["causes"][kind], "not a readable image")
    assert cause in msg, msg
    assert not (src.parent / "linerelifer" / src.name).exists()
    assert stray_files(src.parent) == [] and sha(src) == blender_run["hashes_before"][kind]


def test_blender_read_only_folder(blender_run) -> None:
    msg = _one_line(blender_run["result"]["frames"]["read_only_folder"])
    src = blender_run["frames"]["read_only_folder"]
    assert "could not be written" in msg and str(src.parent) in msg
    assert sorted(p.name for p in src.parent.iterdir()) == ["frame.png"]
    assert sha(src) == blender_run["ro_hash"]


def test_blender_output_name_taken_by_a_folder(blender_run) -> None:
    """Blender saved the temp file but the rename fails: one line, temp file removed."""
    msg = _one_line(blender_run["result"]["frames"]["output_name_taken_by_a_folder"])
    out = blender_run["frames"]["output_name_taken_by_a_folder"].parent / "linerelifer"
    assert "could not be written" in msg and str(out / "frame.png") in msg
    assert sorted(p.name for p in out.iterdir()) == ["frame.png"] and (out / "frame.png").is_dir()


def test_blender_output_already_present_replaced(blender_run) -> None:
    dst = blender_run["frames_dir"] / "linerelifer" / blender_run["frames"]["white_on_black"].name
    assert read_image(dst).shape == (H, W)


@pytest.mark.parametrize("case", [c for c in sorted(STYLE_CASES) if c != "without_metadata"])
def test_blender_bad_style(blender_run, bad_styles, case: str) -> None:
    """Chosen in the scene's settings: the frame and the operator report one line."""
    for route in ("frame_styles", "operator"):
        res = blender_run["result"][route][case]
        msg = _one_line(res) if route == "frame_styles" else res["message"]
        assert "\n" not in msg.strip() and "Traceback" not in msg
        assert f"{case}.keras" in msg and re.search(STYLE_CASES[case], msg, re.I), (route, msg)
    assert not bad_styles["_marker"].exists(), "code from the style file ran"


def test_blender_deleted_style_is_named_not_replaced(blender_run) -> None:
    """A chosen style whose files are gone (a farm node, another machine) is refused with its
    name and where to copy it: refining with the default style instead gave the wrong look
    without a word. (It used to fall back to the default; the frames themselves are written
    by the render either way.)"""
    res = blender_run["result"]["frame_styles"]["deleted"]
    assert not res["ok"] and res["leaked_images"] == [], res
    assert re.match(r"The style '\w+' is not installed here; copy its \.json and \.tflite/\.keras files into ",
                    res["message"]), res["message"]


@pytest.mark.parametrize("label, cause", [("missing_python", "does not exist"),
                                          ("python_without_tensorflow", "lacks the module")])
def test_blender_bad_interpreter_reports_one_line(blender_run, label: str, cause: str) -> None:
    res = blender_run["result"]["operator"][label]
    assert not res["ok"] and res["type"] == "RuntimeError"
    msg = res["raw"].strip()
    assert msg.startswith("Error: ") and "\n" not in msg and cause in msg, msg


def test_blender_operator_works_before_and_after_failures(blender_run) -> None:
    ops = blender_run["result"]["operator"]
    assert ops["default"]["ok"] and ops["default"]["value"] == ["FINISHED"], ops["default"]
    assert ops["default_again"]["ok"] and ops["default_again"]["value"] == ["FINISHED"], ops["default_again"]
    assert blender_run["result"]["worker_alive_before_shutdown"]
    pid = blender_run["result"]["worker_pid"]
    assert pid, "no worker was running"
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), "the worker outlived Blender"
    assert list(blender_run["tmp"].iterdir()) == [], "the extension left temp files"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
