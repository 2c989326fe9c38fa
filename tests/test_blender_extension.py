"""The Blender extension end to end: real bpy, real Cycles renders, real worker.

The extension zip is built, validated with Blender's own validator,
installed into an isolated user folder (BLENDER_USER_RESOURCES, set before
bpy is imported) and enabled; then still renders are refined (the pass, baked
lines, the compositor's output, saved as shown), animations are auto-refined
(with the Render Result, in farm conditions without it, through the UI path's
record-and-timer split), and failures are reported in one line.

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
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

_USER_DIR = tempfile.mkdtemp(prefix="linerelifer-blender-user-")
# Also when no test runs (`--collect-only`, `-k` matching none); the fixture below is the sure way.
atexit.register(shutil.rmtree, _USER_DIR, True)
_STYLES_DIR = os.path.join(_USER_DIR, "no-user-styles")
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
def user_folder_removed():
    """The temporary Blender user folder (102 MB with the installed extension) goes with the
    tests. An atexit handler did not remove it under bpy 4.2 (such folders piled up in /tmp)."""
    yield
    shutil.rmtree(_USER_DIR, ignore_errors=True)


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
    assert not settings.use_thick_thin and settings.thick_thin_amount() is None  # the style's own,
    assert _addon_module("props").style_own_thick_thin(settings) == 1.0  # the default's, shown in the panel
    assert settings.output_mode == "OVERWRITE_KEEP_ORIGINALS" and not settings.auto_refine
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
    # An output's own colour management survives the capture (putting "OVERRIDE" back copied
    # the scene's view transform and exposure into it).
    scene_view = still_scene.view_settings.view_transform
    still_scene.view_settings.view_transform = "AgX"
    ims.color_management = "OVERRIDE"
    ims.view_settings.view_transform, ims.view_settings.exposure = "Standard", 1.5
    ims.view_settings.use_curve_mapping = True
    curve = ims.view_settings.curve_mapping.curves[3]
    curve.points.new(0.5, 0.7)
    curve.points[0].location = (0.0, 0.3)
    ims.view_settings.curve_mapping.update()
    capture.save_render_passes(still_scene)
    assert (ims.color_management, ims.view_settings.view_transform, ims.view_settings.exposure) == (
        "OVERRIDE", "Standard", 1.5)
    curve = ims.view_settings.curve_mapping.curves[3]
    assert ims.view_settings.use_curve_mapping
    assert [tuple(round(v, 4) for v in p.location) for p in curve.points] == [(0.0, 0.3), (0.5, 0.7), (1.0, 1.0)]
    ims.color_management = "FOLLOW_SCENE"
    still_scene.view_settings.view_transform = scene_view
    # A duplicated view layer's name starts with the first one's.
    names = dict.fromkeys(f"{layer}.{p}.{c}" for layer in ("ViewLayer", "ViewLayer.001")
                          for p in ("Combined", "Freestyle") for c in "RGBA")
    assert exr.find_layer(names, "Freestyle", "ViewLayer") == "ViewLayer.Freestyle"
    assert exr.find_layer(names, "Combined", "ViewLayer.001") == "ViewLayer.001.Combined"
    views = dict.fromkeys(f"{layer}.{v}.Combined.R" for layer in ("ViewLayer", "ViewLayer.001") for v in ("left", "right"))
    assert exr.find_layer(views, "Combined", "ViewLayer") == "ViewLayer.left.Combined"
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


def test_thick_thin_reaches_the_refined_lines(still_scene):
    """The style's own Thick-Thin (the default style's is 1) and one set in the panel go with
    the job to the refined lines: set to 0 the same render comes out other lines, at 1 as
    the style's own; about as much ink either way and all of it on the input's lines."""
    settings = still_scene.linerelifer
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    nibbed = _image_rgba("LineRelifer Lines")[..., 3].copy()
    settings.use_thick_thin = True
    try:
        settings.thick_thin = 0.0
        assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
        plain = _image_rgba("LineRelifer Lines")[..., 3].copy()
        settings.thick_thin = 1.0
        assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
        assert np.array_equal(_image_rgba("LineRelifer Lines")[..., 3], nibbed)
        assert "Style's own: 1" not in _panel_labels()  # the slider instead
    finally:
        settings.use_thick_thin = False
    assert "Style's own: 1" in _panel_labels()
    assert np.abs(nibbed - plain).sum() > 0.05 * plain.sum(), "thick-thin changed nothing"
    assert 0.7 <= nibbed.sum() / plain.sum() <= 1.5
    near = dilate(plain > 0.25, 4)
    assert (nibbed[~near] > 0.25).sum() <= 0.01 * (nibbed > 0.25).sum()


def test_auto_refine_animation(addon, tmp_path, capfd):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    scene.linerelifer.output_mode = "SEPARATE_FOLDER"
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

    # The other mode: originals copied to a folder inside the output folder, frames overwritten
    # (a sibling of Blender's default output /tmp/ would be /tmp_originals: not writable).
    scene.linerelifer.output_mode = "OVERWRITE_KEEP_ORIGINALS"
    shutil.rmtree(refined_dir)
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    originals = tmp_path / "frames" / "originals"
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


def test_a_mistyped_backend_setting_is_refused(still_scene, monkeypatch):
    # It used to pass for "auto" without a word.
    monkeypatch.setenv("LINERELIFER_BACKEND", "tensorfow")
    with pytest.raises(RuntimeError, match=r"LINERELIFER_BACKEND='tensorfow' is not one of auto, litert or tensorflow"):
        bpy.ops.linerelifer.refine_lines()
    monkeypatch.delenv("LINERELIFER_BACKEND")
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}


def test_freestyle_off_is_named_when_only_the_pass_is_on(addon):
    # "As Render Pass" stays on in the view layer while Freestyle is off in Render Properties:
    # the render has no pass, and the message names the switch that is off.
    scene = build_scene(width=W, height=H, samples=1)
    assert scene.view_layers[0].freestyle_settings.as_render_pass
    scene.render.use_freestyle = False
    assert bpy.ops.render.render() == {"FINISHED"}
    with pytest.raises(RuntimeError, match="Freestyle is off; enable it in Render Properties"):
        bpy.ops.linerelifer.refine_lines()


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



# -- the result where artists look ----------------------------------------------------

def _srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def test_saved_result_is_what_the_image_editor_shows(still_scene, tmp_path):
    """The result is shown "view as render" (the scene's view transform, here Standard with
    +1 stop of exposure: display = sRGB(2 x linear)), and Save Refined Render writes exactly
    that, in the scene's output format."""
    still_scene.view_settings.view_transform = "Standard"
    still_scene.view_settings.exposure = 1.0
    ims = still_scene.render.image_settings
    ims.file_format, ims.color_mode, ims.color_depth = "PNG", "RGBA", "16"
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    img = bpy.data.images["LineRelifer Result"]
    assert img.use_view_as_render
    result = _image_rgba("LineRelifer Result")
    shown = _srgb(2.0 * result[..., :3])
    assert np.abs(shown - _srgb(result[..., :3])).max() > 0.1  # the transform matters here

    path = tmp_path / "refined.png"
    assert bpy.ops.linerelifer.save_result(filepath=str(path)) == {"FINISHED"}
    saved_img = bpy.data.images.load(str(path))
    saved_img.colorspace_settings.name = "Non-Color"  # the file's own values
    saved = _image_rgba(saved_img.name)
    bpy.data.images.remove(saved_img)
    assert saved.shape == result.shape
    np.testing.assert_allclose(saved[..., :3], shown, atol=1.5 / 65535)
    # The panel's default path is relative to the .blend, which a new file does not have yet.
    assert not bpy.data.filepath
    pipeline = _addon_module("pipeline")
    with pytest.raises(pipeline.RefineError, match=r"this \.blend is not saved yet; save it first or choose a full path"):
        pipeline.save_result(still_scene, "//refined.png")


