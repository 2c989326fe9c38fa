"""Real Freestyle renders made with bpy: the evaluation set the synthetic one cannot replace.

Training and `evalset.py` draw their lines with OpenCV; users feed the network Freestyle's
lines, which differ (anti-aliasing by Cycles samples, joins, crease flicker, thickness
modifiers). This module builds procedural scenes (organic, architectural, dense detail, a
figure), renders each with Cycles on the CPU at several Freestyle thicknesses, with and
without anti-aliasing, and caches the Freestyle pass (lines in alpha) and the shaded render
with the lines baked in as PNG files plus a manifest. Cycles' seed is fixed, so a cached
file is reused unless `rebuild` is asked for; a rebuild reproduces most files bit for bit, but
Freestyle's strokes on the figure scene can differ by a few pixels between runs.

Thickness is RELATIVE in Freestyle's sense (scaled with the frame height), so a 4K render
of thickness t shows lines three times as wide as the 720p render of the same t.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from training.synth import NIB_ANGLE, NIB_RANGE

SCENES = ("organic", "architecture", "dense", "figure")
THICKNESSES = (1, 2, 3, 5, 8, 12)
CACHE = Path("out/realset")


@dataclass(frozen=True)
class RenderSpec:
    """One render of the set; `thickness` is in pixels at 720p."""

    scene: str
    thickness: float
    height: int = 720
    samples: int = 8  # 1 = aliased lines
    modifier: str = ""  # "", "along" (thick-thin along the stroke), "noise" or "nib" (the tied targets' nib)

    @property
    def name(self) -> str:
        mod = f"_{self.modifier}" if self.modifier else ""
        t = f"{self.thickness:g}".replace(".", "p")
        return f"{self.scene}_t{t}_{self.height}p_s{self.samples}{mod}"

    @property
    def width(self) -> int:
        return self.height * 16 // 9


def default_specs() -> list[RenderSpec]:
    """The full set: every scene × thickness at 720p, anti-aliased and aliased, thickness
    modifiers, and 4K renders of one scene."""
    specs = [RenderSpec(s, t) for s in SCENES for t in THICKNESSES]
    specs += [RenderSpec(s, t, samples=1) for s in SCENES for t in THICKNESSES]
    specs += [RenderSpec(s, 3, modifier=m) for s in ("organic", "figure") for m in ("along", "noise")]
    specs += [RenderSpec(s, 5, modifier="nib") for s in SCENES]
    specs += [RenderSpec("figure", t, height=2160) for t in (1, 3, 8)]
    return specs


# -- scenes (bpy) ---------------------------------------------------------------------------

def _obj(op, **kw):
    import bpy

    op(**kw)
    return bpy.context.active_object


def _subsurf(ob, levels: int = 2, smooth: bool = True):
    import bpy

    mod = ob.modifiers.new("Subsurf", "SUBSURF")
    mod.levels = mod.render_levels = levels
    if smooth:
        with bpy.context.temp_override(active_object=ob, selected_objects=[ob], object=ob):
            bpy.ops.object.shade_smooth()
    return ob


def _organic():
    import bpy

    _subsurf(_obj(bpy.ops.mesh.primitive_monkey_add, size=1.5, location=(-1.2, 0, 0.1),
                  rotation=(0, 0, math.radians(-25))), 2)
    blob = _subsurf(_obj(bpy.ops.mesh.primitive_ico_sphere_add, subdivisions=2, radius=0.8,
                         location=(1.0, 0.4, -0.1)), 2)
    tex = bpy.data.textures.new("LR clouds", "CLOUDS")
    tex.noise_scale = 0.6
    disp = blob.modifiers.new("Displace", "DISPLACE")
    disp.texture, disp.strength = tex, 0.45
    _subsurf(_obj(bpy.ops.mesh.primitive_torus_add, major_radius=0.6, minor_radius=0.22,
                  location=(0.3, -0.6, -0.8), rotation=(math.radians(60), 0, math.radians(30))), 1)


def _architecture():
    import bpy

    _obj(bpy.ops.mesh.primitive_plane_add, size=12, location=(0, 0, -1))
    for i, (x, y, h, w) in enumerate(((-2.2, 1.5, 2.4, 1.0), (-0.6, 2.2, 3.4, 1.2), (1.3, 1.0, 1.6, 1.4),
                                      (2.8, 2.6, 2.8, 0.9))):
        b = _obj(bpy.ops.mesh.primitive_cube_add, size=1, location=(x, y, -1 + h / 2))
        b.scale = (w, w * 0.8, h)
        for k in range(int(h * 2)):  # window ledges
            ledge = _obj(bpy.ops.mesh.primitive_cube_add, size=1,
                         location=(x, y - w * 0.4 - 0.03, -1 + 0.35 + k * 0.5))
            ledge.scale = (w * 0.8, 0.06, 0.05)
    for k in range(6):  # steps
        s = _obj(bpy.ops.mesh.primitive_cube_add, size=1, location=(0.2, -1.2 - k * 0.25, -1 + 0.1 + (5 - k) * 0.2))
        s.scale = (1.2, 0.25, 0.2)
    col = _obj(bpy.ops.mesh.primitive_cylinder_add, vertices=24, radius=0.15, depth=2.2, location=(-1.4, -1.0, 0.1))
    _subsurf(col, 1, smooth=False)


def _dense():
    import bpy

    base = _obj(bpy.ops.mesh.primitive_cylinder_add, vertices=10, radius=0.14, depth=0.5, location=(-3.0, 0.0, -0.9))
    arr = base.modifiers.new("Array X", "ARRAY")
    arr.count, arr.relative_offset_displace = 14, (1.6, 0, 0)
    arr2 = base.modifiers.new("Array Y", "ARRAY")
    arr2.count, arr2.relative_offset_displace = 6, (0, 1.8, 0)
    _obj(bpy.ops.mesh.primitive_cylinder_add, vertices=48, radius=1.0, depth=0.3,
         location=(0.2, -0.8, 0.6), rotation=(math.radians(70), 0, 0))
    for k in range(24):  # gear teeth
        a = 2 * math.pi * k / 24
        tooth = _obj(bpy.ops.mesh.primitive_cube_add, size=1,
                     location=(0.2 + 1.08 * math.cos(a), -0.8, 0.6 + 1.08 * math.sin(a)),
                     rotation=(0, -a, 0))
        tooth.scale = (0.2, 0.28, 0.12)
    _subsurf(_obj(bpy.ops.mesh.primitive_uv_sphere_add, segments=16, ring_count=8, radius=0.45,
                  location=(2.0, 0.2, 0.4)), 0, smooth=False)


def _figure():
    import bpy

    def ellipsoid(loc, scale, rot=(0, 0, 0)):
        ob = _subsurf(_obj(bpy.ops.mesh.primitive_uv_sphere_add, segments=24, ring_count=12, radius=1.0,
                           location=loc, rotation=tuple(math.radians(a) for a in rot)), 1)
        ob.scale = scale

    ellipsoid((0, 0, 1.55), (0.42, 0.4, 0.45))  # head
    ellipsoid((0, 0, 0.6), (0.48, 0.36, 0.7))  # torso
    ellipsoid((-0.7, 0, 0.6), (0.13, 0.13, 0.55), (0, -25, 0))  # arms
    ellipsoid((0.72, -0.1, 0.8), (0.13, 0.13, 0.55), (20, 50, 0))
    ellipsoid((-0.22, 0, -0.55), (0.17, 0.17, 0.6))  # legs
    ellipsoid((0.25, -0.15, -0.5), (0.17, 0.17, 0.6), (-15, 0, 0))
    for x in (-0.15, 0.15):  # eyes
        ellipsoid((x, -0.36, 1.62), (0.09, 0.06, 0.09))
    _obj(bpy.ops.mesh.primitive_cone_add, radius1=0.08, depth=0.25, location=(0, -0.45, 1.5),
         rotation=(math.radians(90), 0, 0))  # nose
    _obj(bpy.ops.mesh.primitive_plane_add, size=8, location=(0, 0, -1.15))


_BUILDERS = {"organic": _organic, "architecture": _architecture, "dense": _dense, "figure": _figure}


def build_scene(spec: RenderSpec):
    """An empty file with the spec's scene, camera, light and Freestyle settings (bpy)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    _BUILDERS[spec.scene]()
    mat = bpy.data.materials.new("LR Clay")
    mat.diffuse_color = (0.55, 0.6, 0.7, 1.0)
    for ob in scene.objects:
        if ob.type == "MESH":
            ob.data.materials.append(mat)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = (0.0, -8.5, 1.6)
    cam.rotation_euler = (math.radians(80.0), 0.0, 0.0)
    cam.data.lens = 38.0
    scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", type="SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40.0), math.radians(15.0), math.radians(30.0))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")
    world.color = (0.8, 0.8, 0.8)
    if world.node_tree is None and hasattr(world, "use_nodes"):
        world.use_nodes = True
    bg = world.node_tree.nodes.get("Background") if world.node_tree is not None else None
    if bg is not None:
        bg.inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
    scene.world = world
    scene.view_settings.view_transform = "Standard"

    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = spec.samples
    scene.cycles.seed = 0
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 1
    render.resolution_x, render.resolution_y = spec.width, spec.height
    render.resolution_percentage = 100
    render.threads_mode = "FIXED"
    render.threads = 2
    render.use_freestyle = True
    render.line_thickness_mode = "RELATIVE"  # scales with the frame: 4K lines are 3× 720p lines
    render.line_thickness = 1.0
    vl = scene.view_layers[0]
    vl.use_freestyle = True
    fs = vl.freestyle_settings
    fs.as_render_pass = True
    fs.crease_angle = math.radians(134 if spec.scene in ("dense", "architecture") else 120)
    lineset = fs.linesets[0] if fs.linesets else fs.linesets.new("LineSet")
    lineset.select_by_visibility = True
    lineset.visibility = "VISIBLE"
    lineset.select_silhouette = lineset.select_border = lineset.select_crease = True
    style = lineset.linestyle or bpy.data.linestyles.new("LineStyle")
    lineset.linestyle = style
    style.color = (0.0, 0.0, 0.0)
    # RELATIVE mode scales thickness by height / 480.
    style.thickness = spec.thickness * 480.0 / 720.0
    if spec.modifier == "along":
        m = style.thickness_modifiers.new("Along", "ALONG_STROKE")
        m.mapping = "CURVE"
        m.value_min, m.value_max = 0.3 * style.thickness, 1.6 * style.thickness
        m.blend = "MIX"
        m.influence = 1.0
    elif spec.modifier == "noise":
        m = style.thickness_modifiers.new("Noise", "NOISE")
        m.amplitude, m.period, m.seed = 0.8 * style.thickness, 30.0, 3
    elif spec.modifier == "nib":  # the tied targets' broad nib, drawn by Freestyle: the width
        m = style.thickness_modifiers.new("Nib", "CALLIGRAPHY")
        m.orientation = NIB_ANGLE  # variation a style trained on them could reach on this scene
        m.thickness_min, m.thickness_max = NIB_RANGE[0] * style.thickness, NIB_RANGE[1] * style.thickness
        m.blend = "MIX"
        m.influence = 1.0
    return scene


