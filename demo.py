#!/usr/bin/env python3
"""LineRelifer demo: a Freestyle render before and after refinement.

Builds the extension zip, installs it into an isolated Blender user folder,
builds a small scene (Suzanne + torus, Cycles on the CPU, Freestyle lines as
a render pass), renders it, runs the extension's Refine Lines operator and
writes:

    out/demo/before.png        the plain Freestyle render
    out/demo/after.png         the same render with the refined lines
    out/demo/before_after.png  both side by side

Usage:  .venv/bin/python demo.py [--out DIR] [--width 640 --height 480]
                                 [--samples 4] [--style NAME] [--no-install]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Render a scene and refine its Freestyle lines.")
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder (default: out/demo)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--samples", type=int, default=4, help="Cycles samples (default: 4)")
    ap.add_argument("--thickness", type=float, default=2.0, help="Freestyle line thickness in px")
    ap.add_argument("--style", default=None, help="style name (default: the bundled default)")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--no-install", action="store_true",
                    help="register the package from the source tree instead of installing the built zip")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    user_dir = tempfile.mkdtemp(prefix="linerelifer-demo-user-")
    os.environ["BLENDER_USER_RESOURCES"] = user_dir  # an isolated Blender user folder
    try:
        return run(args, out, user_dir)
    finally:
        shutil.rmtree(user_dir, ignore_errors=True)


def run(args, out: Path, user_dir: str) -> int:
    t_start = time.monotonic()
    import bpy
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from blender_scene import build_scene

    # -- the extension -----------------------------------------------------------
    t0 = time.monotonic()
    if args.no_install:
        sys.path.insert(0, str(ROOT))
        import linerelifer_addon
        linerelifer_addon.register()
        pkg = "linerelifer_addon"
        how = "registered from the source tree"
    else:
        sys.path.insert(0, str(ROOT / "tools"))
        import build_extension
        zip_path = build_extension.build(Path(user_dir) / "dist", verbose=False)
        bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                 enable_on_install=True)
        pkg = "bl_ext.user_default.linerelifer"
        how = f"installed {zip_path.name}"
    capture = sys.modules[f"{pkg}.blender.capture"]
    print(f"extension: {how} ({time.monotonic() - t0:.1f} s)")

    # -- scene and render --------------------------------------------------------
    scene = build_scene(width=args.width, height=args.height, samples=args.samples,
                        line_thickness=args.thickness)
    if args.style:
        scene.linerelifer.style = args.style
    scene.linerelifer.strength = args.strength
    t0 = time.monotonic()
    bpy.ops.render.render()
    t_render = time.monotonic() - t0
    print(f"render: {args.width}x{args.height}, Cycles CPU, {args.samples} samples, "
          f"Freestyle as a pass ({t_render:.1f} s)")

    # -- refine (the worker starts on the first call) ----------------------------
    t0 = time.monotonic()
    try:
        result = bpy.ops.linerelifer.refine_lines()
    except RuntimeError as ex:
        print(f"refine failed: {ex}", file=sys.stderr)
        return 1
    t_refine = time.monotonic() - t0
    t0 = time.monotonic()
    bpy.ops.linerelifer.refine_lines()
    t_warm = time.monotonic() - t0
    print(f"refine: {result} in {t_refine:.1f} s (worker start included); again warm: {t_warm:.1f} s")

    # -- images -------------------------------------------------------------------
    cap = capture.save_render_passes(scene)
    fs, comb = cap.freestyle, cap.combined
    before = fs + comb * (1.0 - fs[..., 3:4])  # Blender's own "lines over render"
    after = capture.image_to_array(bpy.data.images["LineRelifer Result"])
    gap = np.ones((before.shape[0], 8, 4), np.float32)
    side = np.concatenate([before, gap, after], axis=1)

    ims = scene.render.image_settings
    ims.file_format = "PNG"
    ims.color_mode = "RGB"
    ims.color_depth = "8"
    paths = {}
    for name, arr in (("before", before), ("after", after), ("before_after", side)):
        img = capture.array_to_image(f"demo {name}", arr, float_buffer=True)
        path = out / f"{name}.png"
        tmp = out / f".{name}.tmp.png"
        img.save_render(str(tmp), scene=scene)  # the scene's view transform, like a render
        os.replace(tmp, path)
        paths[name] = path
    for name, path in paths.items():
        print(f"wrote {path}")
    print(f"total: {time.monotonic() - t_start:.1f} s")

    import addon_utils
    if pkg in bpy.context.preferences.addons:
        addon_utils.disable(pkg)
    elif args.no_install:
        linerelifer_addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
