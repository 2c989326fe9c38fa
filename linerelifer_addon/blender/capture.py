"""Getting pixels out of Blender and back in.

The Render Result's pixels cannot be read from Python, but
``Image.save_render`` can write the whole result -- every pass -- to a file.
So a still render is captured by saving it, with the scene's output settings
temporarily switched to a single-part multilayer EXR (uncompressed 32-bit
floats), into a private temp folder; :mod:`.exr` reads it back with numpy.
Switching the settings is a write to Blender data: it happens only on the
main thread with no render running (Refine Lines waits for renders).
Animation frames never come through here: farm renders have no Render Result
image, and UI render handlers must not write; see :mod:`.passnode`.

All arrays here are float32, (H, W, C) with row 0 at the TOP.  Blender's
``Image.pixels`` is bottom-up, hence the flips.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import bpy
import numpy as np

from ..core.conversion import srgb_to_linear
from . import exr, nodes
from .common import IS_5
from .passnode import NODE_NAME as PASS_NODE_NAME

RENDER_RESULT = "Render Result"


class CaptureError(RuntimeError):
    """The render cannot be read (one sentence for the user)."""


@dataclass
class RenderCapture:
    combined: np.ndarray | None  # (H, W, 4) premultiplied, scene linear
    freestyle: np.ndarray | None  # (H, W, 4) premultiplied, None without the pass
    width: int
    height: int
    note: str = ""  # what the user should know about what was refined (view layer, compositor)


# -- settings override ---------------------------------------------------------------

_SETTING_NAMES = ("media_type", "file_format", "color_depth", "color_mode", "exr_codec",
                  "use_exr_interleave", "use_preview", "color_management")


# An output's own colour management (Override): putting "OVERRIDE" back copies the scene's
# settings into it, so these are put back after it (display device before view transform and look).
_OVERRIDE_NAMES = (("display_settings", "display_device"), ("view_settings", "view_transform"),
                   ("view_settings", "look"), ("view_settings", "exposure"), ("view_settings", "gamma"),
                   ("view_settings", "use_curve_mapping"), ("view_settings", "use_white_balance"),
                   ("view_settings", "white_balance_temperature"), ("view_settings", "white_balance_tint"),
                   ("display_settings", "emulation"), ("linear_colorspace_settings", "name"))


_CURVE_NAMES = ("tone", "use_clip", "clip_min_x", "clip_min_y", "clip_max_x", "clip_max_y", "extend",
                "black_level", "white_level")


class _Override:
    """An output's own colour management (Override), to put back after a capture."""

    def __init__(self, ims) -> None:
        self.values: list[tuple[str, str, object]] = []
        self.curve: dict | None = None
        if getattr(ims, "color_management", "") != "OVERRIDE":
            return
        for group, name in _OVERRIDE_NAMES:
            owner = getattr(ims, group, None)
            if owner is not None and hasattr(owner, name):
                self.values.append((group, name, getattr(owner, name)))
        cm = getattr(getattr(ims, "view_settings", None), "curve_mapping", None)
        if cm is not None:
            self.curve = {"values": {n: _copy(getattr(cm, n)) for n in _CURVE_NAMES if hasattr(cm, n)},
                          "points": [[(tuple(p.location), p.handle_type) for p in c.points] for c in cm.curves]}

    def restore(self, ims) -> None:
        for group, name, value in self.values:
            try:
                setattr(getattr(ims, group), name, value)
            except (TypeError, AttributeError, ValueError):
                pass
        if self.curve is None:
            return
        try:
            cm = ims.view_settings.curve_mapping
            for name, value in self.curve["values"].items():
                setattr(cm, name, value)
            for curve, points in zip(cm.curves, self.curve["points"]):
                while len(curve.points) > max(len(points), 2):
                    curve.points.remove(curve.points[len(curve.points) - 1])
                while len(curve.points) < len(points):
                    curve.points.new(0.0, 0.0)
                for p, (loc, handle) in zip(curve.points, points):
                    p.location, p.handle_type = loc, handle
            cm.update()
        except (TypeError, AttributeError, ValueError, RuntimeError):
            pass


def _copy(value):
    return tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value


@contextmanager
def exr_output_settings(scene):
    """Temporarily set the scene's output format to an uncompressed, single-part multilayer
    EXR in 32-bit float (half floats round the render and turn pixels above 65504 into inf);
    restore every setting afterwards, an output's colour management override included."""
    ims = scene.render.image_settings
    saved = [(n, getattr(ims, n)) for n in _SETTING_NAMES if hasattr(ims, n)]
    override = _Override(ims)
    try:
        if IS_5 and hasattr(ims, "media_type"):
            ims.media_type = "MULTI_LAYER_IMAGE"
        else:  # Blender 4.x
            ims.file_format = "OPEN_EXR_MULTILAYER"
        ims.color_depth = "32"
        ims.exr_codec = "NONE"
        if hasattr(ims, "use_exr_interleave"):
            ims.use_exr_interleave = True  # one part holding every pass
        if hasattr(ims, "use_preview"):
            ims.use_preview = False
        if hasattr(ims, "color_management"):
            ims.color_management = "FOLLOW_SCENE"
        yield
    finally:
        # media_type first: setting it resets file_format.
        for name, value in saved:
            try:
                setattr(ims, name, value)
            except (TypeError, AttributeError, ValueError):
                pass
        override.restore(ims)