def _compositor(scene):
    """(tree, Render Layers node, the socket the compositor's result comes from), on 5.0 and 4.x."""
    if bpy.app.version >= (5, 0, 0):
        tree = bpy.data.node_groups.new("Compositor", "CompositorNodeTree")
        rl = tree.nodes.new("CompositorNodeRLayers")
        rl.scene = scene
        out = tree.nodes.new("NodeGroupOutput")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        scene.compositing_node_group = tree
        return tree, rl, out.inputs[0]
    scene.use_nodes = True
    tree = scene.node_tree
    rl = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers")
    return tree, rl, next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite").inputs["Image"]


def _invert_in_compositor(scene) -> None:
    tree, rl, target = _compositor(scene)
    inv = tree.nodes.new("CompositorNodeInvert")
    tree.links.new(rl.outputs["Image"], inv.inputs["Color"])
    tree.links.new(inv.outputs[0], target)


def test_still_uses_the_compositor_output(addon):
    scene = build_scene(width=W, height=H, samples=2, line_thickness=2.0)
    _invert_in_compositor(scene)
    assert bpy.ops.render.render() == {"FINISHED"}
    capture = _addon_module("capture")
    exr = _addon_module("exr")
    tmp = tempfile.mkdtemp(dir=_USER_DIR)
    with capture.exr_output_settings(scene):
        bpy.data.images["Render Result"].save_render(os.path.join(tmp, "r.exr"))
    ch = exr.read_exr(os.path.join(tmp, "r.exr"))
    composite = exr.layer_rgba(ch, "Composite.Combined")
    plain = exr.layer_rgba(ch, "ViewLayer.Combined")
    fs = exr.layer_rgba(ch, "ViewLayer.Freestyle")
    assert np.abs(composite[..., :3] - plain[..., :3]).mean() > 0.3  # the compositor inverts

    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    result = _image_rgba("LineRelifer Result")
    off_lines = ~dilate(fs[..., 3] > 0.0, 3)
    assert off_lines.mean() > 0.5
    np.testing.assert_allclose(result[off_lines], composite[off_lines], atol=2e-3)


def test_the_extensions_own_pass_output_is_not_the_compositor_drawing_the_pass(addon):
    """Auto-refine's pass output sits in the user's compositor (UI: whenever auto-refine is on),
    linked from the Freestyle socket; Refine Lines took that for the compositor drawing the
    pass and dropped the user's compositing (here an Invert) for the plain render."""
    capture, passnode = _addon_module("capture"), _addon_module("passnode")
    scene = build_scene(width=W, height=H, samples=1, line_thickness=2.0)
    scene.linerelifer.auto_refine = True
    _invert_in_compositor(scene)
    passnode.add(scene)
    try:
        assert any(link.from_socket.name == "Freestyle" for link in _compositor_links(scene))
        assert not capture.draws_the_pass(scene)
    finally:
        passnode.remove()


def _compositor_links(scene):
    return _addon_module("nodes").compositor_tree(scene).links


def _small_auto_render(tmp_path: Path):
    """A two-frame 64x48 animation with auto-refine on, written to tmp_path/frames."""
    scene = build_scene(width=64, height=48, samples=1, frames=(1, 2))
    scene.linerelifer.auto_refine = True
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    return scene


def _draw_the_pass_in_compositor(scene) -> None:
    """Alpha Over of the Freestyle pass onto the image: the usual reason to have the pass."""
    tree, rl, target = _compositor(scene)
    over = tree.nodes.new("CompositorNodeAlphaOver")
    under_in, over_in = [i for i in over.inputs if i.type == "RGBA"][:2]
    tree.links.new(rl.outputs["Image"], under_in)
    tree.links.new(rl.outputs["Freestyle"], over_in)
    tree.links.new(over.outputs[0], target)


def test_a_compositor_that_draws_the_pass_is_not_drawn_under_the_refined_lines(addon, capfd):
    """Alpha Over of the Freestyle pass onto the image (the usual reason for the pass): the
    composite already holds the unrefined lines, which stayed under the refined ones, so
    thinned ends and removed specks never showed. The refined lines now go over the render's
    Combined pass, and the report says so."""
    scene = build_scene(width=W, height=H, samples=1, line_thickness=2.0)
    _draw_the_pass_in_compositor(scene)
    assert bpy.ops.render.render() == {"FINISHED"}
    fs = _addon_module("capture").save_render_passes(scene).freestyle[..., 3]
    capfd.readouterr()
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    report = capfd.readouterr().out
    assert "the compositor draws the Freestyle pass into its result" in report, report
    result, lines = _image_rgba("LineRelifer Result"), _image_rgba("LineRelifer Lines")
    gone = (fs > 0.9) & (lines[..., 3] < 0.1)  # solid input line pixels the style took away
    assert gone.sum() > 20
    assert result[gone][:, :3].mean() > 0.3  # the render shows there, not the old black line (0.02)


def test_frames_from_a_compositor_that_draws_the_pass_say_what_will_not_show(addon, tmp_path, capfd):
    """Auto-refined frames have only the written frame and the pass: where the compositor drew
    the pass into the frame, Freestyle's own lines stay under the refined ones. The render says
    so once, instead of silently showing hardly any style."""
    scene = _small_auto_render(tmp_path)
    _draw_the_pass_in_compositor(scene)
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    log = capfd.readouterr().out
    assert log.count("the compositor draws the Freestyle pass into the frames") == 1, log
    assert re.findall(r"^LineRelifer: frame (\d+): \S+ -> \S+", log, re.M) == ["1", "2"], log


def test_several_view_layers_refine_the_active_one_and_say_so(addon, capfd):
    """Suzanne on one view layer, the torus on another, each with its Freestyle pass: the
    chosen layer's lines are refined (it was always the first), and the report names it."""
    scene = build_scene(width=W, height=H, samples=1)
    for name in ("Suzanne", "Torus"):
        col = bpy.data.collections.new(name + "Col")
        scene.collection.children.link(col)
        ob = bpy.data.objects[name]
        scene.collection.objects.unlink(ob)
        col.objects.link(ob)
    first = scene.view_layers[0]
    first.name = "SuzanneLayer"
    second = scene.view_layers.new("TorusLayer")
    second.use_freestyle = True
    second.freestyle_settings.as_render_pass = True
    lineset = second.freestyle_settings.linesets[0] if len(second.freestyle_settings.linesets) else \
        second.freestyle_settings.linesets.new("LineSet")
    lineset.linestyle = first.freestyle_settings.linesets[0].linestyle
    first.layer_collection.children["TorusCol"].exclude = True
    second.layer_collection.children["SuzanneCol"].exclude = True
    assert bpy.ops.render.render() == {"FINISHED"}
    capture = _addon_module("capture")
    suzanne = capture.save_render_passes(scene, view_layer_name="SuzanneLayer")
    torus = capture.save_render_passes(scene, view_layer_name="TorusLayer")
    xs = [np.nonzero(cap.freestyle[..., 3] > 0.25)[1] for cap in (suzanne, torus)]
    assert min(map(len, xs)) > 100 and xs[1].mean() - xs[0].mean() > W / 5  # Suzanne left, the torus right
    assert "refined view layer 'TorusLayer' only (1 more draw a Freestyle pass" in torus.note
    capfd.readouterr()
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    active = bpy.context.view_layer.name
    assert f"refined view layer '{active}' only" in capfd.readouterr().out


