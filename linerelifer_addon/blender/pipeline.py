"""The refinement pipeline, without UI: capture -> coverage -> worker -> pixels.

Each job is split in three steps so the UI can run the middle one (the
worker call, seconds long) on a background thread while Blender data is only
touched on the main thread:

* ``prepare_*`` (main thread / render_write): read pixels, build coverage;
* ``run`` (any thread): the worker refines the coverage;
* ``finish_*`` + ``apply_*`` / ``write_frame`` (main thread): pixels back into
  images or files.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..core import baked
from ..core.conversion import LineImage, blend, from_coverage, linear_to_srgb, srgb_to_linear, to_coverage
from ..core.styles import StyleError
from . import capture, nodes
from .capture import CaptureError, premultiply, unpremultiply
from .common import LINES_IMAGE, RESULT_IMAGE, first_sentence, log
from .state import baked_problem
from .props import style_path


class RefineError(RuntimeError):
    """A problem the user can fix; the message is one sentence."""


@dataclass
class Job:
    line_image: LineImage | None
    style: Path
    tile: int
    strength: float
    color: tuple | None
    uses_pass: bool
    thick_thin: float | None = None  # None: the style's own
    # still jobs: the render's combined pass (premultiplied linear)
    combined: np.ndarray | None = None
    # frame jobs
    frame: int = 0
    frame_path: str = ""
    frame_pixels: np.ndarray | None = None
    frame_is_float: bool = False
    frame_image_name: str = ""
    refined: np.ndarray | None = None
    started: float = field(default_factory=time.monotonic)
    queued: float = field(default_factory=time.monotonic)
    scene_name: str = ""
    # lines baked into the render: where they are, and the render in the space they were found
    baked: baked.BakedLines | None = None
    baked_rgb: np.ndarray | None = None
    note: str = ""  # still jobs: what was refined, when the user should know (capture.RenderCapture.note)

    @property
    def coverage(self) -> np.ndarray:
        return self.baked.coverage if self.baked is not None else self.line_image.coverage


# -- helpers --------------------------------------------------------------------------

def freestyle_pass_enabled(scene) -> bool:
    return any(vl.use and vl.use_freestyle and vl.freestyle_settings.as_render_pass
               for vl in scene.view_layers)


def _settings(scene):
    settings = getattr(scene, "linerelifer", None)
    if settings is None:
        raise RefineError("LineRelifer is not registered for this scene")
    return settings


def style_problem(scene) -> str | None:
    """Why the scene's chosen style cannot be used (not installed here, unreadable), or None:
    auto-refine says it once at the start of a render, not at every frame."""
    try:
        _style(_settings(scene))
    except RefineError as ex:
        return str(ex)
    return None


def _style(settings) -> Path:
    try:
        return style_path(settings)
    except StyleError as ex:
        raise RefineError(str(ex)) from None


def _lines_from_pass(freestyle_premul: np.ndarray, where: str = "", allow_empty: bool = False) -> LineImage:
    fs = unpremultiply(freestyle_premul)
    if not allow_empty and not float(np.nan_to_num(fs[..., 3]).max(initial=0.0)) > 0.0:
        raise RefineError(f"The Freestyle pass{where} holds no lines; check the line sets and render again")
    fs[..., 3] = np.clip(fs[..., 3], 0.0, 1.0)
    return to_coverage(fs)


def _lines_from_drawing(rgb_display: np.ndarray, where: str = " in the render",
                        allow_empty: bool = False) -> LineImage:
    li = to_coverage(np.clip(rgb_display[..., :3], 0.0, 1.0))
    if not allow_empty and float(li.coverage.max(initial=0.0)) <= 0.0:
        raise RefineError(f"No lines were found{where}; turn on Freestyle and render again")
    return li


def baked_line_sets(scene) -> tuple[np.ndarray, float]:
    """The line colours (scene linear, (K, 3)) and the widest line in pixels that the
    scene's rendered Freestyle line sets draw."""
    r = scene.render
    if r.line_thickness_mode == "ABSOLUTE":  # Freestyle scales it with the resolution percentage
        unit = float(r.line_thickness) * max(1.0, r.resolution_percentage / 100.0)
    else:  # relative: scaled with the image height, 1 at 480 px
        unit = r.resolution_y * r.resolution_percentage / 100.0 / 480.0
    colors, widest = [], 0.0
    for vl in scene.view_layers:
        if not (vl.use and vl.use_freestyle):
            continue
        for ls in vl.freestyle_settings.linesets:
            if ls.show_render and ls.linestyle is not None:
                colors.append(tuple(ls.linestyle.color))
                widest = max(widest, float(ls.linestyle.thickness) * unit)
    return np.asarray(colors, np.float32).reshape(-1, 3), widest


