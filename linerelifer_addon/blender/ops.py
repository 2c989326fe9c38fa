"""Operators: Refine Lines, Enable Freestyle Pass, Install/Test Runtime."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
import time

import bpy

from ..core.client import Cancelled, WorkerError
from ..core.runtime import REQUIREMENTS, probe_python
from . import pipeline, session
from .common import RESULT_IMAGE, first_sentence, get_prefs, is_blender_binary, log
from .state import busy as _busy, install_state, render as _render_job



class _Worker(threading.Thread):
    """Runs ``fn`` on a thread and keeps its result or exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self._fn = fn
        self.result = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self.result = self._fn()
        except BaseException as ex:  # handed to the main thread
            self.error = ex


def _error_text(ex: BaseException) -> str:
    if isinstance(ex, (pipeline.RefineError, WorkerError, RuntimeError, ValueError, OSError)):
        return first_sentence(ex)
    return first_sentence(f"Unexpected {type(ex).__name__}: {ex}")


# -- Refine Lines --------------------------------------------------------------------

def render_running() -> bool:
    """A render job is running (its handlers may be writing frames): Refine Lines, which
    saves the render through the output settings, must wait for it."""
    if _render_job.running:
        return True
    is_job_running = getattr(bpy.app, "is_job_running", None)
    return bool(is_job_running and is_job_running("RENDER"))