# -- lines baked into the render -------------------------------------------------------

def _set_world(scene, value: float) -> None:
    scene.world.color = (value, value, value)
    tree = getattr(scene.world, "node_tree", None)
    bg = tree.nodes.get("Background") if tree is not None else None
    if bg is not None:
        bg.inputs["Color"].default_value = (value, value, value, 1.0)


@pytest.mark.parametrize("ground", [0.02, 0.8], ids=["dark", "light"])
def test_baked_lines_change_no_other_pixel(addon, ground):
    """A shaded render with black outlines baked in, on a dark and on a light ground: Refine
    Lines changes line pixels only.  Line pixels are where the same scene's Freestyle pass
    has any coverage; every other pixel of the result equals the render, bit for bit."""
    scene = build_scene(width=W, height=H, samples=2, line_thickness=2.0)
    _set_world(scene, ground)
    scene.view_layers[0].freestyle_settings.linesets[0].linestyle.color = (0.0, 0.0, 0.0)
    capture = _addon_module("capture")
    assert bpy.ops.render.render() == {"FINISHED"}
    line_pixels = capture.save_render_passes(scene).freestyle[..., 3] > 0.0

    scene.view_layers[0].freestyle_settings.as_render_pass = False  # lines baked in
    assert bpy.ops.render.render() == {"FINISHED"}
    render = capture.save_render_passes(scene).combined
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    result = _image_rgba("LineRelifer Result")

    off = ~line_pixels
    assert off.mean() > 0.5
    np.testing.assert_array_equal(result[off], render[off])
    changed = np.any(result != render, axis=-1)
    # Baked mode redraws stroke cores only (widening a line would paint over the render), and
    # the default style keeps 2 px cores solid: the changes are where it thins a stroke.
    assert changed.sum() > 0.01 * line_pixels.sum(), "the baked lines were not refined"
    assert np.abs(result - render)[changed].max() > 0.01


def test_baked_lines_thinned_over_a_bright_sky_leave_no_grey_trace(addon):
    # A sky at 3.0: the display values clip it to 1.0, and a pixel a thinner line gives back
    # to the sky was painted 1.0, a grey trace along the silhouette through any view transform.
    scene = build_scene(width=W, height=H, samples=2, line_thickness=3.0, as_render_pass=False)
    _set_world(scene, 3.0)
    scene.view_layers[0].freestyle_settings.linesets[0].linestyle.color = (0.0, 0.0, 0.0)
    capture = _addon_module("capture")
    assert bpy.ops.render.render() == {"FINISHED"}
    render = capture.save_render_passes(scene).combined
    sky = float(render[2, 2, 0])
    assert sky > 2.0
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    result = _image_rgba("LineRelifer Result")
    changed = np.any(result != render, axis=-1)
    assert changed.sum() > 20, "the baked lines were not refined"
    brighter = changed & (result[..., 0] > render[..., 0] + 0.05)  # given back to the sky
    assert brighter.any() and result[brighter][:, :3].max() > 1.5, result[brighter][:, :3].max(initial=0)


def test_black_lines_baked_over_a_transparent_film_are_refused(addon):
    # The empty pixels unpremultiply to black, the lines' colour: the outline was taken for a
    # filled area and left as it was while the inner lines changed, reported as a success.
    scene = build_scene(width=W, height=H, samples=1, as_render_pass=False, film_transparent=True)
    scene.view_layers[0].freestyle_settings.linesets[0].linestyle.color = (0.0, 0.0, 0.0)
    assert bpy.ops.render.render() == {"FINISHED"}
    with pytest.raises(RuntimeError, match=r"Black lines baked over a transparent background \(Film > Transparent\)"):
        bpy.ops.linerelifer.refine_lines()
    assert _addon_module("pipeline").baked_frames_problem(scene).startswith("black lines baked over")
    scene.view_layers[0].freestyle_settings.linesets[0].linestyle.color = (0.8, 0.1, 0.05)
    assert _addon_module("pipeline").baked_frames_problem(scene) is None  # red lines stand apart


def test_auto_refined_frames_with_baked_lines_change_no_other_pixel(addon, tmp_path):
    """The same for auto-refined animation frames (8-bit PNG, Standard view transform).  Line
    pixels are those Freestyle drew: where the same frame's Freestyle pass has coverage, or
    where the frame differs from the animation rendered with Freestyle off (Cycles renders
    the same pixels twice).  Either alone misses some: a still of the frame can draw a stroke a
    pixel apart from the animation's, and a black stroke over a black pixel changes nothing.
    Every other pixel of each refined frame equals the original frame, bit for bit."""
    # 4 samples: with 1, a few pixels next to the lines come out black from sampling noise,
    # which no colour test can tell from a black line (see the README's limits).
    scene = build_scene(width=W, height=H, samples=4, line_thickness=2.0, frames=(1, 2))
    _set_world(scene, 0.05)
    fs = scene.view_layers[0].freestyle_settings
    fs.linesets[0].linestyle.color = (0.0, 0.0, 0.0)
    capture = _addon_module("capture")
    pass_cover = {}
    for f in (1, 2):
        scene.frame_set(f)
        assert bpy.ops.render.render() == {"FINISHED"}
        pass_cover[f] = capture.save_render_passes(scene).freestyle[..., 3] > 0.0
    fs.as_render_pass = False
    scene.render.use_freestyle = False
    scene.render.filepath = str(tmp_path / "no_lines" / "frame_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}

    scene.render.use_freestyle = True
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    for f in (1, 2):
        name = f"frame_{f:04d}.png"
        refined, original = _frame_pixels(out / name), _frame_pixels(tmp_path / "frames" / "originals" / name)
        drawn = np.any(original != _frame_pixels(tmp_path / "no_lines" / name), axis=-1)
        line_pixels = drawn | pass_cover[f]
        assert 0.01 < line_pixels.mean() < 0.5
        off = ~line_pixels
        np.testing.assert_array_equal(refined[off], original[off])
        assert np.any(refined != original, axis=-1).sum() > 0.01 * line_pixels.sum(), f"{name} was not refined"


def test_baked_frames_through_another_view_transform_are_refused_once(addon, tmp_path, capfd):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 2), as_render_pass=False)
    scene.view_settings.view_transform = "AgX"
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
    assert len(ours) == 1 and "view transform 'AgX'" in ours[0] and "Freestyle pass" in ours[0], ours
    assert len(list(out.glob("*.png"))) == 2 and not (tmp_path / "frames" / "originals").exists()
    # JPEG's compression moves baked lines' colours (a review measured 18-35 % of core pixels
    # missed, redrawn as speckled lines): refused the same way.
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "JPEG"
    scene.render.filepath = str(tmp_path / "jpeg" / "frame_")
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
    assert len(ours) == 1 and "saved as JPEG" in ours[0] and "Freestyle pass" in ours[0], ours
    assert not (tmp_path / "jpeg" / "originals").exists()
    pipeline = _addon_module("pipeline")
    scene.render.image_settings.file_format = "WEBP"
    scene.render.image_settings.quality = 90
    assert "saved as lossy WebP" in pipeline.baked_frames_problem(scene)
    scene.render.image_settings.quality = 100  # lossless
    assert pipeline.baked_frames_problem(scene) is None
    # The frames' own colour management decides, not the scene's: an output override to AgX
    # hides the line colour (it was accepted, and the frames' lines then went unfound), an
    # override to Standard on an AgX scene shows it (it was refused).
    ims = scene.render.image_settings
    ims.file_format = "PNG"
    ims.color_management = "OVERRIDE"
    ims.view_settings.view_transform = "AgX"
    assert "view transform 'AgX'" in pipeline.baked_frames_problem(scene)
    scene.view_settings.view_transform = "AgX"
    ims.view_settings.view_transform = "Standard"
    assert pipeline.baked_frames_problem(scene) is None
    ims.color_management = "FOLLOW_SCENE"
    assert "view transform 'AgX'" in pipeline.baked_frames_problem(scene)

