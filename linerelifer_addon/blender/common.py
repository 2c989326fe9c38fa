"""Small helpers shared by the Blender side: names, paths, preferences."""

from __future__ import annotations

import os
import types
from pathlib import Path

import bpy

from .state import notice
from .state import render as _render_job


def blender_rendering() -> bool:
    """Blender runs a render job now (UI; a background render runs inside its caller)."""
    is_job_running = getattr(bpy.app, "is_job_running", None)
    return bool(is_job_running and is_job_running("RENDER"))


def render_given_up() -> bool:
    """The render job the handlers saw start was given up by Blender (`RenderJob.given_up`)."""
    return _render_job.given_up(bool(bpy.app.background), blender_rendering())

# The add-on's root package: "bl_ext.user_default.linerelifer" when installed
# as an extension, "linerelifer_addon" when the package is registered directly.
ADDON_ID = __package__.rpartition(".")[0]

RESULT_IMAGE = "LineRelifer Result"
LINES_IMAGE = "LineRelifer Lines"
NODE_LABEL = "LineRelifer"
NODE_NAME = "LineRelifer Lines"

IS_5 = bpy.app.version >= (5, 0, 0)


def log(message: str) -> None:
    """One line on the console (stdout), prefixed so farm logs can grep it."""
    print(f"LineRelifer: {message}", flush=True)


def tell(message: str) -> None:
    """A line on the console that the panels also show (see state.Notice)."""
    log(message)
    notice.set(message)


def first_sentence(error: BaseException | str) -> str:
    """The first line of an error, as one sentence for ``report``."""
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0].strip().removeprefix("Error: ")  # what a failed operator raises
    if line.endswith(";") or line.endswith(":"):
        line = line[:-1]
    if line and line[0].islower():
        line = line[0].upper() + line[1:]
    if line and line[-1] not in ".!?":
        line += "."
    return line


def _defaults():
    return types.SimpleNamespace(python_path="", threads=0)


def get_prefs(context=None):
    """The add-on preferences, or defaults when the package was registered
    without being enabled as an add-on (e.g. by a script)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return _FALLBACK_PREFS


_FALLBACK_PREFS = _defaults()


def user_dir(sub: str, create: bool = True) -> Path:
    """A per-user folder for the extension's data (never its own folder)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path=sub, create=create))
    except (ValueError, AttributeError):
        # Not installed as an extension: use Blender's user data folder.
        base = bpy.utils.user_resource("DATAFILES", path=os.path.join("linerelifer", sub), create=create)
        return Path(base)


def style_dirs() -> list[Path]:
    """Extra style folders searched inside Blender."""
    try:
        return [user_dir("styles", create=True)]
    except OSError:
        return []


def python_for_worker(prefs) -> str | None:
    """The explicit worker interpreter from the preferences, or None."""
    path = (getattr(prefs, "python_path", "") or "").strip()
    if not path:
        return None
    return bpy.path.abspath(path) if path.startswith("//") else os.path.expanduser(path)
