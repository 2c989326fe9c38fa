"""The add-on preferences (an optional worker interpreter, threads); apart from props.py so
that settings, operators and drawing import in one direction: prefs -> ui -> pipeline -> props."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from .common import ADDON_ID


class LINERELIFER_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Worker Python", subtype="FILE_PATH", default="",
        description=("Optional: a Python interpreter with TensorFlow, for styles that have no LiteRT "
                     "file; empty runs the bundled LiteRT in Blender's own Python"),
    )
    threads: IntProperty(
        name="Worker Threads", default=0, min=0, max=256,
        description="CPU threads for the network (0: automatic)",
    )

    def draw(self, context):
        from . import ui
        ui.draw_runtime(self.layout, context, prefs=self, full=True)


classes = (LINERELIFER_AP_preferences,)