# -- farm renders ---------------------------------------------------------------------

@pytest.fixture()
def farm_condition():
    """Reproduce what ``blender -b file.blend -a`` gives the handlers: RE_RenderAnim with no
    "Render Result" image.  The bpy module cannot run ``-a``; its render operator creates the
    image and then calls the same RE_RenderAnim that ``-a`` calls.  Handlers put *before* the
    extension's remove the image at render_init and again at render_write (Blender 5.0's
    compositor makes one while it composites a frame, farm or not), so each of the extension's
    handlers runs as on a farm: same pipeline, same order, same main thread, no such image.
    The fixture yields what a probe saw just before the extension's render_write."""
    seen: list[list[str]] = []

    @bpy.app.handlers.persistent
    def remove_render_result(scene, *args):
        for img in [i for i in bpy.data.images if i.type == "RENDER_RESULT"]:
            bpy.data.images.remove(img)

    @bpy.app.handlers.persistent
    def probe(scene, *args):
        seen.append([i.name for i in bpy.data.images if i.type == "RENDER_RESULT"])

    bpy.app.handlers.render_init.insert(0, remove_render_result)
    bpy.app.handlers.render_write.insert(0, probe)
    bpy.app.handlers.render_write.insert(0, remove_render_result)
    yield seen
    bpy.app.handlers.render_init.remove(remove_render_result)
    bpy.app.handlers.render_write.remove(remove_render_result)
    bpy.app.handlers.render_write.remove(probe)


def _frame_pixels(path) -> np.ndarray:
    capture = _addon_module("capture")
    img = bpy.data.images.load(str(path))
    try:
        return capture.image_to_array(img)
    finally:
        bpy.data.images.remove(img)


def _compositor_state(scene):
    """The compositor as the user sees it.  Blender 4.x keeps the default tree (Render Layers
    -> Composite) that switching the compositor on made; it is what switching it on again
    would make, so only the switch and the extension's own nodes count."""
    if bpy.app.version >= (5, 0, 0):
        return (scene.compositing_node_group, sorted(g.name for g in bpy.data.node_groups))
    ours = [n.name for n in scene.node_tree.nodes if "LineRelifer" in n.name] if scene.node_tree else []
    return (scene.use_nodes, ours)


def test_farm_render_with_the_pass_and_no_render_result(addon, tmp_path, capfd, farm_condition):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    assert scene.linerelifer.output_mode == "OVERWRITE_KEEP_ORIGINALS"  # the default
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    compositor_before = _compositor_state(scene)
    pass_folders_before = set(Path(tempfile.gettempdir()).glob("linerelifer-pass-*"))
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    log = capfd.readouterr().out

    assert farm_condition == [[], [], []], "a Render Result image existed while frames were written"
    names = [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    originals = tmp_path / "frames" / "originals"
    assert sorted(p.name for p in out.glob("*.png")) == names  # refined, at the output path
    assert sorted(p.name for p in originals.glob("*.png")) == names  # originals kept inside it
    for n in names:
        refined, original = _frame_pixels(out / n), _frame_pixels(originals / n)
        assert refined.shape == original.shape == (H, W, 4)
        assert np.abs(refined - original).mean() > 1e-3, f"{n} was not refined"
    lines = re.findall(r"^LineRelifer: frame (\d+): \S+ -> \S+ \(\d+\.\d+ s\)$", log, re.M)
    assert lines == ["1", "2", "3"], log
    # What render_init added is gone: the scene's compositor is as it was, no pass files left.
    assert _compositor_state(scene) == compositor_before
    assert not _addon_module("passnode")._added
    assert set(Path(tempfile.gettempdir()).glob("linerelifer-pass-*")) <= pass_folders_before


def test_a_render_blender_gives_up_leaves_nothing_behind(addon, tmp_path):
    """Blender can refuse a render after render_init (here "Image too small") and then sends
    neither render_complete nor render_cancel: the pass node must not stay in the scene and be
    saved into the .blend, and Refine Lines must not wait for a render that is not running."""
    ops, passnode = _addon_module("ops"), _addon_module("passnode")
    scene = _small_auto_render(tmp_path)
    compositor_before = _compositor_state(scene)
    scene.render.resolution_percentage = 1  # 64x48 at 1 %: under a pixel, refused after render_init
    with pytest.raises(RuntimeError, match="too small"):
        bpy.ops.render.render(animation=True)
    assert not ops.render_running()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "after.blend"))
    assert _compositor_state(scene) == compositor_before
    assert not passnode._added
    scene.render.resolution_percentage = 100  # and the next render runs as usual
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "frames" / "originals").glob("*.png")) == ["frame_0001.png",
                                                                                     "frame_0002.png"]
    assert _compositor_state(scene) == compositor_before


def test_frames_on_a_file_server_whose_clock_lags_are_refined(addon, tmp_path, capfd):
    """A frame counted as written only when its file was modified after the render began by
    this computer's clock; on a file server ten minutes behind, every frame was "not found".
    The file changing during the frame's render counts too (the frame here is set back by
    hand to what such a server stamps; the second render rewrites files that exist)."""
    scene = _small_auto_render(tmp_path)

    @bpy.app.handlers.persistent
    def lagging_server(scene, *args):  # before the extension's handler
        path = scene.render.frame_path(frame=scene.frame_current)
        lag = time.time() - 600 - scene.frame_current
        os.utime(path, (lag, lag))

    bpy.app.handlers.render_write.insert(0, lagging_server)
    try:
        for _ in range(2):
            capfd.readouterr()
            assert bpy.ops.render.render(animation=True) == {"FINISHED"}
            log = capfd.readouterr().out
            assert re.findall(r"^LineRelifer: frame (\d+): /", log, re.M) == ["1", "2"], log
    finally:
        bpy.app.handlers.render_write.remove(lagging_server)


def test_frames_without_file_extensions_and_a_written_still_are_refined(addon, tmp_path, capfd):
    """The pass node names its files as the scene names its frames: with File Extensions off
    they have no ".exr", and Blender 5.0 gives a still's file no frame number. Both were
    reported "not written" and left unrefined."""
    scene = _small_auto_render(tmp_path)
    scene.render.use_file_extension = False
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    log = capfd.readouterr().out
    assert re.findall(r"^LineRelifer: frame (\d+): \S+ -> \S+", log, re.M) == ["1", "2"], log
    assert sorted(p.name for p in (tmp_path / "frames" / "originals").iterdir()) == ["frame_0001", "frame_0002"]

    scene.render.use_file_extension = True
    scene.render.filepath = str(tmp_path / "still" / "shot")
    scene.frame_set(7)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    log = capfd.readouterr().out
    assert re.findall(r"^LineRelifer: frame (\d+): \S+ -> \S+", log, re.M) == ["7"], log
    assert (tmp_path / "still" / "originals" / "shot.png").is_file()


