"""The Blender extension end to end: real bpy, real Cycles renders, real worker.

The extension zip is built, validated with Blender's own validator,
installed into an isolated user folder (BLENDER_USER_RESOURCES, set before
bpy is imported) and enabled; then still renders are refined, an animation
is auto-refined, and a missing runtime is reported.

Run it in its own pytest process (bpy can be imported once per process):
    .venv/bin/python -m pytest -q tests/test_blender_extension.py
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

_USER_DIR = tempfile.mkdtemp(prefix="linerelifer-blender-user-")
_STYLES_DIR = os.path.join(_USER_DIR, "no-user-styles")
atexit.register(shutil.rmtree, _USER_DIR, True)
if "bpy" not in sys.modules:
    os.environ["BLENDER_USER_RESOURCES"] = _USER_DIR

bpy = pytest.importorskip("bpy")

sys.path.insert(0, str(TESTS))
from blender_scene import build_scene  # noqa: E402
from conftest import dilate  # noqa: E402

PKG = "bl_ext.user_default.linerelifer"
W, H = 160, 120


def _load_build_module():
    spec = importlib.util.spec_from_file_location("build_extension", ROOT / "tools" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _addon_module(name: str):
    return sys.modules[f"{PKG}.blender.{name}"]


def _image_rgba(name: str) -> np.ndarray:
    img = bpy.data.images[name]
    w, h = img.size[:]
    buf = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(h, w, 4)[::-1]


# -- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def only_bundled_styles():
    """No user styles: the tests use the bundled default style."""
    old = os.environ.get("LINERELIFER_STYLES_DIR")
    os.environ["LINERELIFER_STYLES_DIR"] = _STYLES_DIR
    yield
    if old is None:
        os.environ.pop("LINERELIFER_STYLES_DIR", None)
    else:
        os.environ["LINERELIFER_STYLES_DIR"] = old


@pytest.fixture(scope="module")
def build_mod():
    return _load_build_module()


@pytest.fixture(scope="module")
def built_zip(build_mod, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return build_mod.build(out, verbose=False)


@pytest.fixture(scope="module")
def addon(built_zip):
    if os.path.realpath(bpy.utils.resource_path("USER")) != os.path.realpath(_USER_DIR):
        pytest.skip("bpy was imported before this module; run this file in its own pytest process")
    result = bpy.ops.extensions.package_install_files(
        filepath=str(built_zip), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    yield PKG
    import addon_utils
    if PKG in bpy.context.preferences.addons:
        addon_utils.disable(PKG)


@pytest.fixture()
def still_scene(addon):
    scene = build_scene(width=W, height=H, samples=2, line_thickness=2.0)
    assert bpy.ops.render.render() == {"FINISHED"}
    return scene


# -- tests ---------------------------------------------------------------------------

def test_zip_builds_validates_and_installs(build_mod, built_zip, addon):
    names = set(zipfile.ZipFile(built_zip).namelist())
    for required in ("blender_manifest.toml", "__init__.py", "blender/__init__.py", "blender/exr.py",
                     "core/client.py", "core/conversion.py", "worker/server.py",
                     "styles/default.keras", "styles/default.tflite", "styles/default.json"):
        assert required in names, required
    wheels = sorted(n for n in names if n.startswith("wheels/"))
    assert [w.split("-")[2] for w in wheels] == ["cp311", "cp313"], wheels
    assert not any("__pycache__" in n or n.startswith(("tests/", "training/")) or n == "cli.py"
                   for n in names)
    build_mod.validate(built_zip)  # raises BuildError on failure

    # Installed into the isolated user folder and enabled.
    installed = Path(_USER_DIR) / "extensions" / "user_default" / "linerelifer"
    assert (installed / "blender_manifest.toml").is_file()
    assert addon in bpy.context.preferences.addons
    assert hasattr(bpy.ops.linerelifer, "refine_lines")
    assert bpy.ops.linerelifer.refine_lines.idname() == "LINERELIFER_OT_refine_lines"
    assert hasattr(bpy.context.scene, "linerelifer")
    assert hasattr(bpy.types, "LINERELIFER_PT_render") and hasattr(bpy.types, "LINERELIFER_PT_image")
    settings = bpy.context.scene.linerelifer
    assert settings.strength == 1.0 and settings.tile_size == 0  # 0: tile size chosen per frame
    assert settings.output_mode == "SEPARATE_FOLDER" and not settings.auto_refine
    prefs = bpy.context.preferences.addons[addon].preferences
    assert hasattr(prefs, "python_path")


def test_exr_capture_reader(still_scene):
    """The numpy EXR reader agrees across codecs and restores the settings."""
    exr = _addon_module("exr")
    capture = _addon_module("capture")
    ims = still_scene.render.image_settings
    before = (ims.file_format, ims.color_depth, ims.color_mode)
    cap = capture.save_render_passes(still_scene)
    assert (ims.file_format, ims.color_depth, ims.color_mode) == before
    assert cap.freestyle.shape == (H, W, 4) and cap.combined.shape == (H, W, 4)
    assert 0.01 < (cap.freestyle[..., 3] > 0.25).mean() < 0.5
    tmp = tempfile.mkdtemp(dir=_USER_DIR)
    read = {}
    with capture.exr_output_settings(still_scene):
        for codec in ("NONE", "ZIP", "ZIPS"):
            ims.exr_codec = codec
            path = os.path.join(tmp, f"{codec}.exr")
            bpy.data.images["Render Result"].save_render(path)
            read[codec] = exr.read_exr(path)
    assert (ims.file_format, ims.color_depth, ims.color_mode) == before
    for codec in ("ZIP", "ZIPS"):
        assert read[codec].keys() == read["NONE"].keys()
        for k in read["NONE"]:
            np.testing.assert_array_equal(read[codec][k], read["NONE"][k])


def test_refine_lines_still(still_scene):
    capture = _addon_module("capture")
    fs = capture.save_render_passes(still_scene).freestyle
    in_alpha = fs[..., 3]
    assert (in_alpha > 0.25).sum() > 200, "the test scene should have Freestyle lines"

    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}

    result = _image_rgba("LineRelifer Result")
    lines = _image_rgba("LineRelifer Lines")
    assert result.shape == (H, W, 4) and lines.shape == (H, W, 4)
    assert bpy.data.images["LineRelifer Result"].is_float

    out_alpha = lines[..., 3]
    assert np.abs(out_alpha - in_alpha).mean() > 1e-3, "the lines were not changed"
    ink = out_alpha > 0.25
    assert ink.sum() > 0.3 * (in_alpha > 0.25).sum(), "most of the lines disappeared"
    near = dilate(in_alpha > 0.25, 3)
    precision = float((ink & near).sum()) / float(ink.sum())
    assert precision >= 0.95, f"ink off the input's lines: precision {precision:.3f}"

    # The result is the render with the refined lines over it: darker on the ink.
    comb = capture.save_render_passes(still_scene).combined
    assert np.allclose(result[~near], comb[~near], atol=0.05)
    assert result[ink][:, :3].mean() < comb[ink][:, :3].mean() - 0.1


def test_auto_refine_animation(addon, tmp_path, capfd):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    log = capfd.readouterr().out

    names = [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    assert sorted(p.name for p in out.glob("*.png")) == names  # originals kept
    refined_dir = out / "linerelifer"
    assert sorted(p.name for p in refined_dir.glob("*.png")) == names
    load = _addon_module("capture")
    for n in names:
        a = bpy.data.images.load(str(out / n))
        b = bpy.data.images.load(str(refined_dir / n))
        pa, pb = load.image_to_array(a), load.image_to_array(b)
        assert pa.shape == pb.shape == (H, W, 4)
        assert np.abs(pa - pb).mean() > 1e-3, f"{n} was not refined"
        bpy.data.images.remove(a)
        bpy.data.images.remove(b)
    lines = re.findall(r"^LineRelifer: frame (\d+): (\S+) -> (\S+) \((\d+\.\d+) s\)$", log, re.M)
    assert [int(f) for f, *_ in lines] == [1, 2, 3], log

    # The other mode: originals copied to a sibling folder, frames overwritten.
    scene.linerelifer.output_mode = "OVERWRITE_KEEP_ORIGINALS"
    shutil.rmtree(refined_dir)
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    originals = tmp_path / "frames_originals"
    assert sorted(p.name for p in originals.glob("*.png")) == names
    assert not refined_dir.exists()
    for n in names:
        assert (out / n).read_bytes() != (originals / n).read_bytes()
    assert not list(out.glob(".*")), "temp files were left behind"


def test_missing_runtime_reports_error(still_scene):
    prefs = bpy.context.preferences.addons[PKG].preferences
    capture = _addon_module("capture")
    # Results from an earlier refinement must stay as they are.
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    before_result = _image_rgba("LineRelifer Result").copy()
    before_lines = _image_rgba("LineRelifer Lines").copy()
    before_render = capture.save_render_passes(still_scene)

    prefs.python_path = os.path.join(_USER_DIR, "no-such-python", "bin", "python3")
    try:
        # In background mode bpy raises the operator's ERROR report as RuntimeError
        # (the operator returned {'CANCELLED'}).
        with pytest.raises(RuntimeError) as err:
            bpy.ops.linerelifer.refine_lines()
    finally:
        prefs.python_path = ""
    message = str(err.value)
    assert message.startswith("Error: ")
    assert "no-such-python" in message and "does not exist" in message
    assert "Traceback" not in message and message.count("\n") <= 1

    np.testing.assert_array_equal(_image_rgba("LineRelifer Result"), before_result)
    np.testing.assert_array_equal(_image_rgba("LineRelifer Lines"), before_lines)
    after_render = capture.save_render_passes(still_scene)
    np.testing.assert_array_equal(after_render.combined, before_render.combined)
    np.testing.assert_array_equal(after_render.freestyle, before_render.freestyle)


def test_worker_runs_bundled_litert_in_blenders_python(still_scene):
    """No runtime to install: the worker is Blender's own Python with LiteRT, and imports no
    TensorFlow (tests/test_blender_litert.py checks the same where only the bundled wheel has it)."""
    session = _addon_module("session")
    setup = session.worker_setup()
    assert setup.bundled and setup.backend == "auto" and setup.python == sys.executable
    assert bpy.ops.linerelifer.test_runtime() == {"FINISHED"}
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    client = session.get_client()
    assert client.last_stats["backend"] == "litert"
    assert client.loaded_modules() == ["ai_edge_litert"]
    assert not hasattr(bpy.ops.linerelifer, "install_runtime") or not _op_exists("install_runtime")


def _op_exists(name: str) -> bool:
    try:
        getattr(bpy.ops.linerelifer, name).get_rna_type()
        return True
    except (KeyError, AttributeError):
        return False


def test_enable_freestyle_pass_and_disable_cleans_up(addon):
    scene = build_scene(width=W, height=H, as_render_pass=False)
    scene.render.use_freestyle = False
    assert bpy.ops.linerelifer.enable_freestyle_pass() == {"FINISHED"}
    assert scene.render.use_freestyle and scene.view_layers[0].freestyle_settings.as_render_pass

    session = _addon_module("session")
    import addon_utils
    addon_utils.disable(addon)
    assert not hasattr(bpy.context.scene, "linerelifer")
    assert not hasattr(bpy.ops.linerelifer, "refine_lines") or not _op_registered()
    for name in ("render_init", "render_write", "render_complete", "render_cancel"):
        assert not [h for h in getattr(bpy.app.handlers, name) if "linerelifer" in getattr(h, "__module__", "")]
    assert not session.worker_alive()


def _op_registered() -> bool:
    try:
        bpy.ops.linerelifer.refine_lines.get_rna_type()
        return True
    except KeyError:
        return False
