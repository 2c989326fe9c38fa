"""Auto-refine: render handlers.

Order: render_init -> (render_pre -> render_post -> render_write) per frame
-> render_complete (or render_cancel).

* Background renders (``blender -b file.blend -a``, farms, the bpy module):
  timers never fire, so every written frame is refined synchronously inside
  ``render_write`` (the worker stays warm across frames; one log line per
  frame).  A still render that writes no file is refined into the result
  images in ``render_complete``.
* UI renders: handlers run on the render thread.  ``render_write`` only
  captures the frame's Freestyle pass (it is gone once the next frame
  starts) and queues the frame; a main-thread timer loads it, runs the worker
  on a background thread and writes the result.  After a still render the
  Refine Lines operator is invoked from a timer.

Nothing is added to the user's node tree; failures are logged as one line
and never stop the render.
"""

from __future__ import annotations

import collections
import threading
import time

import bpy
from bpy.app.handlers import persistent

from . import pipeline, session
from .common import first_sentence, get_prefs, log

_state = {
    "active": False,
    "since": 0.0,
    "frames": 0,
    "skip_reason": None,
    "failures": 0,
}
_queue: collections.deque = collections.deque()  # UI mode: (scene name, frame, path, freestyle)
_current: dict = {}  # UI mode: the frame being refined


def _settings(scene):
    return getattr(scene, "linerelifer", None)


@persistent
def on_render_init(scene, *args):
    settings = _settings(scene)
    _state.update(active=bool(settings is not None and settings.auto_refine), since=time.time(),
                  frames=0, skip_reason=None, failures=0)


@persistent
def on_render_write(scene, *args):
    _state["frames"] += 1
    if not _state["active"]:
        return
    try:
        _frame_written(scene)
    except Exception as ex:  # never break the render
        _state["failures"] += 1
        log(f"frame {scene.frame_current}: not refined: {first_sentence(ex)}")


def _frame_written(scene):
    frame = scene.frame_current
    problem = pipeline.frame_output_problem(scene)
    if problem:
        if _state["skip_reason"] is None:
            log(f"auto-refine skipped: {problem}")
        _state["skip_reason"] = problem
        return
    path = pipeline.written_frame_path(scene, _state["since"])
    if path is None:
        raise pipeline.RefineError("the written frame file was not found")
    freestyle = pipeline.capture_frame_lines(scene)
    if bpy.app.background:
        client = session.get_client(get_prefs())
        pipeline.refine_frame_sync(scene, client, path, freestyle, frame)
    else:
        _queue.append((scene.name, frame, path, freestyle, time.monotonic()))
        _ensure_pump()


@persistent
def on_render_complete(scene, *args):
    if not _state["active"]:
        return
    _state["active"] = False
    if _state["frames"]:
        return  # frames were written and refined (or queued)
    if bpy.app.background:
        try:
            client = session.get_client(get_prefs())
            t0 = time.monotonic()
            pipeline.refine_still_sync(bpy.context, scene, client, show=False)
            log(f"refined the render in {time.monotonic() - t0:.2f} s")
        except Exception as ex:
            log(f"render not refined: {first_sentence(ex)}")
    else:
        bpy.app.timers.register(_invoke_refine_later, first_interval=0.2)


@persistent
def on_render_cancel(scene, *args):
    _state["active"] = False


def _invoke_refine_later():
    """Main thread (timer): run the Refine Lines operator with a window."""
    wm = bpy.context.window_manager
    window = wm.windows[0] if wm and wm.windows else None
    if window is None:
        return None
    try:
        with bpy.context.temp_override(window=window, screen=window.screen):
            if bpy.ops.linerelifer.refine_lines.poll():
                bpy.ops.linerelifer.refine_lines("INVOKE_DEFAULT")
            else:
                return 0.5  # a refinement is running: try again shortly
    except Exception as ex:
        log(f"render not refined: {first_sentence(ex)}")
    return None


# -- UI mode: frames refined on the main thread + a worker thread --------------------

def _ensure_pump():
    if not bpy.app.timers.is_registered(_pump):
        bpy.app.timers.register(_pump, first_interval=0.1)


def _pump():
    """Timer: one frame at a time; returns the next interval or None."""
    cur = _current.get("job")
    if cur is not None:
        thread = _current["thread"]
        if thread.is_alive():
            return 0.1
        job, err = cur, _current.get("error")
        _current.clear()
        if err is not None:
            pipeline.release_frame(job)
            log(f"frame {job.frame}: not refined: {first_sentence(err)}")
        else:
            try:
                scene = bpy.data.scenes.get(job.scene_name) or bpy.context.scene
                out = pipeline.finish_frame(job)
                dst = pipeline.write_frame(job, out, scene.linerelifer.output_mode)
                log(f"frame {job.frame}: {job.frame_path} -> {dst} "
                    f"({time.monotonic() - job.queued:.2f} s)")
            except Exception as ex:
                pipeline.release_frame(job)
                log(f"frame {job.frame}: not refined: {first_sentence(ex)}")
    if not _queue:
        return None
    scene_name, frame, path, freestyle, queued = _queue.popleft()
    scene = bpy.data.scenes.get(scene_name)
    if scene is None:
        return 0.1
    try:
        job = pipeline.prepare_frame(scene, path, freestyle, frame)
    except Exception as ex:
        log(f"frame {frame}: not refined: {first_sentence(ex)}")
        return 0.1
    job.queued = queued
    job.scene_name = scene_name
    client = session.get_client(get_prefs())

    def work():
        try:
            pipeline.run(job, client)
        except BaseException as ex:
            _current["error"] = ex

    _current.update(job=job, thread=threading.Thread(target=work, daemon=True))
    _current["thread"].start()
    return 0.1


_HANDLERS = (
    ("render_init", on_render_init),
    ("render_write", on_render_write),
    ("render_complete", on_render_complete),
    ("render_cancel", on_render_cancel),
)


def register():
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        # Remove stale copies (e.g. after a reload) by name, then add ours.
        for h in list(lst):
            if getattr(h, "__name__", "") == fn.__name__ and getattr(h, "__module__", "") == fn.__module__:
                lst.remove(h)
        lst.append(fn)


def unregister():
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):
            if h is fn or (getattr(h, "__name__", "") == fn.__name__
                           and getattr(h, "__module__", "") == fn.__module__):
                lst.remove(h)
    for timer in (_pump, _invoke_refine_later):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _queue.clear()
    _current.clear()