@pytest.mark.parametrize("file_format, depth", [("PNG", "8"), ("PNG", "16"), ("JPEG", "8")])
def test_coloured_lines_in_frames_take_the_view_transforms_tone(addon, tmp_path, farm_condition,
                                                                 file_format, depth):
    # Frames other than EXR are written through the view transform (AgX here, Blender's
    # default): lines drawn into them from the pass must have the tone Blender gives that line
    # colour, the one it writes when it bakes the same lines itself. Plain sRGB drew them far
    # too saturated. 16-bit files are read back as linear values, JPEG's are lossy.
    ext = ".jpg" if file_format == "JPEG" else ".png"

    def reddest(path):
        px = _frame_pixels(path)[..., :3]
        redness = px[..., 0] - px[..., 1]
        return np.median(px[redness >= np.quantile(redness, 0.985)], axis=0) * 255

    frames = {}
    for as_pass in (False, True):
        scene = build_scene(width=W, height=H, samples=4, line_thickness=4.0, as_render_pass=as_pass)
        scene.view_layers[0].freestyle_settings.linesets[0].linestyle.color = (0.8, 0.1, 0.05)
        scene.view_settings.view_transform = "AgX"
        ims = scene.render.image_settings
        ims.file_format = file_format
        ims.color_mode = "RGB"
        ims.color_depth = depth
        scene.linerelifer.auto_refine = as_pass
        scene.render.filepath = str(tmp_path / ("pass" if as_pass else "baked") / "frame_")
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        frames[as_pass] = reddest(tmp_path / ("pass" if as_pass else "baked") / f"frame_0001{ext}")
    assert (tmp_path / "pass" / "originals" / f"frame_0001{ext}").is_file(), "the frame was not refined"
    assert np.abs(frames[True] - frames[False]).max() <= (6 if file_format == "JPEG" else 4), frames
    if depth == "8":  # the test can tell: plain sRGB is far off
        plain_srgb = 255 * _addon_module("pipeline").linear_to_srgb(np.array([0.8, 0.1, 0.05]))
        assert np.abs(plain_srgb - frames[False]).max() > 20, (frames, plain_srgb)


def test_lines_with_a_colour_ramp_are_refined_through_the_view_transform(addon, tmp_path, capfd, farm_condition):
    # A colour modifier gives every pixel of a stroke its own colour: thousands of colours,
    # each converted (a 65536-colour limit refused such frames).
    scene = build_scene(width=W, height=H, samples=4, line_thickness=4.0)
    style = scene.view_layers[0].freestyle_settings.linesets[0].linestyle
    ramp = style.color_modifiers.new("ramp", "ALONG_STROKE")
    ramp.color_ramp.elements[0].color = (0.9, 0.05, 0.05, 1.0)
    ramp.color_ramp.elements[1].color = (0.05, 0.1, 0.9, 1.0)
    scene.view_settings.view_transform = "AgX"
    scene.linerelifer.auto_refine = True
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    log = capfd.readouterr().out
    assert re.findall(r"^LineRelifer: frame (\d+): \S+ -> ", log, re.M) == ["1"], log
    px = _frame_pixels(tmp_path / "frames" / "frame_0001.png")
    ink = px[..., :3].min(axis=-1) < 0.5
    assert (px[ink][:, 0] - px[ink][:, 2] > 0.2).any() and (px[ink][:, 2] - px[ink][:, 0] > 0.2).any()


def _python_that_cannot_start(tmp_path: Path) -> tuple[Path, Path]:
    """A 'Python' that notes each start in a file and exits at once: (its path, that file)."""
    starts = tmp_path / "starts.txt"
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\necho started >> '{starts}'\necho 'no runtime here' >&2\nexit 3\n")
    fake.chmod(0o755)
    return fake, starts


def test_worker_that_cannot_start_is_tried_once_per_render(addon, tmp_path, capfd, farm_condition):
    fake, starts = _python_that_cannot_start(tmp_path)
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.python_path = str(fake)
    try:
        capfd.readouterr()
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        log = capfd.readouterr().out
    finally:
        prefs.python_path = ""
    ours = [line for line in log.splitlines() if line.startswith("LineRelifer:")]
    assert len(ours) == 1, ours
    assert "could not start" in ours[0] and "stopped for this render" in ours[0], ours[0]
    assert starts.read_text().splitlines() == ["started"], "the worker start was retried"
    # The render itself is untouched: three frames, nothing refined, nothing moved.
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    assert not (tmp_path / "frames" / "originals").exists()


def _output_multilayer_exr(scene) -> None:
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):  # Blender 5.0
        ims.media_type = "MULTI_LAYER_IMAGE"
    else:
        ims.file_format = "OPEN_EXR_MULTILAYER"


def test_multilayer_exr_output_is_refused_with_one_line(addon, tmp_path, capfd, farm_condition):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 2))
    scene.linerelifer.auto_refine = True
    _output_multilayer_exr(scene)
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    before = {p: p.stat().st_mtime_ns for p in out.glob("*")}
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
    assert ours == ["LineRelifer: auto-refine stopped for this render: the output (Output Properties > "
                    "Output) is OpenEXR MultiLayer, which auto-refine does not rewrite; choose PNG, TIFF "
                    "or OpenEXR"], ours
    assert sorted(p.name for p in out.glob("*.exr")) == ["frame_0001.exr", "frame_0002.exr"]
    assert not before and not (tmp_path / "frames" / "originals").exists()


def test_stereo_output_is_refused_with_one_line(addon, tmp_path, capfd, farm_condition):
    # Each view is its own file (frame_0001_L.png); auto-refine looked for frame_0001.png and
    # said "not found" at every frame.
    scene = build_scene(width=64, height=48, samples=1, frames=(1, 2))
    scene.linerelifer.auto_refine = True
    scene.render.use_multiview = True
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
    assert len(ours) == 1 and "Stereoscopy" in ours[0], ours
    assert len(list((tmp_path / "frames").glob("frame_0001*.png"))) == 2  # the views, untouched
    assert not (tmp_path / "frames" / "originals").exists()


# -- UI renders (what background mode can run of them) -------------------------------

def _blender_state(scene) -> dict:
    """What a handler could write: every data-block's name, the scene's render, output,
    colour, view-layer, Freestyle and LineRelifer settings, its compositor's nodes and links,
    and which of the extension's functions are registered as timers."""
    def props(struct) -> dict:
        out = {}
        for p in struct.bl_rna.properties:
            if p.type in ("POINTER", "COLLECTION"):
                continue
            try:
                value = getattr(struct, p.identifier)
            except (AttributeError, RuntimeError):
                continue
            out[p.identifier] = tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        return out

    state = {"ids": {a: sorted(i.name for i in getattr(bpy.data, a)) for a in dir(bpy.data)
                     if isinstance(getattr(bpy.data, a, None), bpy.types.bpy_prop_collection)}}
    structs = [scene, scene.render, scene.render.image_settings, scene.view_settings,
               scene.display_settings, scene.linerelifer]
    for vl in scene.view_layers:
        structs += [vl, vl.freestyle_settings]
    state["props"] = [props(s) for s in structs]
    tree = _addon_module("nodes").compositor_tree(scene)
    state["tree"] = None if tree is None else (
        sorted((n.name, n.bl_idname, n.mute) for n in tree.nodes),
        sorted((lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier)
               for lk in tree.links))
    timers = {}
    for mod in ("handlers", "framequeue", "passnode", "pipeline"):
        for name, fn in vars(_addon_module(mod)).items():
            if callable(fn) and getattr(fn, "__module__", "") == f"{PKG}.blender.{mod}":
                timers[f"{mod}.{name}"] = bpy.app.timers.is_registered(fn)
    state["timers"] = timers
    return state


