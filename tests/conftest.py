"""Shared fixtures: a style built by the project's own export code, and the worker's Python."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_report_header(config) -> str:
    """Name the Blender the Blender tests run on (read from the installed wheel: bpy itself
    must not be imported before test_blender_extension.py sets up its user folder)."""
    from importlib import metadata

    try:
        bpy_version = metadata.version("bpy")
    except metadata.PackageNotFoundError:
        bpy_version = "not installed (Blender tests skipped)"
    return f"Blender tests on bpy {bpy_version}; worker Python {os.environ.get('LINERELIFER_PYTHON') or sys.executable}"


@pytest.fixture(scope="session")
def random_style(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lite-architecture style with random weights: enough for tiling and protocol tests."""
    from linerelifer_addon.worker import model as models
    from training.export import export_style

    import keras

    keras.utils.set_random_seed(7)
    gen = models.build_generator("lite")
    out = tmp_path_factory.mktemp("styles")
    return export_style(gen, "lite", out, "random", "random weights for tests", {"command": "tests"})


@pytest.fixture(scope="session")
def default_style() -> Path:
    path = ROOT / "linerelifer_addon" / "styles" / "default.keras"
    if not path.is_file():
        pytest.fail("the bundled default style is missing; train it with the command in training/README.md")
    return path


def line_image(h: int, w: int, seed: int = 0, width: float = 2.0) -> np.ndarray:
    """Coverage of a few anti-aliased random lines and circles (numpy only, for any test)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cov = np.zeros((h, w), np.float32)
    for _ in range(6):
        y0, x0, y1, x1 = rng.uniform(0, [h, w, h, w])
        d = np.array([y1 - y0, x1 - x0], np.float32)
        n = float(np.hypot(*d)) or 1.0
        t = np.clip(((yy - y0) * d[0] + (xx - x0) * d[1]) / (n * n), 0, 1)
        dist = np.hypot(yy - (y0 + t * d[0]), xx - (x0 + t * d[1]))
        cov = np.maximum(cov, np.clip(width / 2 + 0.5 - dist, 0, 1))
    for _ in range(3):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, min(h, w) / 4)
        dist = np.abs(np.hypot(yy - cy, xx - cx) - r)
        cov = np.maximum(cov, np.clip(width / 2 + 0.5 - dist, 0, 1))
    return cov


@pytest.fixture
def python_exe() -> str:
    return sys.executable


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square (Chebyshev) dilation by r pixels with numpy shifts: ink 'within r px'."""
    out = mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, r)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= padded[r + dy:r + dy + h, r + dx:r + dx + w]
    return out


def python_with_only(folder: Path, modules: tuple[str, ...]) -> Path:
    """A Python whose site holds only `modules` (and their metadata) from this venv.

    A venv without pip whose site-packages has one .pth file pointing at a folder of links:
    so a test can prove what a process does when TensorFlow is simply not there.
    """
    import subprocess
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    src = Path(sysconfig.get_paths()["purelib"])
    links = folder / "linked"
    links.mkdir()
    wanted = tuple(m.lower() for m in modules)
    for entry in src.iterdir():
        key = entry.name.lower().replace("-", "_")
        if key.startswith(wanted) and not key.endswith(".pth"):
            (links / entry.name).symlink_to(entry)
    site = next((folder / "lib").glob("python3*/site-packages"))
    (site / "linked.pth").write_text(str(links) + "\n")
    return folder / "bin" / "python"


def marker_drawings(folder: Path, grey: int = 0, n: int = 3) -> None:
    """Line drawings in a 5 px marker of one grey on white paper, as scanned drawings would be: a
    few smooth strokes and an ellipse, some crossing, a style unlike the synthetic default data."""
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(5)
    t = np.linspace(0.0, 1.0, 60)[:, None]
    for i in range(n):
        h, w = 240, 300
        img = np.full((h, w), 255, np.uint8)
        for _ in range(4):  # quadratic curves through three random points
            p = rng.uniform([15, 15], [w - 15, h - 15], size=(3, 2))
            pts = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
            cv2.polylines(img, [np.rint(pts * 4).astype(np.int32)], False, grey, thickness=5,
                          lineType=cv2.LINE_AA, shift=2)
        centre = (int(rng.uniform(80, w - 80)), int(rng.uniform(70, h - 70)))
        axes = (int(rng.uniform(30, 55)), int(rng.uniform(25, 50)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, grey, 5, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"scan{i}.png"), img)


# bpy 4.2 (the module build) crashes while Python shuts down when an operator class is still
# registered (five lines reproduce it: register a bpy.types.Operator subclass, exit; segfault
# 139 after everything ran; 4.5 and 5.0 exit cleanly). The tests' outcome is decided by then,
# so a 4.2 test process ends without that teardown, keeping pytest's own exit status.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    bpy = sys.modules.get("bpy")
    app = getattr(bpy, "app", None)
    if app is not None and tuple(app.version[:2]) == (4, 2) and _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
