"""Auto-refine: the render handlers.

Order: render_init -> (render_pre -> render_post -> render_write) per frame
-> render_complete (or render_cancel).  ``load_pre`` drops what a UI render left queued.

* Background renders (``blender -b file.blend -a``, farms, scripts): the handlers run on
  the main thread and timers never fire, so each written frame is refined right there
  (one warm worker, one log line per frame).  There is no "Render Result" image in a farm
  render, so the Freestyle pass comes from a File Output node set up at render_init
  (:mod:`.passnode`).  A worker that cannot start ends auto-refine for the render with one
  log line: no frame retries it.
* UI renders: the handlers run on the render thread, so they only record what happened
  (:mod:`.framequeue`; the pass is spilled to a temporary file) and write no Blender data;
  the queue's main-thread timer, registered at register(), does the rest.

Failures are logged as one line and never stop the render.  A render Blender gives up after
render_init (an image too small, no camera) gets neither render_complete nor render_cancel:
the next save, UI timer tick or Refine Lines sees it (`state.RenderJob.given_up`) and undoes
what render_init set up.
"""

from __future__ import annotations

import time

import bpy
from bpy.app.handlers import persistent

from ..core.client import WorkerStartError
from . import capture, framequeue, passnode, pipeline, session
from .common import first_sentence, get_prefs, log, render_given_up, tell
from .state import baked_problem, notice
from .state import render as job


def background_mode() -> bool:
    """Whether handlers run on the main thread (no UI, no timers)."""
    return bool(bpy.app.background)


def _auto(scene) -> bool:
    settings = getattr(scene, "linerelifer", None)
    return bool(settings is not None and settings.auto_refine)


def _refuse(reason: str) -> None:
    """Stop auto-refining this render; say why once."""
    if job.refused is None:
        job.refused = reason
        tell(f"auto-refine stopped for this render: {reason}")


@persistent
def on_render_init(scene, *args) -> None:
    job.reset(running=True, auto=_auto(scene), since=time.time())
    if not job.auto:
        return
    notice.set("")  # a new render: what the last one could not do is no longer news
    if not scene.render.use_freestyle:
        _refuse("Freestyle is off, so there are no lines to refine; turn it on in Render Properties")
        return
    problem = pipeline.baked_frames_problem(scene) or pipeline.style_problem(scene)
    if problem:
        _refuse(problem)
        return
    if not background_mode():
        # Render thread: read, decide, note; the timer set the pass node up beforehand.
        if pipeline.freestyle_pass_enabled(scene) and not passnode.folder_of(scene.name):
            _refuse(framequeue.node_problem(scene.name)
                    or "the Freestyle pass node is not in place (Compositing off in Output Properties, "
                       "or auto-refine was switched on a moment ago); render again")
        return
    # Main thread, before Blender copies the render settings: the one place to set up.
    if pipeline.freestyle_pass_enabled(scene) and not pipeline.frame_output_problem(scene):
        try:
            passnode.add(scene)
        except Exception as ex:
            _refuse(first_sentence(ex))


@persistent
def on_render_pre(scene, *args) -> None:
    job.started = True  # render thread in the UI: plain Python and reads, no bpy writes
    if job.auto and not job.refused:
        try:
            job.before = {p: pipeline.file_stamp(p) for p in pipeline.frame_file_candidates(scene)}
        except Exception as ex:  # never break the render
            log(f"frame {scene.frame_current}: could not look at its file before the render ({ex})")
            job.before = {}


@persistent
def on_render_write(scene, *args) -> None:
    job.frames += 1
    if not job.auto:
        return
    frame = scene.frame_current
    problem = job.refused or pipeline.frame_output_problem(scene)  # a still can still be refined
    try:
        if problem:
            _refuse(problem)
            return
        if job.frames == 1 and pipeline.freestyle_pass_enabled(scene) and capture.draws_the_pass(scene):
            # A written frame holds what the compositor made; a still Refine Lines captures does not.
            tell("the compositor draws the Freestyle pass into the frames, so Freestyle's own lines stay "
                 "under the refined ones (thinned ends and removed specks will not show); to see the "
                 "style, take the pass out of the compositor")
        if background_mode():
            _refine_written_frame(scene, frame)
        else:
            framequeue.record_frame(scene, frame, job.since, job.before)
    except Exception as ex:  # never break the render
        tell(f"frame {frame}: not refined: {first_sentence(ex)}")
    finally:
        passnode.discard_frame(scene.name, frame)  # read or moved by now unless not refined