@pytest.fixture()
def ui_render(addon, monkeypatch):
    """The handlers' UI path (they take it when not in background mode) under background
    bpy, with a probe around each of the extension's render handlers that compares what it
    could write before and after the handler ran.  Yields the list of differences."""
    handlers = _addon_module("handlers")
    monkeypatch.setattr(handlers, "background_mode", lambda: False)
    changed: list[str] = []
    added = []
    for name in ("render_init", "render_write", "render_complete"):
        lst = getattr(bpy.app.handlers, name)
        ours = next(h for h in lst if getattr(h, "__module__", "") == f"{PKG}.blender.handlers")
        before: dict = {}

        @bpy.app.handlers.persistent
        def snap(scene, *args, before=before):
            before["state"] = _blender_state(scene)

        @bpy.app.handlers.persistent
        def check(scene, *args, before=before, name=name):
            after = _blender_state(scene)
            for key in after:
                if after[key] != before["state"][key]:
                    changed.append(f"{name} changed {key}")

        lst.insert(lst.index(ours), snap)
        lst.insert(lst.index(ours) + 1, check)
        added += [(lst, snap), (lst, check)]
    yield changed
    for lst, fn in added:
        lst.remove(fn)
    _addon_module("framequeue").clear("test over")
    _addon_module("passnode").remove()


def test_ui_render_handlers_only_record(ui_render, tmp_path, capfd):
    framequeue = _addon_module("framequeue")
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    framequeue.pump()  # the timer, between renders: puts the pass node in place
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}

    assert ui_render == [], "the render handlers wrote Blender data or registered timers"
    records = framequeue.pending()
    assert [r.frame for r in records] == [1, 2, 3]
    for r in records:  # paths, never pixels: the pass waits on disk
        assert all(isinstance(v, (str, int, float)) or isinstance(v, tuple) and all(isinstance(i, int) for i in v)
                   for v in vars(r).values())
        assert os.path.isfile(r.frame_path) and os.path.isfile(r.pass_path)
    assert framequeue.arrays_held() == 0
    assert not list((tmp_path / "frames" / "originals").glob("*")), "refined on the render thread"

    held = _pump_until_idle(framequeue)
    log = capfd.readouterr().out
    assert max(held) == 1, "more than one frame's arrays were held at once"
    assert re.findall(r"^LineRelifer: frame (\d+): ", log, re.M) == ["1", "2", "3"], log
    names = [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    assert sorted(p.name for p in (tmp_path / "frames" / "originals").glob("*.png")) == names
    for n in names:
        assert np.abs(_frame_pixels(out / n) - _frame_pixels(tmp_path / "frames" / "originals" / n)).mean() > 1e-3
    assert not any(os.path.exists(r.pass_path) for r in records), "pass files were left behind"


def test_a_second_ui_render_before_the_queue_drains_refines_each_frame_once(ui_render, tmp_path, capfd):
    """Render, change the lines, render again while the first render's frames still wait: the
    first render's records found the second render's files at their paths and refined them,
    then the second's refined them again, and originals/ kept a refined frame."""
    framequeue = _addon_module("framequeue")
    scene = build_scene(width=64, height=48, samples=1, frames=(1, 2), line_thickness=1.0)
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    written = tmp_path / "written"

    @bpy.app.handlers.persistent
    def keep(scene, *args):  # before the extension's handler: the frame as Blender wrote it
        written.mkdir(exist_ok=True)
        src = Path(scene.render.frame_path(frame=scene.frame_current))
        shutil.copy(src, written / src.name)

    bpy.app.handlers.render_write.insert(0, keep)
    try:
        framequeue.pump()  # the timer, between renders: puts the pass node in place
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        scene.view_layers[0].freestyle_settings.linesets[0].linestyle.thickness = 5.0
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    finally:
        bpy.app.handlers.render_write.remove(keep)
    assert [r.frame for r in framequeue.pending()] == [1, 2, 1, 2]
    capfd.readouterr()
    _pump_until_idle(framequeue)
    log = capfd.readouterr().out
    assert re.findall(r"^LineRelifer: frame (\d+): /", log, re.M) == ["1", "2"], log
    assert log.lower().count("not refined: a later render wrote the file again") == 2, log
    for name in ("frame_0001.png", "frame_0002.png"):  # the second render's frames, kept as written
        np.testing.assert_array_equal(_frame_pixels(out / "originals" / name), _frame_pixels(written / name))


def _pump_until_idle(framequeue) -> list[int]:
    """Run the timer as Blender's event loop would; returns arrays held after each call."""
    held = []
    for _ in range(2000):
        if not framequeue.pending() and not framequeue._current:
            break
        framequeue.pump()
        held.append(framequeue.arrays_held())
        time.sleep(0.02)
    return held


def test_ui_render_worker_that_cannot_start_is_tried_once(ui_render, tmp_path, capfd):
    framequeue = _addon_module("framequeue")
    fake, starts = _python_that_cannot_start(tmp_path)
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    framequeue.pump()
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.python_path = str(fake)
    try:
        capfd.readouterr()
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        records = framequeue.pending()
        _pump_until_idle(framequeue)
        log = capfd.readouterr().out
    finally:
        prefs.python_path = ""
    ours = [line for line in log.splitlines() if line.startswith("LineRelifer:")]
    assert len(ours) == 1 and "could not start" in ours[0], ours
    assert starts.read_text().splitlines() == ["started"], "the worker start was retried"
    assert not any(os.path.exists(r.pass_path) for r in records)
    assert not (tmp_path / "frames" / "originals").exists()


def test_loading_a_file_drops_the_queue_with_one_line(ui_render, tmp_path, capfd):
    framequeue = _addon_module("framequeue")
    state = sys.modules[f"{PKG}.blender.state"]
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 2))
    scene.linerelifer.auto_refine = True
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    framequeue.pump()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    records = framequeue.pending()
    assert len(records) == 2
    state.notice.set("frame 7 not refined: something about the old file")
    capfd.readouterr()
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert state.notice.text == "", "the panel kept telling about the old file's render"
    log = capfd.readouterr().out
    assert [ln for ln in log.splitlines() if ln.startswith("LineRelifer:")] == [
        "LineRelifer: a file is being loaded: dropped frames 1, 2 not yet refined"]
    assert framequeue.pending() == [] and framequeue.arrays_held() == 0
    assert not any(os.path.exists(r.pass_path) for r in records)
    assert not (tmp_path / "frames" / "originals").exists()


def test_saving_while_frames_wait_still_refines_them(ui_render, tmp_path, capfd):
    # Saving takes the pass node and its folder out of the file; the frames the render
    # queued keep their pass files (the queue holds them in its own folder).
    framequeue, passnode = _addon_module("framequeue"), _addon_module("passnode")
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 2))
    scene.linerelifer.auto_refine = True
    out = tmp_path / "frames"
    scene.render.filepath = str(out / "frame_")
    framequeue.pump()
    node_folder = passnode.folder_of(scene.name)
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    records = framequeue.pending()
    assert [r.frame for r in records] == [1, 2]
    assert not any(r.pass_path.startswith(node_folder) for r in records)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "saved.blend"), copy=True)
    assert passnode.folder_of(scene.name) is None and not os.path.exists(node_folder)
    capfd.readouterr()
    _pump_until_idle(framequeue)
    log = capfd.readouterr().out
    assert re.findall(r"^LineRelifer: frame (\d+): \S+ -> ", log, re.M) == ["1", "2"], log
    assert sorted(p.name for p in (out / "originals").glob("*.png")) == ["frame_0001.png", "frame_0002.png"]
    assert not any(os.path.exists(r.pass_path) for r in records)


