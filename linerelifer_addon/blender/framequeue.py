"""UI renders: what the render handlers recorded, and the main-thread timer that refines it.

The handlers run on the render thread in the UI, where Blender data must not be written
and timers must not be registered.  So they only append a record here (plain Python, under
a lock): the frame number, the file Blender wrote and the Freestyle pass file the
extension's File Output node wrote (:mod:`.passnode`) -- paths, never pixels.  One timer,
registered at register() on the main thread and persistent across file loads, refines the
records one at a time: it loads one frame, runs the worker on a thread, writes the result.
So whatever the length of the animation, at most one frame's arrays are held (the frame,
its pass and the refined coverage); the rest waits on disk, in the queue's own folder: the
pass node's folder goes when the node does (file saved, auto-refine switched off).
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import bpy

from ..core.client import WorkerStartError
from . import passnode, pipeline, session
from .common import blender_rendering, first_sentence, get_prefs, log, render_given_up, tell
from .state import notice
from .state import render as render_job

IDLE_INTERVAL = 0.5
BUSY_INTERVAL = 0.1


@dataclass(frozen=True)
class Record:
    """A frame written by a UI render (or, with frame None, a still render finished)."""

    scene_name: str
    frame: int | None
    frame_path: str = ""
    pass_path: str = ""  # empty: the lines are baked into the frame
    queued: float = 0.0
    render: float = 0.0  # the render job it belongs to (its start time)
    stamp: tuple[int, int] | None = None  # the frame file's (mtime ns, size) as Blender wrote it


_lock = threading.Lock()
_pending: collections.deque[Record] = collections.deque()
_current: dict = {}  # the record being refined: record, job, thread, error, cancel
_given_up: set[float] = set()  # render jobs whose worker could not start
_node_problems: dict[str, str] = {}  # per scene name: why the pass node is not in place (logged once)
_spill: dict = {}  # folder: the queue's own folder for the pass files it holds; n: files moved in


def record_frame(scene, frame: int, since: float, before: dict | None = None) -> None:
    """Render thread: note the frame Blender just wrote (reads only; no Blender writes)."""
    path = pipeline.written_frame_path(scene, since, before)
    if path is None:
        raise pipeline.RefineError("the written frame file was not found")
    pass_path = ""
    if passnode.folder_of(scene.name):
        pass_path = _claim(passnode.frame_pass_file(scene.name, frame))
    elif pipeline.freestyle_pass_enabled(scene):
        raise pipeline.RefineError("the Freestyle pass was not written; turn on Compositing in "
                                   "Output Properties > Post Processing")
    with _lock:
        _pending.append(Record(scene.name, frame, path, pass_path, time.monotonic(), since,
                               pipeline.file_stamp(path)))


def _rewritten(record: Record) -> bool:
    """The frame file is no longer what Blender wrote for this record: a later render wrote
    the same file again (its own record refines it), and refining or replacing it here would
    refine that render's frame twice."""
    return record.stamp is not None and pipeline.file_stamp(record.frame_path) != record.stamp


_REWRITTEN = "a later render wrote the file again, and that render's frame is refined instead"


def _claim(path: str) -> str:
    """Move a pass file into the queue's own folder (plain Python: render thread)."""
    with _lock:
        folder = _spill.get("folder")
        if folder is None or not os.path.isdir(folder):
            folder = _spill["folder"] = tempfile.mkdtemp(prefix="linerelifer-queue-")
        _spill["n"] = n = _spill.get("n", 0) + 1
    dst = os.path.join(folder, f"{n:06d}_{os.path.basename(path)}")
    os.replace(path, dst)
    return dst


def node_problem(scene_name: str) -> str:
    """Why the timer could not put the scene's pass node in place ('' when it could)."""
    return _node_problems.get(scene_name, "")


def record_still(scene) -> None:
    """Render thread: a still render finished without writing a file."""
    with _lock:
        _pending.append(Record(scene.name, None, queued=time.monotonic()))


def pending() -> list[Record]:
    with _lock:
        return list(_pending)


def arrays_held() -> int:
    """How many frames' pixel arrays this queue holds now (0 or 1)."""
    return 1 if _current.get("job") is not None else 0


def clear(reason: str) -> int:
    """Drop everything queued (and cancel the frame being refined); one log line."""
    with _lock:
        dropped = list(_pending)
        _pending.clear()
    cur = dict(_current)
    _current.clear()
    if cur.get("cancel") is not None:
        cur["cancel"].set()
    if cur.get("job") is not None:
        pipeline.release_frame(cur["job"])
    frames = [r.frame for r in dropped if r.frame is not None]
    if cur.get("record") is not None and cur["record"].frame is not None:
        frames.insert(0, cur["record"].frame)
    for r in dropped:
        _unlink(r.pass_path)
    if frames or any(r.frame is None for r in dropped):
        what = f"frames {', '.join(map(str, frames))}" if frames else "a still render"
        tell(f"{reason}: dropped {what} not yet refined")
    return len(frames)


