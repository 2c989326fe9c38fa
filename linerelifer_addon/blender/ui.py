"""Panels: Render Properties (after Freestyle) and the Image Editor sidebar."""

from __future__ import annotations

import os
import textwrap

import bpy

from . import capture, pipeline, session
from .state import baked_problem, busy, notice
from .common import RESULT_IMAGE, get_prefs
from .pipeline import freestyle_pass_enabled
from .props import missing_style, style_own_thick_thin


def draw_runtime(layout, context, prefs=None, full=False):
    """Runtime status (cheap: no process is started while drawing)."""
    prefs = prefs or get_prefs(context)
    setup = session.worker_setup(prefs)
    box = layout.box()
    col = box.column(align=True)
    status = session.runtime_status
    if status.get("checking") and busy["probe"]:
        col.label(text="Checking runtime...", icon="SORTTIME")
    elif status.get("python") == setup.python and status.get("ok"):
        col.label(text=session.versions_text(status.get("versions", {}))[:120], icon="CHECKMARK")
    elif status.get("python") == setup.python and not status.get("ok"):
        col.label(text="Runtime problem", icon="ERROR")
        col.label(text=status.get("error", "")[:120])
    elif not setup.bundled and not os.path.isfile(setup.python):
        col.label(text="Worker Python not found", icon="ERROR")
        if not full:  # the preferences show the interpreter below
            col.label(text=f"{setup.python[-80:]} (Preferences > Add-ons > LineRelifer)")
    else:
        col.label(text=f"Runtime: {setup.label}", icon="CHECKMARK" if setup.bundled else "QUESTION")
    if full:
        col.label(text=f"Interpreter: {setup.python}")
        if session.worker_alive():
            col.label(text="Worker running (kept warm between renders)", icon="PLAY")
    box.row(align=True).operator("linerelifer.test_runtime", icon="CHECKBOX_HLT")
    if full and hasattr(prefs, "bl_rna"):
        layout.prop(prefs, "python_path")
        layout.prop(prefs, "threads")


def draw_settings(layout, context):
    scene = context.scene
    settings = scene.linerelifer
    view_layer = context.view_layer or scene.view_layers[0]

    if not scene.render.use_freestyle or not freestyle_pass_enabled(scene):
        box = layout.box()
        if not scene.render.use_freestyle:
            box.label(text="Freestyle is off", icon="INFO")
        else:
            box.label(text="Lines are baked into the image", icon="INFO")
            col = box.column(align=True)
            col.label(text="Only pixels of the line sets' colours change; lines over")
            col.label(text="areas of that colour stay as rendered. The pass is exact.")
            for i, line in enumerate(textwrap.wrap(baked_problem.get("text", ""), 60)):
                col.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
            if settings.auto_refine and not capture.output_view_is_plain_srgb(scene):
                col.label(text=f"Frames saved through '{capture.output_view_transform(scene)}' hide the "
                               "line colour: use the pass", icon="ERROR")
        box.operator("linerelifer.enable_freestyle_pass", icon="RENDERLAYERS")
    elif not view_layer.freestyle_settings.as_render_pass:
        layout.label(text="This view layer draws its lines into the image", icon="INFO")

    col = layout.column()
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(settings, "style")
    missing = missing_style(settings)
    if missing:
        col.label(text=f"Style {missing} is not installed", icon="ERROR")
    col.prop(settings, "strength", slider=True)
    row = col.row(align=True, heading="Thick-Thin")
    row.prop(settings, "use_thick_thin", text="")
    if settings.use_thick_thin:
        row.prop(settings, "thick_thin", text="", slider=True)
    else:  # the style's own, which the slider's value would hide
        own = style_own_thick_thin(settings)
        row.label(text="Style's own" if own is None else f"Style's own: {own:g}")
    col.prop(settings, "color_mode")
    sub = col.column()
    sub.active = settings.color_mode == "OVERRIDE"
    sub.prop(settings, "color")
    col.prop(settings, "tile_size")
    col.separator()
    col.prop(settings, "auto_refine")
    if settings.auto_refine and notice.text:
        box = col.box().column(align=True)
        for i, line in enumerate(textwrap.wrap(notice.text, 60)):
            box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
    col.prop(settings, "output_mode")

    row = layout.row()
    row.scale_y = 1.4
    row.operator("linerelifer.refine_lines", icon="GREASEPENCIL")
    if pipeline.result_problem(scene) is None:
        row = layout.row()
        row.label(text=f"Result: image '{RESULT_IMAGE}'", icon="IMAGE_DATA")
        row.operator("linerelifer.save_result", text="Save", icon="FILE_TICK")
    draw_runtime(layout, context)


class LINERELIFER_PT_render(bpy.types.Panel):
    bl_label = "LineRelifer"
    bl_idname = "LINERELIFER_PT_render"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_order = 11  # right after Freestyle (10)
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "linerelifer")

    def draw(self, context):
        draw_settings(self.layout, context)


class LINERELIFER_PT_image(bpy.types.Panel):
    bl_label = "LineRelifer"
    bl_idname = "LINERELIFER_PT_image"
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "LineRelifer"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "linerelifer")

    def draw(self, context):
        draw_settings(self.layout, context)


classes = (LINERELIFER_PT_render, LINERELIFER_PT_image)
