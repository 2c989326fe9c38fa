"""LineRelifer inside Blender: settings, operators, panels, render handlers.

Imports only bpy, numpy, the standard library and the Blender-free core
(relatively, since the installed package is ``bl_ext.<repo>.linerelifer``).
"""

from __future__ import annotations

import bpy

from . import handlers, ops, prefs, props, session, ui

_classes = (*props.classes, *prefs.classes, *ops.classes, *ui.classes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.linerelifer = bpy.props.PointerProperty(type=props.LINERELIFER_PG_settings)
    handlers.register()


def unregister() -> None:
    handlers.unregister()
    session.shutdown()
    if hasattr(bpy.types.Scene, "linerelifer"):
        del bpy.types.Scene.linerelifer
    for cls in reversed(_classes):
        try:
            bpy.utils.unregister_class(cls)
        except RuntimeError:
            pass