def test_frames_not_refined_leave_no_pass_files(ui_render, tmp_path, capfd):
    # A UI animation to an output auto-refine does not rewrite: refused once, told in the
    # panel too, and no frame's 32-bit pass file is left in the temp folder.
    framequeue, passnode = _addon_module("framequeue"), _addon_module("passnode")
    state = sys.modules[f"{PKG}.blender.state"]
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    _output_multilayer_exr(scene)
    scene.render.filepath = str(tmp_path / "frames" / "frame_")
    framequeue.pump()
    node_folder = passnode.folder_of(scene.name)
    assert node_folder
    capfd.readouterr()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
    assert len(ours) == 1 and "MultiLayer" in ours[0], ours
    assert state.notice.text == ours[0].removeprefix("LineRelifer: ")
    assert framequeue.pending() == []
    assert os.listdir(node_folder) == [], "pass files of frames nobody refines were left"


def test_a_still_waits_for_a_running_refinement(ui_render, capfd):
    # Auto-refine of a still calls Refine Lines, which waits while another refinement (or a
    # render) runs: the still stays queued instead of being dropped.
    framequeue = _addon_module("framequeue")
    state = sys.modules[f"{PKG}.blender.state"]
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    state.busy["refine"] = True
    try:
        framequeue.record_still(scene)
        for _ in range(3):
            framequeue.pump()
        assert [r.frame for r in framequeue.pending()] == [None]
    finally:
        state.busy["refine"] = False
    capfd.readouterr()
    framequeue.pump()
    # Refine Lines ran (this test rendered nothing for it to refine, so it says so).
    assert framequeue.pending() == []
    assert ("LineRelifer: render not refined: There is no render to refine; render the scene first (F12)."
            in capfd.readouterr().out.splitlines())


def test_pass_node_follows_a_renamed_scene(ui_render):
    # What was added is found again by the scene's session_uid and the nodes' names (no
    # Python references to Blender data, which an undo step frees): renaming the scene moves
    # the node over, switching auto-refine off takes it out and restores the compositor.
    framequeue, passnode = _addon_module("framequeue"), _addon_module("passnode")
    nodes = _addon_module("nodes")
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    before = _compositor_state(scene)
    scene.linerelifer.auto_refine = True
    framequeue.pump()
    old_folder = passnode.folder_of(scene.name)
    assert old_folder and os.path.isdir(old_folder)
    old_name, scene.name = scene.name, scene.name + " renamed"
    framequeue.pump()
    assert passnode.folder_of(old_name) is None and not os.path.exists(old_folder)
    assert passnode.folder_of(scene.name)
    ours = [n.name for n in nodes.compositor_tree(scene).nodes if n.name.startswith(passnode.NODE_NAME)]
    assert sorted(ours) == [passnode.NODE_NAME, passnode.NODE_NAME + " Source"]
    scene.linerelifer.auto_refine = False
    framequeue.pump()
    assert passnode.folder_of(scene.name) is None
    assert _compositor_state(scene) == before


def test_pass_node_survives_an_undo_step(ui_render):
    # Ctrl+Z frees and remakes Blender data under the timer: what was added is looked up
    # again, the node is put back, and switching auto-refine off restores the compositor.
    framequeue, passnode, nodes = (_addon_module(m) for m in ("framequeue", "passnode", "nodes"))
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    before = _compositor_state(scene)
    scene.linerelifer.auto_refine = True
    bpy.ops.ed.undo_push(message="auto-refine on")
    framequeue.pump()
    assert passnode.folder_of(scene.name)
    bpy.ops.ed.undo_push(message="pass node added")
    assert bpy.ops.ed.undo() == {"FINISHED"}
    scene = bpy.data.scenes[0]  # the undo step made it anew
    framequeue.pump()
    assert passnode.folder_of(scene.name) and os.path.isdir(passnode.folder_of(scene.name))
    tree = nodes.compositor_tree(scene)
    assert sorted(n.name for n in tree.nodes if n.name.startswith(passnode.NODE_NAME)) == [
        passnode.NODE_NAME, passnode.NODE_NAME + " Source"]
    scene.linerelifer.auto_refine = False
    framequeue.pump()
    assert passnode.folder_of(scene.name) is None and _compositor_state(scene) == before


def test_compositor_work_in_a_tree_the_extension_made_is_kept(ui_render, tmp_path):
    # The pass node switched the compositor on (4.x) or made its tree (5.0); nodes the user
    # added to it since make it theirs: saving (which takes the pass node out) keeps it on.
    framequeue, passnode, nodes = (_addon_module(m) for m in ("framequeue", "passnode", "nodes"))
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    scene.linerelifer.auto_refine = True
    framequeue.pump()
    tree = nodes.compositor_tree(scene)
    assert tree is not None and passnode.folder_of(scene.name)
    glare = tree.nodes.new("CompositorNodeGlare")
    glare.name = "user glare"
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "saved.blend"), copy=True)
    assert passnode.folder_of(scene.name) is None
    tree = nodes.compositor_tree(scene)
    assert tree is not None and tree.nodes.get("user glare") is not None, "the user's compositor was switched off"
    assert not [n for n in tree.nodes if n.name.startswith(passnode.NODE_NAME)]
    scene.linerelifer.auto_refine = False
    framequeue.pump()


@pytest.mark.skipif(bpy.app.version >= (5, 0, 0), reason="Blender 4.x compositor switch (Use Nodes)")
def test_switched_off_compositor_nodes_stay_off(ui_render, tmp_path, capfd):
    # Blender 4.x: a scene whose compositor nodes are switched off (Use Nodes) keeps them off;
    # auto-refine says what to do instead of bringing back the user's effects.
    framequeue, passnode = _addon_module("framequeue"), _addon_module("passnode")
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    scene.use_nodes = True
    tree = scene.node_tree
    rl = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers")
    comp = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
    invert = tree.nodes.new("CompositorNodeInvert")
    tree.links.new(rl.outputs["Image"], invert.inputs["Color"])
    tree.links.new(invert.outputs["Color"], comp.inputs["Image"])
    scene.use_nodes = False
    scene.linerelifer.auto_refine = True
    capfd.readouterr()
    try:
        framequeue.pump()
        framequeue.pump()
        log = capfd.readouterr().out
        assert not scene.use_nodes and passnode.folder_of(scene.name) is None
        ours = [ln for ln in log.splitlines() if ln.startswith("LineRelifer:")]
        assert len(ours) == 1 and "Use Nodes off" in ours[0], ours
        state = sys.modules[f"{PKG}.blender.state"]
        assert state.notice.text == ours[0].removeprefix("LineRelifer: ")
        scene.use_nodes = True  # what the line says to do: the node goes in, the panel stops asking
        framequeue.pump()
        assert passnode.folder_of(scene.name) and state.notice.text == ""
    finally:
        scene.linerelifer.auto_refine = False
        framequeue.pump()


