"""What is running now: plain Python flags shared by operators, panels and handlers.

No bpy here: the render handlers set these from the render thread, the panels read them
while drawing, and neither may touch Blender data to do it.
"""

from __future__ import annotations

# Which long operations are running (one of each at a time).
busy = {"refine": False, "probe": False}

# Why the latest refinement of baked lines was refused (shown beside the pass button).
baked_problem = {"text": ""}


class RenderJob:
    """The render in progress, as the handlers saw it (set from whichever thread runs them)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, running: bool = False, auto: bool = False, since: float = 0.0) -> None:
        self.running = running  # a render job is running: Refine Lines waits
        self.auto = auto  # auto-refine is on for it
        self.since = since  # wall-clock start, to tell the frames it wrote
        self.frames = 0  # frames written so far
        self.started = False  # a frame began rendering (render_pre)
        self.before: dict = {}  # the current frame's possible files' stamps at render_pre
        self.refused: str | None = None  # why auto-refine gave up on this job (logged once)

    def given_up(self, background: bool, blender_rendering: bool) -> bool:
        """render_init came but Blender gave the render up before it ran (image too small, no
        camera) and sends neither render_complete nor render_cancel: the job is not running.

        In the UI a render is Blender's RENDER job; in the background the render runs inside the
        caller, so a job that never began a frame and is asked about is one that ended."""
        if not self.running:
            return False
        return not self.started if background else not blender_rendering


render = RenderJob()


class Notice:
    """The latest thing auto-refine could not do, for the panels: in the UI its log line goes
    to a terminal the user may never see."""

    def __init__(self) -> None:
        self.text = ""
        self._shown = ""

    def set(self, text: str) -> None:
        self.text = text

    def unshown(self) -> bool:
        """Whether the text changed since the last call (the panels need a redraw)."""
        changed, self._shown = self.text != self._shown, self.text
        return changed


notice = Notice()
