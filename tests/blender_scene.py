"""Build a tiny Freestyle test scene in the current bpy session.

Shared by the Blender tests and ``demo.py``.  Only ``bpy`` is needed; call
:func:`build_scene` after ``import bpy``.  The scene renders headless with
Cycles on the CPU (Freestyle with EEVEE/Workbench needs a GPU context).
"""

from __future__ import annotations

import math


def build_scene(
    width: int = 160,
    height: int = 120,
    samples: int = 2,
    line_thickness: float = 2.0,
    as_render_pass: bool = True,
    frames: tuple[int, int] = (1, 1),
    film_transparent: bool = False,
):
    """Reset to an empty file and build Suzanne + torus, camera, light.

    The file is reset with ``read_homefile`` (factory startup, empty), which
    keeps the preferences and enabled add-ons (``read_factory_settings``
    would disable them).  Returns the scene.  ``frames`` sets the frame range; with more than one
    frame the objects rotate a little so frames differ.
    """
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene

    # Geometry -------------------------------------------------------------
    bpy.ops.mesh.primitive_monkey_add(size=1.6, location=(-0.9, 0.0, 0.0))
    monkey = bpy.context.active_object
    monkey.name = "Suzanne"
    monkey.rotation_euler = (0.0, 0.0, math.radians(-20.0))
    bpy.ops.object.shade_smooth()

    bpy.ops.mesh.primitive_torus_add(
        major_radius=0.75, minor_radius=0.25, location=(1.2, 0.3, 0.0),
        rotation=(math.radians(70.0), 0.0, math.radians(20.0)),
    )
    torus = bpy.context.active_object
    torus.name = "Torus"
    bpy.ops.object.shade_smooth()

    mat = bpy.data.materials.new("LR Clay")
    mat.diffuse_color = (0.45, 0.55, 0.75, 1.0)
    if getattr(mat, "node_tree", None) is not None:
        bsdf = mat.node_tree.nodes.get("Principled BSDF")
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = (0.45, 0.55, 0.75, 1.0)
    for ob in (monkey, torus):
        ob.data.materials.append(mat)

    if frames[1] > frames[0]:
        for ob, axis in ((monkey, 2), (torus, 1)):
            for f, ang in ((frames[0], 0.0), (frames[1], 25.0)):
                rot = list(ob.rotation_euler)
                rot[axis] += math.radians(ang)
                ob.rotation_euler = rot
                ob.keyframe_insert("rotation_euler", frame=f)

    # Camera & light -------------------------------------------------------
    cam_data = bpy.data.cameras.new("Camera")
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.0, -7.0, 1.2)
    cam.rotation_euler = (math.radians(81.0), 0.0, 0.0)
    cam_data.lens = 45.0
    scene.camera = cam

    light_data = bpy.data.lights.new("Sun", type="SUN")
    light_data.energy = 2.5
    light = bpy.data.objects.new("Sun", light_data)
    light.rotation_euler = (math.radians(45.0), math.radians(10.0), math.radians(30.0))
    scene.collection.objects.link(light)

    world = bpy.data.worlds.new("World")
    world.color = (0.8, 0.8, 0.8)
    tree = getattr(world, "node_tree", None)
    if tree is None and hasattr(world, "use_nodes"):
        world.use_nodes = True  # Blender 4.x: worlds start without nodes
        tree = world.node_tree
    background = tree.nodes.get("Background") if tree is not None else None
    if background is not None:
        background.inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
        background.inputs["Strength"].default_value = 1.0
    scene.world = world
    scene.view_settings.view_transform = "Standard"

    # Render settings ------------------------------------------------------
    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    if hasattr(scene.cycles, "use_adaptive_sampling"):
        scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 2
    render.resolution_x = width
    render.resolution_y = height
    render.resolution_percentage = 100
    render.film_transparent = film_transparent
    render.threads_mode = "FIXED"
    render.threads = 2
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    scene.frame_start, scene.frame_end = frames
    scene.frame_set(frames[0])

    # Freestyle ------------------------------------------------------------
    render.use_freestyle = True
    render.line_thickness_mode = "ABSOLUTE"
    render.line_thickness = line_thickness
    view_layer = scene.view_layers[0]
    view_layer.use_freestyle = True
    fs = view_layer.freestyle_settings
    fs.as_render_pass = as_render_pass
    if not fs.linesets:
        fs.linesets.new("LineSet")
    lineset = fs.linesets[0]
    lineset.select_by_visibility = True
    lineset.visibility = "VISIBLE"
    lineset.select_silhouette = True
    lineset.select_border = True
    lineset.select_crease = True
    if lineset.linestyle is None:
        lineset.linestyle = bpy.data.linestyles.new("LineStyle")
    lineset.linestyle.color = (0.02, 0.02, 0.03)
    lineset.linestyle.thickness = line_thickness
    return scene