class LINERELIFER_OT_refine_lines(bpy.types.Operator):
    """Refine the Freestyle lines of the latest render with the selected style"""

    bl_idname = "linerelifer.refine_lines"
    bl_label = "Refine Lines"
    bl_options = {"REGISTER"}

    # Plain Python state of the modal run (the worker thread only touches
    # ``_shared``, a dict, never the operator itself).
    _timer = None
    _thread: _Worker | None = None
    _job = None
    _cancel: threading.Event | None = None
    _shared: dict | None = None
    _started = 0.0
    _scene_name = ""

    @classmethod
    def poll(cls, context):
        if _busy["refine"]:
            cls.poll_message_set("A refinement is already running")
            return False
        if render_running():
            cls.poll_message_set("A render is running; refine its lines when it has finished")
            return False
        return context.scene is not None

    # Scripts and background mode: synchronous.
    def execute(self, context):
        scene = context.scene
        t0 = time.monotonic()
        try:
            client = session.get_client(get_prefs(context))
            job = pipeline.prepare_still(scene)
            pipeline.run(job, client)
            result, lines = pipeline.finish_still(job)
            pipeline.apply_still(context, scene, result, lines)
        except Cancelled:
            self.report({"WARNING"}, "Refinement cancelled")
            return {"CANCELLED"}
        except Exception as ex:
            self.report({"ERROR"}, _error_text(ex))
            return {"CANCELLED"}
        secs = time.monotonic() - t0
        log(f"refined {result.shape[1]}x{result.shape[0]} render in {secs:.2f} s")
        self.report({"INFO"}, f"Lines refined in {secs:.1f} s")
        return {"FINISHED"}

    # The UI: the worker call runs on a thread, the UI stays responsive.
    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        scene = context.scene
        try:
            client = session.get_client(get_prefs(context))
            self._job = pipeline.prepare_still(scene)
        except Exception as ex:
            self.report({"ERROR"}, _error_text(ex))
            return {"CANCELLED"}
        self._cancel = threading.Event()
        self._shared = shared = {"done": 0, "total": 0}
        self._started = time.monotonic()
        self._scene_name = scene.name
        job, cancel = self._job, self._cancel

        def progress(done, total):
            shared["done"], shared["total"] = done, total

        self._thread = _Worker(lambda: pipeline.run(job, client, progress=progress, cancel=cancel))
        self._thread.start()
        _busy["refine"] = True
        wm = context.window_manager
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, "LineRelifer: starting the worker... (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def _status(self, context, text):
        try:
            context.workspace.status_text_set(text)
        except (AttributeError, RuntimeError):
            pass

    def _end(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._status(context, None)
        _busy["refine"] = False

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS" and not self._cancel.is_set():
            self._cancel.set()
            self._status(context, "LineRelifer: cancelling...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._thread.is_alive():
            done, total = self._shared["done"], self._shared["total"]
            if total:
                context.window_manager.progress_update(int(100 * done / total))
                if not self._cancel.is_set():
                    self._status(context, f"LineRelifer: refining tile {done}/{total} (Esc to cancel)")
            return {"PASS_THROUGH"}
        self._end(context)
        err = self._thread.error
        if isinstance(err, Cancelled) or (err is None and self._cancel.is_set() and self._job.refined is None):
            self.report({"WARNING"}, "Refinement cancelled; the render is unchanged")
            return {"CANCELLED"}
        if err is not None:
            self.report({"ERROR"}, _error_text(err))
            return {"CANCELLED"}
        scene = bpy.data.scenes.get(self._scene_name) or context.scene
        try:
            result, lines = pipeline.finish_still(self._job)
            pipeline.apply_still(context, scene, result, lines)
        except Exception as ex:
            self.report({"ERROR"}, _error_text(ex))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Lines refined in {time.monotonic() - self._started:.1f} s")
        return {"FINISHED"}

    def cancel(self, context):  # Blender closes the window / file
        if self._cancel is not None:
            self._cancel.set()
        self._end(context)


# -- Save the result -----------------------------------------------------------------

class LINERELIFER_OT_save_result(bpy.types.Operator):
    """Save the refined render as the Image Editor shows it: the scene's view transform and output format"""

    bl_idname = "linerelifer.save_result"
    bl_label = "Save Refined Render"
    bl_options = {"REGISTER"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if bpy.data.images.get(RESULT_IMAGE) is None:
            cls.poll_message_set("Refine the lines of a render first")
            return False
        return context.scene is not None

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = bpy.path.ensure_ext("//refined", context.scene.render.file_extension)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            path = pipeline.save_result(context.scene, self.filepath)
        except Exception as ex:
            self.report({"ERROR"}, _error_text(ex))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {path}")
        return {"FINISHED"}


# -- Freestyle pass ------------------------------------------------------------------

class LINERELIFER_OT_enable_freestyle_pass(bpy.types.Operator):
    """Turn on Freestyle and output its lines as a separate render pass"""

    bl_idname = "linerelifer.enable_freestyle_pass"
    bl_label = "Use Freestyle as Render Pass"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        view_layer = context.view_layer or scene.view_layers[0]
        scene.render.use_freestyle = True
        view_layer.use_freestyle = True
        view_layer.freestyle_settings.as_render_pass = True
        self.report({"INFO"}, "Freestyle lines will be rendered as a separate pass; render again")
        return {"FINISHED"}


# -- Runtime -------------------------------------------------------------------------

def find_system_python(prefs) -> str | None:
    explicit = (getattr(prefs, "system_python", "") or "").strip()
    if explicit:
        path = bpy.path.abspath(explicit) if explicit.startswith("//") else os.path.expanduser(explicit)
        return path
    names = ("python3", "python") if sys.platform != "win32" else ("py", "python", "python3")
    for name in names:
        found = shutil.which(name)
        if found and not is_blender_binary(found):
            return found
    return None


_OFFLINE_MARKERS = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "No matching distribution found",
    "Could not find a version that satisfies", "ConnectTimeoutError", "ProxyError", "SSLError",
    "getaddrinfo failed", "Max retries exceeded",
)


class LINERELIFER_OT_install_runtime(bpy.types.Operator):
    """Create a Python environment with TensorFlow for the worker (downloads about 600 MB)"""

    bl_idname = "linerelifer.install_runtime"
    bl_label = "Install Runtime"

    _proc = None
    _timer = None
    _reader = None
    _lines = None
    _steps_left = None
    _n_steps = 0
    _label = ""
    _venv_dir = ""
    _venv_python = ""
    _start_error = None

    @classmethod
    def poll(cls, context):
        if _busy["install"]:
            cls.poll_message_set("The runtime is being installed")
            return False
        return True

    def _fail(self, context, text):
        text = first_sentence(text)
        install_state.update(running=False, error=text)
        self.report({"ERROR"}, text)
        return {"CANCELLED"}

    def _steps(self, system_python, venv_dir, venv_python):
        return [
            ("Creating the environment", [system_python, "-m", "venv", venv_dir]),
            ("Installing " + ", ".join(REQUIREMENTS),
             [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
              "--progress-bar", "off", "--retries", "2", "--timeout", "30", *REQUIREMENTS]),
        ]

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        prefs = get_prefs(context)
        if not bpy.app.online_access:
            return self._fail(context, "Online access is disabled; allow it in Preferences > System > Network "
                                       "to download the runtime")
        system_python = find_system_python(prefs)
        if not system_python:
            return self._fail(context, "No system Python was found; install Python 3.11 or set System Python "
                                       "in the preferences")
        if not os.path.isfile(system_python):
            return self._fail(context, f"System Python {system_python} does not exist")
        if is_blender_binary(system_python):
            return self._fail(context, "System Python must be a Python interpreter, not Blender")
        venv_python = session.runtime_venv_python(create=True)
        venv_dir = str(venv_python.parent.parent)
        self._venv_dir = venv_dir
        self._venv_python = str(venv_python)
        if os.path.isdir(venv_dir):
            shutil.rmtree(venv_dir, ignore_errors=True)
        self._steps_left = collections.deque(self._steps(system_python, venv_dir, str(venv_python)))
        self._n_steps = len(self._steps_left)
        self._lines = collections.deque(maxlen=200)
        install_state.update(running=True, line="", error="", done=False)
        _busy["install"] = True
        if bpy.app.background or context.window is None:
            while self._steps_left:
                label, args = self._steps_left.popleft()
                log(label)
                try:
                    self._start(args)
                except OSError as ex:
                    self._start_error = ex
                    return self._finish(context, 1, started=False)
                rc = self._proc.wait()
                self._reader.join(timeout=5)
                if rc != 0:
                    return self._finish(context, rc)
            return self._finish(context, 0)
        wm = context.window_manager
        self._next_step()
        wm.progress_begin(0, self._n_steps)
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start(self, args):
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, errors="replace",
                                      env={**os.environ, "PIP_NO_INPUT": "1", "PYTHONNOUSERSITE": "1"})
        proc, lines = self._proc, self._lines

        def pump():
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    lines.append(line)
                    install_state["line"] = line[-160:]
                    if bpy.app.background:
                        print("  " + line, flush=True)
        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()

    def _next_step(self):
        label, args = self._steps_left.popleft()
        self._label = label
        install_state["line"] = label
        log(label)
        try:
            self._start(args)
        except OSError as ex:
            self._proc = None
            self._start_error = ex

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
            self._cleanup(context)
            shutil.rmtree(self._venv_dir, ignore_errors=True)
            return self._fail(context, "Runtime installation cancelled")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._proc is None:
            self._cleanup(context)
            return self._finish(context, 1, started=False)
        rc = self._proc.poll()
        step = self._n_steps - len(self._steps_left)
        context.window_manager.progress_update(step)
        try:
            context.workspace.status_text_set(
                f"LineRelifer runtime, step {step}/{self._n_steps}: {install_state['line'][:100]} (Esc to cancel)")
        except (AttributeError, RuntimeError):
            pass
        for area in context.screen.areas if context.screen else ():
            if area.type == "PREFERENCES":
                area.tag_redraw()
        if rc is None:
            return {"PASS_THROUGH"}
        self._reader.join(timeout=5)
        if rc == 0 and self._steps_left:
            self._next_step()
            return {"PASS_THROUGH"}
        self._cleanup(context)
        return self._finish(context, rc)

    def _cleanup(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        try:
            context.workspace.status_text_set(None)
        except (AttributeError, RuntimeError):
            pass
        _busy["install"] = False

    def _finish(self, context, rc, started=True):
        _busy["install"] = False
        if rc != 0:
            text = "\n".join(self._lines)
            shutil.rmtree(self._venv_dir, ignore_errors=True)
            if not started:
                return self._fail(context, f"The installer could not be started ({self._start_error})")
            if any(m in text for m in _OFFLINE_MARKERS):
                return self._fail(context, "pip could not download the runtime packages; check the internet "
                                           "connection or proxy and try again")
            last = self._lines[-1] if self._lines else f"exit code {rc}"
            return self._fail(context, f"Installing the runtime failed ({last})")
        prefs = get_prefs(context)
        try:
            versions = probe_python(self._venv_python)
        except RuntimeError as ex:
            session.set_status(self._venv_python, False, error=first_sentence(ex))
            return self._fail(context, first_sentence(ex))
        if hasattr(prefs, "bl_rna"):
            prefs.python_path = self._venv_python
        session.set_status(self._venv_python, True, versions)
        install_state.update(running=False, done=True, line="Runtime installed")
        self.report({"INFO"}, f"Runtime installed: TensorFlow {versions.get('tensorflow', '?')}")
        return {"FINISHED"}


class LINERELIFER_OT_test_runtime(bpy.types.Operator):
    """Check that the worker's Python can run the network (imports TensorFlow once)"""

    bl_idname = "linerelifer.test_runtime"
    bl_label = "Test Runtime"

    _thread = None
    _timer = None
    _python = ""

    @classmethod
    def poll(cls, context):
        return not _busy["probe"]

    def execute(self, context):
        python = session.worker_python(get_prefs(context))
        try:
            versions = probe_python(python)
        except RuntimeError as ex:
            session.set_status(python, False, error=first_sentence(ex))
            self.report({"ERROR"}, first_sentence(ex))
            return {"CANCELLED"}
        session.set_status(python, True, versions)
        self.report({"INFO"}, _versions_text(versions))
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        self._python = session.worker_python(get_prefs(context))
        python = self._python
        self._thread = _Worker(lambda: probe_python(python))
        self._thread.start()
        _busy["probe"] = True
        session.runtime_status.update(checking=True)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        _busy["probe"] = False
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        if self._thread.error is not None:
            msg = first_sentence(self._thread.error)
            session.set_status(self._python, False, error=msg)
            self.report({"ERROR"}, msg)
            return {"CANCELLED"}
        session.set_status(self._python, True, self._thread.result)
        self.report({"INFO"}, _versions_text(self._thread.result))
        return {"FINISHED"}


def _versions_text(versions: dict) -> str:
    return ("Runtime OK: Python {python}, TensorFlow {tensorflow}, Keras {keras}, NumPy {numpy}"
            .format(**{k: versions.get(k, "?") for k in ("python", "tensorflow", "keras", "numpy")}))


classes = (
    LINERELIFER_OT_refine_lines,
    LINERELIFER_OT_save_result,
    LINERELIFER_OT_enable_freestyle_pass,
    LINERELIFER_OT_install_runtime,
    LINERELIFER_OT_test_runtime,
)
