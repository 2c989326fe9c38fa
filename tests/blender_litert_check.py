"""Run by tests/test_blender_litert.py in a Python that has bpy but no TensorFlow and no LiteRT.

Installs the built zip into a fresh user folder, then refines a still and auto-refines a
3-frame animation; prints one JSON object with what it saw. Usage:
    python blender_litert_check.py ZIP OUT_DIR
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def main(zip_path: str, out_dir: str) -> int:
    user = tempfile.mkdtemp(prefix="linerelifer-litert-user-", dir=out_dir)  # pytest's temp folder: cleaned up
    os.environ["BLENDER_USER_RESOURCES"] = user
    os.environ["LINERELIFER_STYLES_DIR"] = os.path.join(user, "no-user-styles")
    found_before = {m: importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras", "ai_edge_litert")}
    import bpy
    import numpy as np

    sys.path.insert(0, str(TESTS))
    from blender_scene import build_scene

    report: dict = {"found_before_install": found_before, "bpy": bpy.app.version_string}
    assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    pkg = "bl_ext.user_default.linerelifer"
    spec = importlib.util.find_spec("ai_edge_litert")
    report["litert_from"] = str(Path(spec.origin).parent) if spec else None
    report["user_dir"] = user
    session = sys.modules[pkg + ".blender.session"]

    build_scene(width=160, height=120, samples=2, line_thickness=2.0)
    assert bpy.ops.render.render() == {"FINISHED"}
    report["refine_still"] = sorted(bpy.ops.linerelifer.refine_lines())
    lines = bpy.data.images["LineRelifer Lines"]
    px = np.empty(len(lines.pixels), np.float32)
    lines.pixels.foreach_get(px)
    report["still_ink_pixels"] = int((px.reshape(-1, 4)[:, 3] > 0.25).sum())
    client = session.get_client()
    report["worker_python"] = client.python
    report["sys_executable"] = sys.executable
    report["backend"] = client.last_stats.get("backend")
    report["worker_loaded"] = client.loaded_modules()
    report["worker_versions"] = client.info()

    scene = build_scene(width=160, height=120, samples=1, frames=(1, 3))
    scene.linerelifer.auto_refine = True
    scene.render.filepath = os.path.join(out_dir, "frames", "frame_")
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    base = Path(out_dir)
    report["frames"] = sorted(str(p.relative_to(base)) for p in (base / "frames").rglob("*.png"))
    report["refined_differs"] = [(base / "frames" / f"frame_{i:04d}.png").read_bytes()
                                 != (base / "frames" / "originals" / f"frame_{i:04d}.png").read_bytes()
                                 for i in (1, 2, 3) if (base / "frames" / "originals" / f"frame_{i:04d}.png").is_file()]
    report["blender_loaded"] = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    session.shutdown()
    print("RESULT " + json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