def test_refine_lines_waits_for_a_running_render(addon, tmp_path):
    scene = build_scene(width=W, height=H, samples=1, frames=(1, 1))
    scene.render.filepath = str(tmp_path / "frame_")
    seen = []

    @bpy.app.handlers.persistent
    def try_refine(scene, *args):
        seen.append(bpy.ops.linerelifer.refine_lines.poll())
        try:
            bpy.ops.linerelifer.refine_lines()
        except RuntimeError as ex:
            seen.append(str(ex))

    bpy.app.handlers.render_write.append(try_refine)
    try:
        assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    finally:
        bpy.app.handlers.render_write.remove(try_refine)
    assert seen[0] is False
    assert "A render is running" in seen[1], seen
    assert bpy.ops.linerelifer.refine_lines.poll()  # and again once it has finished

# -- last: disabling the add-on ---------------------------------------------------

class _Layout:
    """Stands in for a panel's layout, which needs a window (none headless): takes every call
    the panel code makes and keeps the labels' texts."""

    def __init__(self, labels: list[str]) -> None:
        self.__dict__["labels"] = labels

    def label(self, text: str = "", **kw) -> None:
        self.labels.append(text)

    def __getattr__(self, name):
        return lambda *a, **kw: _Layout(self.labels)

    def __setattr__(self, name, value) -> None:
        pass


def _panel_labels() -> list[str]:
    labels: list[str] = []
    _addon_module("ui").draw_settings(_Layout(labels), bpy.context)
    return labels


def test_the_panel_names_a_worker_python_that_is_not_there(still_scene):
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.python_path = "/nowhere/bin/python3"
    try:
        labels = _panel_labels()
    finally:
        prefs.python_path = ""
    assert "Worker Python not found" in labels
    assert "/nowhere/bin/python3 (Preferences > Add-ons > LineRelifer)" in labels
    assert "Worker Python not found" not in _panel_labels()


def test_lines_in_the_styles_ink_tone(still_scene, tmp_path, capfd):
    """'Style's Ink': a style trained on grey-marker drawings draws its lines in that grey."""
    import json

    settings = still_scene.linerelifer
    settings.color_mode = "STYLE"
    assert settings.line_color() is None  # the bundled style records no ink tone: Freestyle's colour
    folder = Path(_STYLES_DIR)
    folder.mkdir(exist_ok=True)
    bundled = ROOT / "linerelifer_addon" / "styles"
    try:
        for ext in (".keras", ".tflite"):
            shutil.copy(bundled / f"default{ext}", folder / f"grey{ext}")
        meta = json.loads((bundled / "default.json").read_text())
        (folder / "grey.json").write_text(json.dumps({**meta, "name": "grey", "ink_tone": 60 / 255}))
        settings.style = "grey"
        expected = float(sys.modules[f"{PKG}.core.conversion"].srgb_to_linear(np.float32(60 / 255)))
        assert settings.line_color() == pytest.approx((expected,) * 3)
        assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
        lines = _image_rgba("LineRelifer Lines")
        ink = lines[..., 3] > 0.5
        assert ink.sum() > 100
        straight = lines[ink][:, :3] / lines[ink][:, 3:]  # the image holds premultiplied colour
        np.testing.assert_allclose(straight, expected, atol=1e-3)

        # The file is opened where that style is not installed (another machine, a farm node):
        # refining says so instead of quietly using the default style.
        for ext in (".keras", ".tflite", ".json"):
            (folder / f"grey{ext}").unlink()
        assert settings.style == "" and settings.style_name == "grey"
        with pytest.raises(RuntimeError, match=r"The style 'grey' is not installed here; copy its .json"):
            bpy.ops.linerelifer.refine_lines()
        assert "Style 'grey' is not installed" in _panel_labels()
        settings.style_name = ""  # a file saved before the name was kept: only the enum's number
        assert "Style chosen in this file is not installed" in _panel_labels()
        with pytest.raises(RuntimeError, match=r"The style chosen in this file is not installed here"):
            bpy.ops.linerelifer.refine_lines()
        settings.style_name = "grey"
        # An animation (a farm render) says so once, at its start; the frames are written.
        settings.auto_refine = True
        still_scene.render.filepath = str(tmp_path / "frames" / "frame_")
        capfd.readouterr()
        try:
            assert bpy.ops.render.render(animation=True) == {"FINISHED"}
        finally:
            settings.auto_refine = False
        ours = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("LineRelifer:")]
        assert len(ours) == 1 and "stopped for this render: The style 'grey' is not installed" in ours[0], ours
        assert (tmp_path / "frames" / "frame_0001.png").is_file()
        settings.style = "default"
        assert settings.style_name == "default" and bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    finally:
        settings.color_mode = "KEEP"
        settings.style = "default"
        shutil.rmtree(folder, ignore_errors=True)


def test_the_result_belongs_to_its_scene_and_survives_no_reopen_or_undo(still_scene, tmp_path):
    """Refine Lines is one undo step (Ctrl+Z reverted the edit before it too); a result whose
    pixels Blender dropped (a reopened file, a redo) is removed instead of offered, black, to
    Save; another scene's result is not offered as this scene's; a long panel message is
    shown whole and a reopened file forgets the last one."""
    pipeline = _addon_module("pipeline")
    settings = still_scene.linerelifer
    settings.strength = 1.0
    bpy.ops.ed.undo_push(message="before")
    settings.strength = 1.5
    bpy.ops.ed.undo_push(message="strength")
    assert bpy.ops.linerelifer.refine_lines("EXEC_DEFAULT", True) == {"FINISHED"}  # as the UI calls it
    assert pipeline.result_problem(bpy.context.scene) is None
    assert any(label.startswith("Result: image") for label in _panel_labels())
    bpy.ops.ed.undo()
    assert bpy.context.scene.linerelifer.strength == 1.5  # only the refinement was undone
    assert bpy.data.images.get("LineRelifer Result") is None
    bpy.ops.ed.redo()
    assert bpy.data.images.get("LineRelifer Result") is None  # it came back black: removed
    assert "Refine the lines of a render first" in pipeline.result_problem(bpy.context.scene)

    scene = bpy.context.scene
    assert bpy.ops.render.render() == {"FINISHED"}
    assert bpy.ops.linerelifer.refine_lines() == {"FINISHED"}
    other = bpy.data.scenes.new("Other")
    assert "belongs to scene" in (pipeline.result_problem(other) or "")
    assert pipeline.result_problem(scene) is None

    state = _addon_module("state")
    long_text = ("No Freestyle lines of the line sets' colours were found in the render; turn on the "
                 "Freestyle pass (LineRelifer panel) and render again")
    state.baked_problem["text"] = long_text
    scene.view_layers[0].freestyle_settings.as_render_pass = False
    shown = " ".join(_panel_labels())
    assert "(LineRelifer panel) and render again" in shown, shown
    path = str(tmp_path / "refined.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert bpy.data.images.get("LineRelifer Result") is None
    assert state.baked_problem["text"] == ""


def test_a_thick_thin_saved_before_the_checkbox_is_still_used(addon, tmp_path):
    """Files saved when the slider alone set Thick-Thin (no `use_thick_thin` saved) load with
    the checkbox on, so the artist's value is still drawn; untouched ones draw the style's own."""
    scene = build_scene(width=W, height=H)
    other = bpy.data.scenes.new("Untouched")
    scene.linerelifer.thick_thin = 0.3
    assert scene.linerelifer.thick_thin_amount() == pytest.approx(0.3)  # set, no checkbox saved: counts
    names = scene.name, other.name
    path = str(tmp_path / "old.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    settings = bpy.data.scenes[names[0]].linerelifer
    assert settings.use_thick_thin and settings.thick_thin_amount() == pytest.approx(0.3)
    assert bpy.data.scenes[names[1]].linerelifer.thick_thin_amount() is None


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
