"""What is running now: plain Python flags shared by operators, panels and handlers.

No bpy here: the render handlers set these from the render thread, the panels read them
while drawing, and neither may touch Blender data to do it.
"""

from __future__ import annotations

# Which long operations are running (one of each at a time).
busy = {"refine": False, "install": False, "probe": False}

# Shown in the preferences while an install runs.
install_state = {"running": False, "line": "", "error": "", "done": False}
