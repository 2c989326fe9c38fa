"""Driver for tests/test_bad_inputs.py: the bad-input battery through the real extension.

Run as a script with the venv's Python (bpy is imported here, in its own process):

    python tests/blender_bad_inputs.py SPEC.json RESULT.json

It registers the add-on package directly (``linerelifer_addon.register()``) and sends every
frame of the spec through the path auto-refine takes for a written frame
(``pipeline.refine_frame_sync``: Blender loads the file, the coverage goes to the worker,
the refined frame is saved next to it), catching errors the way the render handlers do
(one line, ``first_sentence``). Style and interpreter cases also go through the Refine Lines
operator after a tiny real render, whose ``self.report`` reaches Python as RuntimeError in
background mode. Results are written as JSON for the test to check.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main(spec_path: str, result_path: str) -> int:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    import bpy

    import linerelifer_addon
    from blender_scene import build_scene

    linerelifer_addon.register()
    from linerelifer_addon.blender import common, pipeline, session

    results: dict = {"frames": {}, "frame_styles": {}, "operator": {}}

    def attempt(fn):
        images_before = {i.name for i in bpy.data.images}
        try:
            value = fn()
            out = {"ok": True, "value": value}
        except Exception as ex:  # what the handlers and the operator catch
            out = {"ok": False, "type": type(ex).__name__, "message": common.first_sentence(ex),
                   "raw": str(ex), "traceback": traceback.format_exc()}
        out["leaked_images"] = sorted({i.name for i in bpy.data.images} - images_before)
        return out

    scene = bpy.context.scene
    # The frames are line drawings, not renders: a scene without Freestyle refines a file as a
    # drawing. Refined frames go to a 'linerelifer' folder beside them, which the test checks.
    scene.render.use_freestyle = False
    scene.linerelifer.output_mode = "SEPARATE_FOLDER"
    client = session.get_client()
    for name, path in spec["frames"].items():
        results["frames"][name] = attempt(lambda: pipeline.refine_frame_sync(scene, client, path, None, 1))

    # Styles, chosen in the scene's settings as a user would (they live in the user style folder).
    good_frame = spec["good_frame"]
    for name in spec["styles"]:
        def run_style(name=name):
            scene.linerelifer.style = name
            if scene.linerelifer.style != name:
                raise AssertionError(f"style {name} could not be selected")
            return pipeline.refine_frame_sync(scene, client, good_frame, None, 1)
        results["frame_styles"][name] = attempt(run_style)
    # A style deleted after it was chosen.
    gone = spec.get("deleted_style")
    if gone:
        def run_deleted():
            scene.linerelifer.style = gone["name"]
            for p in gone["files"]:
                os.unlink(p)
            return pipeline.refine_frame_sync(scene, client, good_frame, None, 1)
        results["frame_styles"]["deleted"] = attempt(run_deleted)

    if spec.get("render"):
        scene = build_scene(width=64, height=48, samples=1, line_thickness=2.0)
        scene.linerelifer.output_mode = "SEPARATE_FOLDER"
        bpy.ops.render.render()

        def operator():
            return sorted(bpy.ops.linerelifer.refine_lines())
        scene.linerelifer.style = "default"
        results["operator"]["default"] = attempt(operator)
        for name in spec["styles"]:
            scene.linerelifer.style = name
            results["operator"][name] = attempt(operator)
        scene.linerelifer.style = "default"
        for label, python in spec["pythons"].items():
            common._FALLBACK_PREFS.python_path = python
            results["operator"][label] = attempt(operator)
        common._FALLBACK_PREFS.python_path = ""
        results["operator"]["default_again"] = attempt(operator)

    results["worker_alive_before_shutdown"] = session.worker_alive()
    pid = session.get_client().pid
    session.shutdown()
    results["worker_pid"] = pid
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
