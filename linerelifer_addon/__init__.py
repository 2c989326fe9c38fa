"""LineRelifer: hand-drawn-looking Freestyle lines.

Importing the package touches neither bpy nor TensorFlow: the CLI and the worker import it
outside Blender, and Blender calls register() to load the bpy layer.
"""


def register() -> None:
    from .blender import register as _register

    _register()


def unregister() -> None:
    from .blender import unregister as _unregister

    _unregister()