def _output_view(scene):
    """The view and display settings the scene's image files are written with: the output's
    own override if it has one, else the scene's."""
    ims = scene.render.image_settings
    own = getattr(ims, "color_management", "") == "OVERRIDE"
    return (ims.view_settings, ims.display_settings) if own else (scene.view_settings, scene.display_settings)


def output_view_transform(scene) -> str:
    """The name of the view transform the scene's image files are written through."""
    return _output_view(scene)[0].view_transform


def output_view_is_plain_srgb(scene) -> bool:
    """Whether the scene's image files are written through plain sRGB (Standard, no look,
    exposure, gamma, curves or white balance), with the output's own override if it has one."""
    vs, ds = _output_view(scene)
    return (vs.view_transform == "Standard" and vs.look in ("None", "") and vs.exposure == 0.0
            and vs.gamma == 1.0 and not vs.use_curve_mapping and not getattr(vs, "use_white_balance", False)
            and ds.display_device == "sRGB")


_LOSSY = ("JPEG", "JPEG2000", "WEBP")


def through_view(scene, colors: np.ndarray) -> np.ndarray:
    """Scene-linear colours (N, 3) as the scene's image files show them (its view transform,
    look, exposure, curves, the output's override), given back sRGB-decoded: the values a file
    written through the view transform holds when read as linear. Lines drawn into such a
    file take this colour, so they match what Blender itself writes.

    Blender converts: the colours are saved as one small image with the scene's own output
    settings, untouched (a UI animation may be writing frames with them on the render thread
    meanwhile), and read back; each colour fills a 16 px block for a lossy format."""
    colors = np.asarray(colors, np.float32).reshape(-1, 3)
    n = len(colors)
    if n == 0:
        return colors.copy()
    block = 16 if scene.render.image_settings.file_format in _LOSSY else 1
    w = min(n, 256)
    h = -(-n // w)
    px = np.zeros((h * w, 4), np.float32)
    px[:n, :3] = np.maximum(colors, 0.0)
    px[:, 3] = 1.0
    grid = np.repeat(np.repeat(px.reshape(h, w, 4), block, axis=0), block, axis=1)
    tmp = tempfile.mkdtemp(prefix="linerelifer-view-")
    path = os.path.join(tmp, "colors" + (scene.render.file_extension or ".png"))
    src = bpy.data.images.new("LineRelifer view colours", width=w * block, height=h * block,
                              alpha=True, float_buffer=True)
    back = None
    try:
        src.pixels.foreach_set(np.ascontiguousarray(grid[::-1]).ravel())
        src.save_render(path, scene=scene)
        back = bpy.data.images.load(path, check_existing=False)
        shown = image_to_array(back)[block // 2::block, block // 2::block, :3].reshape(-1, 3)[:n]
        is_float = bool(back.is_float)  # 16-bit files: read as linear already
    finally:
        bpy.data.images.remove(src)
        if back is not None:
            bpy.data.images.remove(back)
        shutil.rmtree(tmp, ignore_errors=True)
    return np.asarray(shown, np.float32) if is_float else srgb_to_linear(shown)


def composited(scene) -> bool:
    """Whether the render went through the scene's compositor (its output is the image)."""
    return bool(scene.render.use_compositing and nodes.compositor_tree(scene) is not None)


def has_render_result() -> bool:
    img = bpy.data.images.get(RENDER_RESULT)
    return img is not None and img.type == "RENDER_RESULT"


def draws_the_pass(scene) -> bool:
    """Whether the scene's compositor uses a Render Layers node's Freestyle output: its
    result then already holds the unrefined lines."""
    tree = nodes.compositor_tree(scene)
    if tree is None or not scene.render.use_compositing:
        return False
    return any(link.from_node.bl_idname == "CompositorNodeRLayers" and link.from_socket.name == "Freestyle"
               and not link.to_node.name.startswith(PASS_NODE_NAME)  # the extension's own pass output
               for link in tree.links)


def save_render_passes(scene, want_combined: bool = True, view_layer_name: str | None = None) -> RenderCapture:
    """Capture the latest render of ``scene`` (Combined and Freestyle passes): the Freestyle
    pass of `view_layer_name` (the window's layer) when it draws one, else of the first layer
    that does."""
    img = bpy.data.images.get(RENDER_RESULT)
    if img is None or img.type != "RENDER_RESULT":
        raise CaptureError("There is no render to refine; render the scene first (F12)")
    tmp = tempfile.mkdtemp(prefix="linerelifer-capture-")
    path = os.path.join(tmp, "render.exr")
    try:
        with exr_output_settings(scene):
            try:
                img.save_render(path, scene=scene)
            except RuntimeError as ex:
                if "does not have any image data" in str(ex):
                    raise CaptureError("There is no render to refine; render the scene first (F12)") from None
                raise CaptureError(f"The render could not be read ({str(ex).strip()})") from None
        if not os.path.isfile(path):
            raise CaptureError("The render could not be read (Blender wrote no file)")

        view_layer = scene.view_layers[0].name if len(scene.view_layers) else None
        drawing = [vl.name for vl in scene.view_layers
                   if vl.use and vl.use_freestyle and vl.freestyle_settings.as_render_pass]
        if drawing:
            view_layer = view_layer_name if view_layer_name in drawing else drawing[0]
        notes = []
        if len(drawing) > 1:
            notes.append(f"refined view layer '{view_layer}' only ({len(drawing) - 1} more draw a Freestyle "
                         "pass; make one the active view layer to refine it)")

        names = exr.channel_names(path)
        fake = dict.fromkeys(names)
        fs_prefix = exr.find_layer(fake, "Freestyle", view_layer)
        cb_prefix = exr.find_layer(fake, "Combined", view_layer) if want_combined else None
        if want_combined and composited(scene) and "Composite.Combined.R" in fake:
            if fs_prefix and draws_the_pass(scene):  # its lines would stay under the refined ones
                notes.append("the compositor draws the Freestyle pass into its result, so the refined lines "
                             "are drawn over the render's Combined pass, without the compositor")
            else:
                cb_prefix = "Composite.Combined"  # what the compositor made of the render
        keep = tuple(p + "." for p in (fs_prefix, cb_prefix) if p)
        if not keep:
            channels = {}
        else:
            channels = exr.read_exr(path, want=lambda n: n.startswith(keep))
        freestyle = exr.layer_rgba(channels, fs_prefix) if fs_prefix else None
        combined = exr.layer_rgba(channels, cb_prefix) if cb_prefix else None
        if combined is None and want_combined:
            # A file without layers (should not happen for a render): plain RGBA.
            combined = _plain_rgba(channels)
        ref = freestyle if freestyle is not None else combined
        if ref is None:
            raise CaptureError("The render holds no image to refine")
        h, w = ref.shape[:2]
        return RenderCapture(combined=combined, freestyle=freestyle, width=w, height=h,
                             note="; ".join(notes) if fs_prefix else "")
    except exr.ExrError as ex:
        raise CaptureError(f"The render could not be read ({ex})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain_rgba(channels):
    if all(c in channels for c in "RGB"):
        a = channels.get("A")
        if a is None:
            a = np.ones_like(channels["R"])
        return np.stack([channels["R"], channels["G"], channels["B"], a], axis=-1)
    return None


# -- colour helpers ------------------------------------------------------------------

def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4]
    rgb = np.where(a > 1e-6, rgba[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([rgb, a], axis=-1).astype(np.float32)


def premultiply(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4]
    return np.concatenate([rgba[..., :3] * a, a], axis=-1).astype(np.float32)


# -- bpy images <-> numpy ------------------------------------------------------------

def image_to_array(img) -> np.ndarray:
    """(H, W, 4) float32, top row first, as stored (byte images: raw 0..1
    display values with straight alpha; float images: linear premultiplied)."""
    w, h = img.size[:]
    if w == 0 or h == 0:
        raise CaptureError(f"Image '{img.name}' has no pixels")
    buf = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(h, w, 4)[::-1].copy()


def array_to_image(name: str, rgba: np.ndarray, float_buffer: bool = True):
    """Create or update the generated image ``name`` from (H, W, 4) floats
    (top row first; premultiplied linear for float images)."""
    h, w = rgba.shape[:2]
    img = bpy.data.images.get(name)
    if img is not None and img.source != "GENERATED":
        # A user's file image of that name (Image > Save As turns the result into one) stays
        # as it was, named after its file as Blender names the images it loads (NAME.old
        # copies piled up, one a Save As).
        img.name = os.path.basename(bpy.path.abspath(img.filepath)) if img.filepath else name + ".old"
        img = None
    if img is None:
        img = bpy.data.images.new(name, width=w, height=h, alpha=True, float_buffer=float_buffer)
    elif (tuple(img.size[:]) != (w, h) or img.use_generated_float != float_buffer):
        img.generated_width = w
        img.generated_height = h
        img.use_generated_float = float_buffer
    img.alpha_mode = "PREMUL" if float_buffer else "STRAIGHT"
    img.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], dtype=np.float32).ravel())
    img.update()
    return img


def load_image_file(path: str):
    """Load an image file as a temporary datablock; the caller removes it.

    Blender loads an empty, truncated or non-image file as an image without pixels; that
    is refused here, naming the file, instead of failing later without it.
    """
    try:
        img = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as ex:
        raise CaptureError(f"The frame {path} could not be read ({str(ex).strip()})") from None
    try:
        img.reload()
    except RuntimeError:
        pass
    if 0 in tuple(img.size[:]):
        bpy.data.images.remove(img)
        try:
            empty = os.path.getsize(path) == 0
        except OSError:
            empty = False
        cause = "the file is empty" if empty else "not a readable image: unknown format or truncated file"
        raise CaptureError(f"The frame {path} could not be read ({cause})")
    return img
