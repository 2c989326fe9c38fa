"""The add-on preferences (the worker's interpreter); moved verbatim out of props.py so that
settings, operators and drawing import in one direction: prefs -> ui -> pipeline -> props."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from .common import ADDON_ID


class LINERELIFER_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Worker Python", subtype="FILE_PATH", default="",
        description=("Python interpreter with TensorFlow that runs the network; empty uses the "
                     "installed runtime, $LINERELIFER_PYTHON or Blender's own Python"),
    )
    system_python: StringProperty(
        name="System Python", subtype="FILE_PATH", default="",
        description="Python 3.10-3.12 used to create the runtime (empty: python3 on PATH)",
    )
    threads: IntProperty(
        name="Worker Threads", default=0, min=0, max=256,
        description="CPU threads for the network (0: automatic)",
    )

    def draw(self, context):
        from . import ui
        ui.draw_runtime(self.layout, context, prefs=self, full=True)


classes = (LINERELIFER_AP_preferences,)