def render(spec: RenderSpec) -> tuple[np.ndarray, np.ndarray]:
    """(Freestyle pass as RGBA uint8 with lines in alpha, shaded render with lines as RGB uint8)."""
    import bpy

    from linerelifer_addon.blender.capture import save_render_passes, unpremultiply
    from linerelifer_addon.core.conversion import linear_to_srgb, over

    scene = build_scene(spec)
    bpy.ops.render.render()
    cap = save_render_passes(scene)
    fs = unpremultiply(cap.freestyle)
    # With the pass on, Combined holds no lines: bake them in the way Blender would (over, linear).
    rgb = linear_to_srgb(over(fs, unpremultiply(cap.combined))[..., :3])
    fs[..., :3] = linear_to_srgb(fs[..., :3])
    to8 = lambda a: np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return to8(fs), to8(rgb)


def build(specs: list[RenderSpec] | None = None, cache: Path = CACHE, rebuild: bool = False,
          log: Callable[[str], None] = print) -> list[dict]:
    """Render what is missing (or everything with `rebuild`); returns and writes the manifest."""
    import cv2

    specs = default_specs() if specs is None else specs
    cache.mkdir(parents=True, exist_ok=True)
    entries = []
    t_all = time.perf_counter()
    for spec in specs:
        pass_path, baked_path = cache / f"{spec.name}_pass.png", cache / f"{spec.name}_baked.png"
        if rebuild or not (pass_path.is_file() and baked_path.is_file()):
            t0 = time.perf_counter()
            fs, rgb = render(spec)
            cv2.imwrite(str(pass_path), cv2.cvtColor(fs, cv2.COLOR_RGBA2BGRA))
            cv2.imwrite(str(baked_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            log(f"rendered {spec.name} in {time.perf_counter() - t0:.1f} s")
        entries.append({**asdict(spec), "name": spec.name, "pass": pass_path.name, "baked": baked_path.name})
    (cache / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    log(f"{len(entries)} renders in {cache} ({time.perf_counter() - t_all:.0f} s)")
    return entries


def load_pass(cache: Path, entry: dict) -> np.ndarray:
    """Line coverage (float32) of a cached Freestyle pass."""
    import cv2

    img = cv2.imread(str(cache / entry["pass"]), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"{cache / entry['pass']}: missing; run `python -m training realset`")
    return img[..., 3].astype(np.float32) / 255.0


def load_manifest(cache: Path = CACHE) -> list[dict]:
    """The cached set's entries (RenderSpec fields plus file names)."""
    path = cache / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no real-render set; build it with `python -m training realset`")
    return json.loads(path.read_text())
