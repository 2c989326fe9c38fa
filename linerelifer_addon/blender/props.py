"""Scene settings (``scene.linerelifer``): what a render is refined with."""

from __future__ import annotations

import zlib

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from ..core import styles as _core_styles
from ..core.styles import StyleError, ink_tone, list_styles, resolve_style, user_styles_dir
from ..core.conversion import srgb_to_linear
from ..core.nib import style_thick_thin
from .common import style_dirs

NO_STYLE = "__NONE__"
DEFAULT_STYLE = getattr(_core_styles, "DEFAULT_STYLE", "default")

# Dynamic enum items must stay referenced while Blender uses them: the
# latest lists returned by style_items().
_style_items: list[list[tuple]] = []


def _style_value(name: str) -> int:
    """A stable enum value per style name, so adding a style does not shift
    the selection stored in .blend files.  The default style gets 0, the
    value of an unset property."""
    if name == DEFAULT_STYLE:
        return 0
    return (zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF) or 1


def style_items(self, context):
    try:
        styles = list_styles(style_dirs())
    except (OSError, StyleError):
        styles = []
    styles.sort(key=lambda s: (s.name != DEFAULT_STYLE, not s.bundled, s.name))
    items = []
    for s in styles:
        where = "bundled" if s.bundled else str(s.path.parent)
        desc = s.description or f"Style {s.name}"
        items.append((s.name, s.name.replace("_", " ").title(), f"{desc} ({where})", "", _style_value(s.name)))
    if not items:
        items = [(NO_STYLE, "No styles installed", "Train a style or reinstall the extension", "ERROR", 1)]
    if not _style_items or _style_items[-1] != items:
        # Keep earlier lists alive too: Blender may still hold their strings.
        _style_items.append(items)
        del _style_items[:-4]
    return _style_items[-1]


def _remember_style(self, context) -> None:
    self.style_name = self.style


def missing_style(settings) -> str | None:
    """How to name the style chosen in this file when it is not installed here (another
    machine, a farm node), else None. A stored value that matches no installed style reads
    as '', and the enum stores a number: files saved before `style_name` existed give no name."""
    if settings.style and settings.style != NO_STYLE:
        return None
    if settings.style_name:
        return None if settings.style_name == DEFAULT_STYLE else f"'{settings.style_name}'"
    return "chosen in this file" if settings.get("style") else None


def style_path(settings):
    """The .keras file for the selected style (StyleError if none)."""
    name = settings.style
    if not name or name == NO_STYLE:
        # A style chosen in this file and missing here is an error: refining with the default
        # instead would give the wrong look without a word.
        missing = missing_style(settings)
        if missing:
            dirs = style_dirs()
            raise StyleError(f"The style {missing} is not installed here; copy its .json and .tflite/.keras "
                             f"files into {dirs[0] if dirs else user_styles_dir()}, or choose another Style "
                             "in the LineRelifer panel")
        # Nothing chosen yet: the first one offered (the default style when it is installed).
        items = style_items(settings, None)
        name = items[0][0] if items and items[0][0] != NO_STYLE else None
    return resolve_style(name, style_dirs()).path


def style_own_thick_thin(settings) -> float | None:
    """The thick-thin the selected style draws with when the panel sets none (its metadata's
    `thick_thin`, 0 when absent), or None when no style can be found."""
    try:
        return style_thick_thin(style_path(settings))
    except (OSError, StyleError):  # no style installed at all
        return None


def style_ink_color(settings) -> tuple[float, float, float] | None:
    """The selected style's ink tone (a display grey) as linear RGB, or None when it records
    none or cannot be read."""
    try:
        tone = ink_tone(style_path(settings))
    except (OSError, StyleError):  # no style installed at all
        return None
    if tone is None:
        return None
    lin = float(srgb_to_linear(np.float32(tone)))
    return (lin, lin, lin)


class LINERELIFER_PG_settings(bpy.types.PropertyGroup):
    style: EnumProperty(
        name="Style", items=style_items, update=_remember_style,
        description="Trained line style applied to the Freestyle lines",
    )
    # The chosen style's name: the enum stores a number, which cannot name a missing style.
    style_name: StringProperty(name="Style Name", default="", options={"HIDDEN"})
    strength: FloatProperty(
        name="Strength", default=1.0, min=0.0, max=2.0, soft_max=2.0, subtype="FACTOR",
        description="0 keeps Freestyle's lines exactly, 1 applies the style, up to 2 exaggerates it",
    )
    use_thick_thin: BoolProperty(
        name="Set Thick-Thin", default=False,
        description="Draw with the Thick-Thin set here instead of the style's own (1 for the default "
                    "style, 0 for styles trained from drawings)",
    )
    thick_thin: FloatProperty(
        name="Thick-Thin", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
        description="A broad nib's thick and thin drawn over the style's lines: 0 off; at 1 strokes rising "
                    "to the right come out about 1.5x as wide, those falling gently to the right 0.6x, and "
                    "lines the render drew wider or narrower (Freestyle thickness modifiers) more so. "
                    "Costs 0.08-0.12 s per 1080p frame",
    )
    color_mode: EnumProperty(
        name="Line Colour",
        items=(
            ("KEEP", "Keep Freestyle's", "Use the colour of the Freestyle lines"),
            ("OVERRIDE", "Override", "Draw the refined lines in a colour of your choice"),
            ("STYLE", "Style's Ink", "Draw the refined lines in the ink tone of the drawings the style was "
                                     "trained on (a grey marker style draws grey); the Freestyle colour for "
                                     "styles that record none"),
        ),
        default="KEEP",
    )
    color: FloatVectorProperty(
        name="Colour", subtype="COLOR", size=3, min=0.0, max=1.0, default=(0.0, 0.0, 0.0),
        description="Colour of the refined lines when overriding",
    )
    tile_size: IntProperty(
        name="Tile Size", default=0, min=0, max=4096, step=64,
        description="Size of the tiles the network processes (0 = the fastest for the frame); smaller uses less memory",
    )
    auto_refine: BoolProperty(
        name="Auto-Refine", default=False,
        description=("Refine the lines after every render: still renders update the result "
                     "images, animation frames are written per the output mode"),
    )
    output_mode: EnumProperty(
        name="Animation Output",
        items=(
            ("SEPARATE_FOLDER", "Separate Folder",
             "Write refined frames to a 'linerelifer' folder inside the output folder, with the same names"),
            ("OVERWRITE_KEEP_ORIGINALS", "Overwrite, Keep Originals",
             "Copy the original frames to an 'originals' folder inside the output folder, then overwrite them with the refined ones"),
        ),
        # A farm's next step (comp, encode, review) reads the scene's output path: refined frames
        # go there, and nothing is lost because the originals are copied aside first.
        default="OVERWRITE_KEEP_ORIGINALS",
    )

    def thick_thin_amount(self) -> float | None:
        """The thick-thin to draw with, or None for the style's own. A value set with the
        checkbox never saved (a file from before it, or a script) counts too: read here, not
        only when a file loads, so appended scenes and farms enabling the add-on after opening
        the file get it as well."""
        legacy = self.is_property_set("thick_thin") and not self.is_property_set("use_thick_thin")
        return float(self.thick_thin) if self.use_thick_thin or legacy else None

    def line_color(self):
        """The refined lines' colour, linear RGB, or None to keep Freestyle's."""
        if self.color_mode == "OVERRIDE":
            return tuple(self.color)
        if self.color_mode == "STYLE":
            return style_ink_color(self)
        return None


classes = (LINERELIFER_PG_settings,)