def _refine_written_frame(scene, frame: int) -> None:
    path = pipeline.written_frame_path(scene, job.since, job.before)
    if path is None:
        raise pipeline.RefineError("the written frame file was not found")
    freestyle = None
    if passnode.folder_of(scene.name):
        freestyle = passnode.read_pass_file(passnode.frame_pass_file(scene.name, frame))
    try:
        client = session.get_client(get_prefs())
        pipeline.refine_frame_sync(scene, client, path, freestyle, frame)
    except WorkerStartError as ex:
        _refuse(f"the worker could not start ({first_sentence(ex)})")


@persistent
def on_render_complete(scene, *args) -> None:
    _finish(scene, completed=True)


@persistent
def on_render_cancel(scene, *args) -> None:
    _finish(scene, completed=False)


def _finish(scene, completed: bool) -> None:
    auto, frames = job.auto and not job.refused, job.frames
    background = background_mode()
    job.reset()
    if background:
        passnode.remove()
    elif not frames:
        passnode.discard_frame(scene.name, scene.frame_current)  # a still's pass: never read
    if not auto or frames or not completed:
        return
    # A still render that wrote no file: refine it into the result images.
    if not background:
        framequeue.record_still(scene)
        return
    try:
        client = session.get_client(get_prefs())
        t0 = time.monotonic()
        pipeline.refine_still_sync(bpy.context, scene, client, show=False)
        log(f"refined the render in {time.monotonic() - t0:.2f} s")
    except Exception as ex:
        tell(f"render not refined: {first_sentence(ex)}")


@persistent
def on_load_pre(*args) -> None:
    """Another file is loading: what the old one queued cannot be written into it."""
    framequeue.clear("a file is being loaded")
    passnode.remove()
    notice.set("")  # the panel's notice was about the old file's renders
    baked_problem["text"] = ""  # and so was a baked render's problem


@persistent
def on_emptied(*args) -> None:
    """After a file loads, an undo or a redo: result images left without pixels go."""
    try:
        pipeline.drop_emptied_results()
    except Exception as ex:  # never break loading or undo
        log(f"could not drop an emptied result image ({ex})")


@persistent
def on_load_post(*args) -> None:
    """After a file loads: result images left without pixels go, and a Thick-Thin saved before
    the style had its own (set, with no checkbox saved beside it) keeps being used."""
    on_emptied()
    for scene in bpy.data.scenes:
        settings = getattr(scene, "linerelifer", None)
        if settings is not None and settings.is_property_set("thick_thin") \
                and not settings.is_property_set("use_thick_thin"):
            settings.use_thick_thin = True


@persistent
def on_save_pre(*args) -> None:
    """The pass node is the extension's, never the file's (the UI timer puts it back)."""
    if render_given_up():
        framequeue.forget_given_up_render()
    if not job.running:
        passnode.remove()


_HANDLERS = (
    ("render_init", on_render_init),
    ("render_pre", on_render_pre),
    ("render_write", on_render_write),
    ("render_complete", on_render_complete),
    ("render_cancel", on_render_cancel),
    ("load_pre", on_load_pre),
    ("load_post", on_load_post),
    ("undo_post", on_emptied),
    ("redo_post", on_emptied),
    ("save_pre", on_save_pre),
)


def _same(h, fn) -> bool:
    return h is fn or (getattr(h, "__name__", "") == fn.__name__
                       and getattr(h, "__module__", "") == fn.__module__)


def register() -> None:
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):  # stale copies (e.g. after a reload)
            if _same(h, fn):
                lst.remove(h)
        lst.append(fn)
    framequeue.register()


def unregister() -> None:
    for name, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, name)
        for h in list(lst):
            if _same(h, fn):
                lst.remove(h)
    framequeue.unregister()
    passnode.remove()
    job.reset()