def _find_baked(scene, rgb_display: np.ndarray, line_colors_display: np.ndarray, widest: float,
                where: str, allow_empty: bool, linear: np.ndarray | None = None) -> baked.BakedLines:
    try:
        lines = baked.find_lines(rgb_display, line_colors_display, widest, linear=linear)
        if not allow_empty and not lines.mask.any():
            raise baked.BakedLinesError(f"No Freestyle lines of the line sets' colours were found{where}; "
                                        "turn on the Freestyle pass (LineRelifer panel) to refine them")
    except baked.BakedLinesError as ex:
        baked_problem["text"] = first_sentence(ex)
        raise RefineError(str(ex)) from None
    baked_problem["text"] = ""
    return lines


# -- still renders --------------------------------------------------------------------

def prepare_still(scene) -> Job:
    """Capture the latest render of ``scene`` and build its coverage."""
    settings = _settings(scene)
    style = _style(settings)
    uses_pass = freestyle_pass_enabled(scene)
    if not uses_pass and not scene.render.use_freestyle:
        raise RefineError("Freestyle is off; enable it in Render Properties and render again")
    try:
        layer = getattr(bpy.context, "view_layer", None)
        cap = capture.save_render_passes(scene, want_combined=True,
                                         view_layer_name=layer.name if layer is not None else None)
    except CaptureError as ex:
        raise RefineError(str(ex)) from None
    if uses_pass and cap.freestyle is None:
        if not scene.render.use_freestyle:  # the view layer's "As Render Pass" alone draws nothing
            raise RefineError("Freestyle is off; enable it in Render Properties and render again")
        raise RefineError("The render has no Freestyle pass; render again after enabling it")
    if cap.combined is None:
        raise RefineError("The render has no combined image")
    li = lines = rgb = None
    if uses_pass:
        li = _lines_from_pass(cap.freestyle)
    else:
        # Lines baked into the image: find Freestyle's strokes by their colour (scene linear
        # in the capture, compared as sRGB), change nothing else.
        if _transparent_hides_lines(scene):
            baked_problem["text"] = _TRANSPARENT_BAKED[0].upper() + _TRANSPARENT_BAKED[1:]
            raise RefineError(baked_problem["text"])
        colors, widest = baked_line_sets(scene)
        linear = unpremultiply(cap.combined)[..., :3]
        rgb = linear_to_srgb(linear)
        lines = _find_baked(scene, rgb, linear_to_srgb(colors), widest, " in the render", allow_empty=False,
                            linear=linear)
    return Job(line_image=li, style=style, tile=int(settings.tile_size),
               strength=float(settings.strength), color=settings.line_color(),
               thick_thin=settings.thick_thin_amount(), uses_pass=uses_pass, combined=cap.combined, baked=lines,
               baked_rgb=rgb, note=cap.note)


def run(job: Job, client, progress=None, cancel=None) -> np.ndarray:
    """The worker call (blocking; safe on a background thread)."""
    refined = client.refine(job.coverage, job.style, tile=job.tile, progress=progress, cancel=cancel,
                            thick_thin=job.thick_thin)
    job.refined = refined
    return refined


