"""The extension as an artist gets it: the built linux-x64 zip in a Python with bpy and no
TensorFlow (and no LiteRT of its own). It installs, and refines with the LiteRT wheel it
bundles, run by Blender's own Python; no runtime is installed or configured."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, python_with_only

BPY_ONLY = ("bpy", "numpy", "cython", "requests", "urllib3", "idna", "certifi", "charset_normalizer",
            "zstandard")


def _build_module():
    spec = importlib.util.spec_from_file_location("build_extension", ROOT / "tools" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed")
    base = tmp_path_factory.mktemp("litert-blender")
    zip_path = _build_module().build(base / "dist", verbose=False, platform="linux-x64")
    python = python_with_only(base / "py", BPY_ONLY)
    proc = subprocess.run([str(python), str(ROOT / "tests" / "blender_litert_check.py"), str(zip_path), str(base)],
                          capture_output=True, text=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(base), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "stdout": proc.stdout, "base": base}


def test_no_tensorflow_anywhere(report: dict) -> None:
    assert report["found_before_install"] == {"tensorflow": False, "keras": False, "ai_edge_litert": False}
    assert report["blender_loaded"] == []
    assert report["worker_loaded"] == ["ai_edge_litert"]
    assert report["worker_versions"]["tensorflow"] is None


def test_worker_is_blenders_python_with_the_bundled_wheel(report: dict) -> None:
    assert report["worker_python"] == report["sys_executable"]
    assert report["backend"] == "litert"
    wheel_site = Path(report["user_dir"]) / "extensions" / ".local"
    assert Path(report["litert_from"]).is_relative_to(wheel_site), report["litert_from"]
    assert report["worker_versions"]["litert"] == "2.3.0"


def test_refine_lines_on_a_real_render(report: dict) -> None:
    assert report["refine_still"] == ["FINISHED"]
    assert report["still_ink_pixels"] > 200


def test_auto_refined_animation_writes_its_frames(report: dict) -> None:
    # The default output mode: refined frames at the output path, the originals kept in a folder inside it.
    names = [f"frame_{i:04d}.png" for i in (1, 2, 3)]
    assert report["frames"] == [f"frames/{n}" for n in names] + [f"frames/originals/{n}" for n in names]
    assert report["refined_differs"] == [True, True, True]
    lines = [l for l in report["stdout"].splitlines() if l.startswith("LineRelifer: frame ")]
    assert len(lines) == 3, report["stdout"][-2000:]
