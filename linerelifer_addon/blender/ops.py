"""Operators: Refine Lines, Enable Freestyle Pass, Test Runtime."""

from __future__ import annotations

import threading
import time

import bpy

from ..core.client import Cancelled, WorkerError
from . import pipeline, session
from .common import blender_rendering, first_sentence, get_prefs, log, render_given_up
from .state import busy as _busy, render as _render_job



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
    if _render_job.running and not render_given_up():
        return True
    return blender_rendering()


class LINERELIFER_OT_refine_lines(bpy.types.Operator):
    """Refine the Freestyle lines of the latest render with the selected style"""

    bl_idname = "linerelifer.refine_lines"
    bl_label = "Refine Lines"
    bl_options = {"REGISTER", "UNDO"}  # an undo step of its own: Ctrl+Z must not undo the edit before

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
        self.report({"WARNING"} if job.note else {"INFO"},
                    f"Lines refined in {secs:.1f} s" + (f"; {job.note}" if job.note else ""))
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
        note = f"; {self._job.note}" if self._job.note else ""
        self.report({"WARNING"} if note else {"INFO"}, f"Lines refined in {time.monotonic() - self._started:.1f} s{note}")
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
        problem = pipeline.result_problem(context.scene) if context.scene is not None else "No scene"
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

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

class LINERELIFER_OT_test_runtime(bpy.types.Operator):
    """Start the worker and show what it runs on (LiteRT, bundled, unless another Python is set)"""

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
            versions = session.get_client(get_prefs(context)).info()
        except WorkerError as ex:
            session.set_status(python, False, error=first_sentence(ex))
            self.report({"ERROR"}, first_sentence(ex))
            return {"CANCELLED"}
        session.set_status(python, True, versions)
        self.report({"INFO"}, session.versions_text(versions))
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        prefs = get_prefs(context)
        self._python = session.worker_python(prefs)
        try:
            client = session.get_client(prefs)
        except WorkerError as ex:  # a setting the worker cannot start with
            session.set_status(self._python, False, error=first_sentence(ex))
            self.report({"ERROR"}, first_sentence(ex))
            return {"CANCELLED"}
        self._thread = _Worker(client.info)
        self._thread.start()
        _busy["probe"] = True
        session.runtime_status.update(checking=True)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        _busy["probe"] = False
        session.runtime_status.pop("checking", None)

    def cancel(self, context):
        """Blender ends the operator (file load, window closed): stop the worker being probed."""
        self._end(context)
        session.shutdown()

    def modal(self, context, event):
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        self._end(context)
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        if self._thread.error is not None:
            msg = first_sentence(self._thread.error)
            session.set_status(self._python, False, error=msg)
            self.report({"ERROR"}, msg)
            return {"CANCELLED"}
        session.set_status(self._python, True, self._thread.result)
        self.report({"INFO"}, session.versions_text(self._thread.result))
        return {"FINISHED"}


classes = (
    LINERELIFER_OT_refine_lines,
    LINERELIFER_OT_save_result,
    LINERELIFER_OT_enable_freestyle_pass,
    LINERELIFER_OT_test_runtime,
)