def finish_still(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """(result, lines): premultiplied linear float RGBA, top row first."""
    li, refined = job.line_image, job.refined
    comb = job.combined
    if job.uses_pass:
        lines = from_coverage(li, refined, job.strength, job.color)  # straight, linear
        lines_p = premultiply(np.clip(lines, 0.0, None))
        a = lines_p[..., 3:4]
        result = lines_p + comb * (1.0 - a)
    else:
        lines, cov, color_disp, m, new = _redraw_baked(job, refined)
        result = np.array(comb, np.float32, copy=True)  # every other pixel as rendered, bit for bit
        result[..., :3][m] = _redrawn_linear(job, cov, color_disp, new) * comb[..., 3][m][:, None]
        ink = srgb_to_linear(lines.ink if color_disp is None else np.broadcast_to(color_disp, lines.ink.shape))
        lines_p = np.concatenate([ink * cov[..., None], cov[..., None]], axis=-1)
        return result, _finite(lines_p)
    return _finite(result), _finite(lines_p)


def apply_still(context, scene, result: np.ndarray, lines: np.ndarray, show: bool = True):
    """Store the results as images, feed the compositor node, show the result."""
    res_img = capture.array_to_image(RESULT_IMAGE, result, float_buffer=True)
    lines_img = capture.array_to_image(LINES_IMAGE, lines, float_buffer=True)
    for img in (res_img, lines_img):
        img["linerelifer_scene"] = scene.name  # whose result it is (see result_problem)
    # Shown and saved as the render is: through the scene's view transform.
    res_img.use_view_as_render = True
    try:
        nodes.remove_lines_node(scene)  # what earlier versions left in the compositor
    except Exception as ex:  # the compositor is optional; never fail the refinement
        log(f"could not remove the old compositor node ({ex})")
    if show:
        show_in_image_editor(context, res_img)
    return res_img, lines_img


def result_problem(scene) -> str | None:
    """Why ``scene`` has no refined render to show or save (one sentence), or None."""
    img = bpy.data.images.get(RESULT_IMAGE)
    if img is None:
        return "Refine the lines of a render first"
    if not img.has_data:
        return ("The refined render's pixels are gone (Blender keeps none for a generated image when a file "
                "is reopened or an undo passes it); refine the lines again")
    if img.get("linerelifer_scene") != scene.name:
        return (f"The refined render belongs to scene '{img.get('linerelifer_scene')}'; refine the lines of this "
                "scene's render, or switch back to that scene to save it")
    return None


def drop_emptied_results() -> None:
    """Remove result images whose pixels Blender dropped (a reopened file, undo or redo brings
    generated images back blank): the Image Editor would show them black."""
    for name in (RESULT_IMAGE, LINES_IMAGE):
        img = bpy.data.images.get(name)
        if img is not None and "linerelifer_scene" in img and img.source == "GENERATED" and not img.has_data:
            bpy.data.images.remove(img)


def save_result(scene, filepath: str) -> str:
    """Write ``LineRelifer Result`` as the Image Editor shows it (view as render): through the
    scene's view transform, look, exposure and gamma, in the scene's output format -- what
    Blender's own "Save as Render" does.  Returns the path written."""
    problem = result_problem(scene)
    if problem:
        raise RefineError(problem)
    img = bpy.data.images[RESULT_IMAGE]
    if not filepath:
        raise RefineError("No file path was given for the refined render")
    if filepath.startswith("//") and not bpy.data.filepath:
        raise RefineError(f"The path {filepath} is relative to the .blend's folder, and this .blend is not saved "
                          "yet; save it first or choose a full path")
    path = bpy.path.abspath(filepath)
    if scene.render.use_file_extension:
        path = bpy.path.ensure_ext(path, scene.render.file_extension)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        img.save_render(path, scene=scene)
    except RuntimeError as ex:
        raise RefineError(f"The refined render could not be saved to {path} ({first_sentence(ex).rstrip('.')})") from None
    return path


def show_in_image_editor(context, img) -> bool:
    wm = getattr(context, "window_manager", None) or bpy.context.window_manager
    editors = []
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type == "IMAGE_EDITOR":
                editors.append(area)
    if not editors:
        return False
    # Prefer the editor showing the render (or our result), else the first one.
    def rank(area):
        shown = area.spaces.active.image
        if shown is not None and shown.name in (RESULT_IMAGE, capture.RENDER_RESULT):
            return 0
        return 1
    area = sorted(editors, key=rank)[0]
    area.spaces.active.image = img
    area.tag_redraw()
    return True


def refine_still_sync(context, scene, client, show: bool = True):
    job = prepare_still(scene)
    run(job, client)
    result, lines = finish_still(job)
    return apply_still(context, scene, result, lines, show=show)


# -- animation frames ----------------------------------------------------------------

def frame_output_problem(scene) -> str | None:
    """Why written frames cannot be refined, or None."""
    r = scene.render
    ims = r.image_settings
    if getattr(r, "is_movie_format", False) or getattr(ims, "media_type", "") == "VIDEO":
        return ("the output (Output Properties > Output) is a movie, whose frames cannot be rewritten; "
                "render image frames to refine them")
    if r.use_multiview:
        return ("the scene renders several views (Output Properties > Stereoscopy), whose frames auto-refine "
                "does not rewrite; turn Stereoscopy off to refine the frames")
    if getattr(ims, "media_type", "") == "MULTI_LAYER_IMAGE" or ims.file_format == "OPEN_EXR_MULTILAYER":
        return ("the output (Output Properties > Output) is OpenEXR MultiLayer, which auto-refine does not "
                "rewrite; choose PNG, TIFF or OpenEXR")
    return None


def frame_file_candidates(scene) -> list[str]:
    """Where Blender writes the current frame: its numbered path, or the plain one for a still."""
    r = scene.render
    frame_path = r.frame_path(frame=scene.frame_current)
    ext = os.path.splitext(frame_path)[1]
    still = bpy.path.abspath(r.filepath)
    if r.use_file_extension and ext and not still.lower().endswith(ext.lower()):
        still += ext
    return [frame_path, still]


def file_stamp(path: str) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None when there is none: tells a rewritten file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def written_frame_path(scene, since: float, before: dict[str, tuple[int, int] | None] | None = None) -> str | None:
    """The file Blender has just written for the current frame: modified since the render
    began (`since`, this computer's clock) or, with `before` (the candidates' stamps taken at
    render_pre), changed since then, which also holds on a file server whose clock lags."""
    found = []
    for p in frame_file_candidates(scene):
        try:
            st = os.stat(p)  # one look at the file: its kind, time and size
        except OSError:
            continue
        changed = before is not None and p in before and (st.st_mtime_ns, st.st_size) != before[p]
        if stat.S_ISREG(st.st_mode) and (st.st_mtime >= since - 2.0 or changed):
            found.append((st.st_mtime, p))
    if not found:
        return None
    return max(found)[1]


def prepare_frame(scene, frame_path: str, freestyle: np.ndarray | None, frame: int) -> Job:
    """Load the written frame (main thread) and build its coverage.

    A frame without lines (a blank or a fade) is refined all the same, which gives it back
    unchanged, so the refined sequence has no gaps.
    """
    settings = _settings(scene)
    style = _style(settings)
    img = capture.load_image_file(frame_path)
    try:
        pixels = capture.image_to_array(img)
        is_float = bool(img.is_float)
        if freestyle is not None:
            if freestyle.shape[:2] != pixels.shape[:2]:
                raise RefineError(f"The Freestyle pass and the written frame {frame_path} differ in size")
            li = _lines_from_pass(freestyle, f" of frame {frame_path}", allow_empty=True)
            color = settings.line_color()
            if img.file_format not in _LINEAR_FORMATS:  # written through the view transform
                color = _frame_line_colors(scene, li, color)
        else:
            rgb, linear = pixels[..., :3], None
            if is_float:
                linear = unpremultiply(pixels)[..., :3]
                rgb = linear_to_srgb(linear)
            if scene.render.use_freestyle:
                lines = _baked_frame_lines(scene, rgb, frame_path, linear, img.file_format in _LINEAR_FORMATS)
                return Job(line_image=None, style=style, tile=int(settings.tile_size),
                           strength=float(settings.strength), color=settings.line_color(),
                           thick_thin=settings.thick_thin_amount(), uses_pass=False, frame=frame,
                           frame_path=frame_path, frame_pixels=pixels,
                           frame_is_float=is_float, frame_image_name=img.name, baked=lines, baked_rgb=rgb)
            # A scene without Freestyle: the file is a line drawing (scripts refining files;
            # auto-refine never comes here, it stops at render_init when Freestyle is off).
            li = _lines_from_drawing(rgb, f" in the frame {frame_path}", allow_empty=True)
    except Exception:
        bpy.data.images.remove(img)
        raise
    return Job(line_image=li, style=style, tile=int(settings.tile_size),
               strength=float(settings.strength), thick_thin=settings.thick_thin_amount(),
               color=color if freestyle is not None else settings.line_color(),
               uses_pass=freestyle is not None, frame=frame, frame_path=frame_path,
               frame_pixels=pixels, frame_is_float=is_float, frame_image_name=img.name)


_LINEAR_FORMATS = ("OPEN_EXR", "OPEN_EXR_MULTILAYER", "HDR")  # files that hold scene-linear values


def _frame_line_colors(scene, li: LineImage, color):
    """The pass's line colours (in `li`, in place) and the chosen colour, as a frame file
    written through the view transform (AgX by default) shows them: plain sRGB would draw
    coloured lines in another tone than Blender's own. Returns the chosen colour so converted
    (None stays None)."""
    if capture.output_view_is_plain_srgb(scene):
        return color
    rgb = li.pixels[..., :3]
    inked = li.pixels[..., 3] > 0.0
    # Colours told apart to 12 bits, sRGB-encoded (finer than 8-bit files, in the darks too;
    # a colour ramp on every stroke gives thousands, not millions), as one integer each:
    # np.unique over rows took 1.2 s for a 4K pass, this 0.04 s.
    q = np.round(linear_to_srgb(rgb[inked]) * 4095.0).astype(np.int64)
    packed, inverse = np.unique((q[:, 0] << 24) | (q[:, 1] << 12) | q[:, 2], return_inverse=True)
    uniq = srgb_to_linear(np.stack([packed >> 24, (packed >> 12) & 0xFFF, packed & 0xFFF], axis=1) / 4095.0)
    extra = [np.asarray(li.line_color, np.float32)] + ([np.asarray(color, np.float32)] if color is not None else [])
    shown = capture.through_view(scene, np.concatenate([uniq, np.stack(extra)]).astype(np.float32))
    rgb[inked] = shown[:len(uniq)][inverse.ravel()]
    li.line_color = shown[len(uniq)]
    return tuple(float(v) for v in shown[len(uniq) + 1]) if color is not None else None


# Black outlines against a transparent film: their colour and the empty pixels' unpremultiplied
# black are one colour, so the outline is taken for part of a filled area and left out.
_TRANSPARENT_BAKED = ("black lines baked over a transparent background (Film > Transparent) cannot be "
                      "told from it; turn on the Freestyle pass (LineRelifer panel) to refine them")


def _transparent_hides_lines(scene) -> bool:
    """Whether black lines are baked over a transparent film (see _TRANSPARENT_BAKED)."""
    if not scene.render.film_transparent:
        return False
    colors, _ = baked_line_sets(scene)
    return bool(len(colors)) and float(linear_to_srgb(colors).max(axis=1).min()) <= 2 * baked.TOLERANCE


def baked_frames_problem(scene) -> str | None:
    """Why frames this scene writes with baked lines cannot be refined, or None: EXR and HDR
    frames hold scene linear values, other formats are saved through the view transform,
    where the line colour is known only when that transform is plain sRGB (reads only)."""
    if freestyle_pass_enabled(scene):
        return None
    if _transparent_hides_lines(scene):
        return _TRANSPARENT_BAKED
    ims = scene.render.image_settings
    if ims.file_format in ("OPEN_EXR", "HDR"):
        return None
    if ims.file_format == "JPEG" or (ims.file_format == "WEBP" and ims.quality < 100):  # lossy
        kind = "JPEG" if ims.file_format == "JPEG" else "lossy WebP"
        return (f"frames are saved as {kind}, whose compression changes the colour of lines baked into "
                "them; turn on the Freestyle pass (LineRelifer panel) or save PNG or TIFF frames")
    if capture.output_view_is_plain_srgb(scene):
        return None
    return (f"frames are saved through the view transform '{capture.output_view_transform(scene)}' "
            "(Color Management), which hides the colour of lines baked into them; turn on the Freestyle "
            "pass (LineRelifer panel) or use Standard")


def _baked_frame_lines(scene, rgb_display: np.ndarray, frame_path: str,
                       linear: np.ndarray | None = None, linear_file: bool = False) -> baked.BakedLines:
    """Freestyle's strokes in a written frame (see :func:`baked_frames_problem`)."""
    colors, widest = baked_line_sets(scene)
    if not linear_file and not capture.output_view_is_plain_srgb(scene):
        raise RefineError(
            f"The frame {frame_path} was saved through the view transform "
            f"'{capture.output_view_transform(scene)}', so the colour of its baked lines is not known; "
            "turn on the Freestyle pass (LineRelifer panel) or use Standard")
    return _find_baked(scene, rgb_display, linear_to_srgb(colors), widest, f" in the frame {frame_path}",
                       allow_empty=True, linear=linear)


def finish_frame(job: Job) -> np.ndarray:
    """The refined frame, in the loaded image's own storage convention."""
    li, refined, px = job.line_image, job.refined, job.frame_pixels
    if job.uses_pass:
        lines = from_coverage(li, refined, job.strength, job.color)  # straight, linear colour
        lines = np.clip(lines, 0.0, 1.0)
        a = lines[..., 3:4]
        if job.frame_is_float:  # premultiplied linear
            out = premultiply(lines) + px * (1.0 - a)
        else:  # straight alpha, display values
            lc = linear_to_srgb(lines[..., :3])
            ba = px[..., 3:4]
            out_a = a + ba * (1.0 - a)
            num = lc * a + px[..., :3] * ba * (1.0 - a)
            rgb = np.where(out_a > 1e-6, num / np.maximum(out_a, 1e-6), 0.0)
            out = np.concatenate([rgb, out_a], axis=-1)
    elif job.baked is not None:
        _, cov, color_disp, m, new = _redraw_baked(job, refined)
        out = np.array(px, np.float32, copy=True)  # every other pixel as written, bit for bit
        if job.frame_is_float:
            out[..., :3][m] = _redrawn_linear(job, cov, color_disp, new) * px[..., 3][m][:, None]
        else:
            out[..., :3][m] = new
        return out
    else:
        color_disp = tuple(linear_to_srgb(np.asarray(job.color))) if job.color is not None else None
        out_disp = from_coverage(li, refined, job.strength, color_disp)[..., :3]
        alpha = px[..., 3:4]
        if job.frame_is_float:
            out = np.concatenate([srgb_to_linear(out_disp) * alpha, alpha], axis=-1)
        else:
            out = np.concatenate([out_disp, alpha], axis=-1)
    return np.clip(_finite(out), 0.0, None)


def _redraw_baked(job, refined: np.ndarray):
    """Baked lines redrawn at the refined coverage, as display (sRGB) colours: the lines, their
    new coverage, the display line colour (None: the lines' own), the line-pixel mask and the
    new colours of those pixels. Only masked pixels may change."""
    lines = job.baked
    cov = blend(lines.coverage, refined, job.strength)
    color_disp = linear_to_srgb(np.asarray(job.color, np.float32)) if job.color is not None else None
    redrawn = baked.apply(job.baked_rgb, lines, cov, color_disp)
    return lines, cov, color_disp, lines.mask, redrawn[lines.mask]


def _redrawn_linear(job, cov: np.ndarray, color_disp, new_disp: np.ndarray) -> np.ndarray:
    """The redrawn line pixels (display values `new_disp`) in scene-linear values. Where the
    render beneath is brighter than 1.0 (a sky, a lamp) the display values clip it, and a
    thinned line would leave a grey trace there: those pixels are mixed in linear values."""
    lines = job.baked
    out = srgb_to_linear(new_disp)
    if lines.background_linear is None:
        return out
    m = lines.mask
    bg = lines.background_linear[m]
    over = (bg > 1.0).any(axis=1)
    if over.any():
        ink = lines.ink[m][over] if color_disp is None else np.broadcast_to(color_disp, (int(over.sum()), 3))
        c = np.clip(cov[m][over], 0.0, 1.0)[:, None]
        out[over] = bg[over] + c * (srgb_to_linear(ink) - bg[over])
    return out


def _finite(pixels: np.ndarray) -> np.ndarray:
    """float32 without NaN or inf: a render's broken pixels must not spread into the result
    (NaN becomes 0, +inf 1, as the conversion reads them)."""
    return np.nan_to_num(np.asarray(pixels, np.float32), nan=0.0, posinf=1.0, neginf=0.0)


def output_paths(frame_path: str, output_mode: str) -> tuple[str, str | None]:
    """(refined frame path, copy of the original or None). Both extra folders are made inside
    the output folder, the one place known to be writable: a sibling of Blender's default
    output folder /tmp/ would be /tmp_originals, which a user cannot create."""
    folder, name = os.path.split(os.path.abspath(frame_path))
    if output_mode == "OVERWRITE_KEEP_ORIGINALS":
        return frame_path, os.path.join(folder, "originals", name)
    return os.path.join(folder, "linerelifer", name), None


def _atomic_copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.lr-tmp")
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        _remove_quietly(tmp)


def _remove_quietly(path: str) -> None:
    try:
        if os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass


def write_frame(job: Job, pixels: np.ndarray, output_mode: str) -> str:
    """Write the refined frame per the output mode (temp file, then rename)."""
    img = bpy.data.images.get(job.frame_image_name)
    if img is None:
        raise RefineError(f"The frame {job.frame_path} was unloaded before it could be written")
    dst, original_copy = output_paths(job.frame_path, output_mode)
    base, ext = os.path.splitext(os.path.basename(dst))
    tmp = os.path.join(os.path.dirname(dst), f".{base}.lr-tmp{ext}")
    try:
        if original_copy is not None:
            _atomic_copy(job.frame_path, original_copy)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        img.pixels.foreach_set(np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel())
        img.filepath_raw = tmp
        img.save()
        os.replace(tmp, dst)
    except (OSError, RuntimeError) as ex:
        cause = (str(ex).strip().splitlines() or [type(ex).__name__])[0]
        raise RefineError(f"The refined frame could not be written to {dst} ({cause})") from None
    finally:
        _remove_quietly(tmp)  # only left there when the save or the rename failed
        release_frame(job)
    return dst


def release_frame(job: Job) -> None:
    img = bpy.data.images.get(job.frame_image_name) if job.frame_image_name else None
    if img is not None:
        bpy.data.images.remove(img)
    job.frame_image_name = ""


def refine_frame_sync(scene, client, frame_path: str, freestyle, frame: int) -> str:
    settings = _settings(scene)
    t0 = time.monotonic()
    job = prepare_frame(scene, frame_path, freestyle, frame)
    try:
        run(job, client)
        out = finish_frame(job)
    except BaseException:
        release_frame(job)
        raise
    dst = write_frame(job, out, settings.output_mode)
    log(f"frame {frame}: {frame_path} -> {dst} ({time.monotonic() - t0:.2f} s)")
    return dst