def _unlink(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def pump() -> float:
    """The main-thread timer: keep the pass nodes in place, refine one record at a time."""
    try:
        return _pump()
    except Exception as ex:  # a timer that raises is dropped by Blender: log and go on
        tell(f"auto-refine: {first_sentence(ex)}")
        return IDLE_INTERVAL


def _pump() -> float:
    if notice.unshown():
        _redraw_panels()
    if render_given_up():
        forget_given_up_render()
    if not render_job.running and not blender_rendering():
        problems = {name: first_sentence(text) for name, text in passnode.sync_all().items()}
        for name, text in problems.items():
            if _node_problems.get(name) != text:  # the timer retries; the log says it once
                tell(_setup_failed(text))
        if notice.text in {_setup_failed(t) for name, t in _node_problems.items() if name not in problems}:
            notice.set("")  # solved: the panel no longer asks for it
        _node_problems.clear()
        _node_problems.update(problems)
    cur = _current.get("thread")
    if cur is not None:
        if cur.is_alive():
            return BUSY_INTERVAL
        _finish_current()
    with _lock:
        record = _pending.popleft() if _pending else None
    if record is None:
        return IDLE_INTERVAL
    if record.render in _given_up:
        _unlink(record.pass_path)  # said once already
        return BUSY_INTERVAL
    if record.frame is None:
        _refine_still(record)
    else:
        _start(record)
    return BUSY_INTERVAL


def forget_given_up_render() -> None:
    """Blender gave a render up after render_init: what render_init set up goes, and Refine
    Lines no longer waits for it."""
    render_job.reset()
    passnode.remove()


def _setup_failed(problem: str) -> str:
    return f"the Freestyle pass node could not be set up: {problem}"


def _redraw_panels() -> None:
    """Show a new notice in the panels now, not at the next mouse move."""
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas if window.screen else ():
            if area.type in ("PROPERTIES", "IMAGE_EDITOR"):
                area.tag_redraw()


def _refine_still(record: Record) -> None:
    # Refine Lines waits while a render or another refinement runs (its poll says which);
    # Blender may still call the render job running just after render_complete.
    if render_job.running or not bpy.ops.linerelifer.refine_lines.poll():
        with _lock:
            _pending.appendleft(record)
        return
    wm = bpy.context.window_manager
    window = wm.windows[0] if wm and wm.windows else None
    try:
        if window is None:
            raise pipeline.RefineError("Blender has no window to show the refined render in")
        with bpy.context.temp_override(window=window, screen=window.screen):
            bpy.ops.linerelifer.refine_lines("INVOKE_DEFAULT")
    except Exception as ex:
        tell(f"render not refined: {first_sentence(ex)}")


def _start(record: Record) -> None:
    scene = bpy.data.scenes.get(record.scene_name)
    try:
        if scene is None:
            raise pipeline.RefineError(f"the scene {record.scene_name} is gone")
        if _rewritten(record):
            raise pipeline.RefineError(_REWRITTEN)
        freestyle = passnode.read_pass_file(record.pass_path) if record.pass_path else None
        job = pipeline.prepare_frame(scene, record.frame_path, freestyle, record.frame)
    except Exception as ex:
        _unlink(record.pass_path)
        tell(f"frame {record.frame}: not refined: {first_sentence(ex)}")
        return
    try:
        client = session.get_client(get_prefs())
    except WorkerStartError as ex:  # a bad worker setting: no frame of this render can run
        _give_up(record, job, ex)
        return
    cancel = threading.Event()
    outcome: dict = {"error": None}  # the thread's only write, read once it has ended
    cur = {"record": record, "job": job, "cancel": cancel, "outcome": outcome}

    def work():
        try:
            pipeline.run(job, client, cancel=cancel)
        except BaseException as ex:  # handed to the main thread
            outcome["error"] = ex

    cur["thread"] = threading.Thread(target=work, daemon=True)
    _current.update(cur)
    cur["thread"].start()


def _give_up(record: Record, job, err: Exception) -> None:
    """The worker cannot start: this frame and the render's later ones are not refined."""
    pipeline.release_frame(job)
    _unlink(record.pass_path)
    _given_up.add(record.render)
    tell(f"auto-refine stopped for this render: the worker could not start ({first_sentence(err)})")


def _finish_current() -> None:
    cur = dict(_current)
    _current.clear()
    record, job, err = cur["record"], cur["job"], cur["outcome"]["error"]
    if isinstance(err, WorkerStartError):
        _give_up(record, job, err)
        return
    if err is not None:
        pipeline.release_frame(job)
        tell(f"frame {record.frame}: not refined: {first_sentence(err)}")
        return
    try:
        scene = bpy.data.scenes.get(record.scene_name)
        if scene is None:
            raise pipeline.RefineError(f"the scene {record.scene_name} is gone")
        if _rewritten(record):
            raise pipeline.RefineError(_REWRITTEN)
        out = pipeline.finish_frame(job)
        dst = pipeline.write_frame(job, out, scene.linerelifer.output_mode)
        log(f"frame {record.frame}: {record.frame_path} -> {dst} ({time.monotonic() - record.queued:.2f} s)")
    except Exception as ex:
        pipeline.release_frame(job)
        tell(f"frame {record.frame}: not refined: {first_sentence(ex)}")


def drain(timeout: float = 120.0) -> None:
    """Run the timer until the queue is empty (what Blender's event loop does in the UI;
    for background tests and scripts, where timers never fire)."""
    end = time.monotonic() + timeout
    while (pending() or _current) and time.monotonic() < end:
        time.sleep(min(pump(), 0.05))


def register() -> None:
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=IDLE_INTERVAL, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)
    clear("LineRelifer was disabled")
    _remove_spill()


@atexit.register
def _remove_spill() -> None:
    folder = _spill.pop("folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
