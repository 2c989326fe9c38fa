"""Background renders: a File Output node that writes the Freestyle pass of every frame.

``blender -b file.blend -a`` (what farms run) calls RE_RenderAnim directly and never
creates the "Render Result" image, so the pass cannot be saved from it.  Instead,
``render_init`` (main thread in background mode, and run before Blender copies the render
settings) adds a File Output node fed by the Render Layers node's Freestyle output, writing
each frame's pass as an EXR into a private temp folder; ``render_write`` reads the file of
the frame just written; ``render_complete``/``render_cancel`` remove the node, the compositor
tree if it was made here, and the folder.  Only the node and what it needs are added: the
scene's own output is composited exactly as before.  What was added is remembered by the
scene's ``session_uid`` and node names, never as Python references to Blender data, which an
undo step frees under the UI's timer.

Blender 5.0: ``scene.compositing_node_group`` (made here when the scene has none, passing the
render through), File Output ``directory``/``file_name``/``file_output_items``.
Blender 4.x: ``scene.use_nodes`` + ``scene.node_tree``, File Output ``base_path``/``file_slots``.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile

import bpy
import numpy as np

from . import exr
from .nodes import compositor_tree
from .common import IS_5

NODE_NAME = "LineRelifer Freestyle Pass"
_TREE_NAME = ".LineRelifer Compositor"
_FILE_STEM = "freestyle_"

# What was added, per scene name (main thread only).
_added: dict[str, dict] = {}


class PassNodeError(RuntimeError):
    """The pass cannot be written by a File Output node (one sentence for the log)."""


def freestyle_view_layer(scene):
    """The first rendered view layer drawing Freestyle as a pass, or None."""
    for vl in scene.view_layers:
        if vl.use and vl.use_freestyle and vl.freestyle_settings.as_render_pass:
            return vl
    return None


# Nodes a compositor may hold and still pass the render through (4.5's default tree: Render
# Layers -> Reroute -> Composite and Viewer; the 5.0 tree made here: Render Layers -> Group
# Output). A tree with any other node is the user's work.
_PASS_THROUGH = {"CompositorNodeRLayers", "CompositorNodeComposite", "CompositorNodeViewer", "NodeReroute",
                 "NodeFrame", "NodeGroupOutput"}


def _only_passes_through(tree) -> bool:
    return all(n.bl_idname in _PASS_THROUGH or n.name.startswith(NODE_NAME) for n in tree.nodes)


def _tree_for(scene):
    """The compositor tree to add the node to, making one that passes the render through
    when the scene has none; returns (tree, made): what was made here, for _remove to undo
    ("group", "use_nodes", or None)."""
    if IS_5:
        tree = scene.compositing_node_group
        if tree is not None:
            return tree, None
        tree = bpy.data.node_groups.new(_TREE_NAME, "CompositorNodeTree")
        rl = tree.nodes.new("CompositorNodeRLayers")
        rl.scene = scene
        out = tree.nodes.new("NodeGroupOutput")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        tree.links.new(rl.outputs["Image"], out.inputs[0])
        scene.compositing_node_group = tree
        return tree, "group"
    # Blender 4.x: switching the compositor on makes (or reuses) the scene's embedded tree,
    # by default Render Layers -> Composite, which passes the render through.
    if scene.use_nodes and scene.node_tree is not None:
        return scene.node_tree, None
    tree = scene.node_tree
    if tree is not None and not _only_passes_through(tree):
        # Switching it on would bring back the effects the user switched off.
        raise PassNodeError(f"the scene {scene.name} has compositor nodes with Use Nodes off; turn "
                            "Use Nodes on in the Compositor, or delete those nodes, so the "
                            "Freestyle pass can be written")
    scene.use_nodes = True
    tree = scene.node_tree
    if not any(n.bl_idname == "CompositorNodeComposite" for n in tree.nodes):
        rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None) \
            or tree.nodes.new("CompositorNodeRLayers")
        comp = tree.nodes.new("CompositorNodeComposite")
        tree.links.new(rl.outputs["Image"], comp.inputs["Image"])
    return tree, "use_nodes"


def add(scene) -> str:
    """Add the node to ``scene``'s compositor; returns the folder it writes to."""
    remove(scene.name)
    vl = freestyle_view_layer(scene)
    if vl is None:
        raise PassNodeError("no view layer renders Freestyle as a pass")
    if not scene.render.use_compositing:
        raise PassNodeError("Compositing is off in Output Properties > Post Processing; turn it on "
                            "so the Freestyle pass can be written")
    tree, made = _tree_for(scene)
    folder = tempfile.mkdtemp(prefix="linerelifer-pass-")
    for stale in [n for n in tree.nodes if n.name.startswith(NODE_NAME)]:
        tree.nodes.remove(stale)  # saved by a session that ended before it could take them out
    info = dict(scene=scene.session_uid, tree=tree.session_uid, nodes=[], made=made, folder=folder)
    _added[scene.name] = info
    try:
        rl = tree.nodes.new("CompositorNodeRLayers")
        rl.scene = scene
        rl.layer = vl.name
        rl.name = NODE_NAME + " Source"
        info["nodes"].append(rl.name)
        node = tree.nodes.new("CompositorNodeOutputFile")
        node.name = node.label = NODE_NAME
        info["nodes"].append(node.name)
        fmt = node.format
        if hasattr(fmt, "media_type"):
            fmt.media_type = "IMAGE"
        fmt.file_format = "OPEN_EXR"
        fmt.color_mode = "RGBA"
        fmt.color_depth = "32"
        fmt.exr_codec = "NONE"
        if IS_5:
            node.directory = folder + os.sep
            node.file_name = _FILE_STEM
            node.file_output_items.new("RGBA", "Freestyle")
        else:
            node.base_path = folder + os.sep
            node.file_slots[0].path = _FILE_STEM + "Freestyle"
        socket = rl.outputs.get("Freestyle")
        if socket is None:
            raise PassNodeError(f"the view layer {vl.name} has no Freestyle output")
        tree.links.new(socket, node.inputs[0])
    except Exception:
        remove(scene.name)
        raise
    return folder


def remove(scene_name: str | None = None) -> None:
    """Take out what :func:`add` put in (all scenes without a name); idempotent."""
    for name in ([scene_name] if scene_name is not None else list(_added)):
        info = _added.pop(name, None)
        if info is not None:
            _remove(**info)


def _by_uid(collection, uid):
    return next((item for item in collection if item.session_uid == uid), None)


def _remove(scene, tree, nodes, made, folder) -> None:
    """Looks everything up again (the scene may have been renamed, deleted or undone, another
    group assigned), and undoes what _tree_for made only while the tree still just passes the
    render through: nodes the user has added since make it theirs, and it stays on."""
    scene = _by_uid(bpy.data.scenes, scene)
    if IS_5:
        tree = _by_uid(bpy.data.node_groups, tree)
    else:  # 4.x: the scene's own embedded tree
        tree = _by_uid([scene.node_tree] if scene is not None and scene.node_tree else [], tree)
    for name in nodes if tree is not None else ():
        node = tree.nodes.get(name)
        if node is not None:
            tree.nodes.remove(node)
    if tree is not None and _only_passes_through(tree):
        if made == "use_nodes" and scene is not None:
            scene.use_nodes = False
        elif made == "group":
            if scene is not None and scene.compositing_node_group == tree:
                scene.compositing_node_group = None
            if tree.users == 0:
                bpy.data.node_groups.remove(tree)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@atexit.register
def _remove_folders() -> None:
    """Blender quits without unregistering: at least leave no folders in the temp folder."""
    for info in _added.values():
        shutil.rmtree(info["folder"], ignore_errors=True)


def folder_of(scene_name: str) -> str | None:
    """The folder the scene's node writes to, or None without a node (plain Python: the
    render thread may call it)."""
    info = _added.get(scene_name)
    return info["folder"] if info else None


def frame_pass_file(scene_name: str, frame: int) -> str:
    """The pass file the node wrote for ``frame`` (no bpy: safe on the render thread)."""
    folder = folder_of(scene_name)
    if not folder:
        raise PassNodeError("the Freestyle pass node was not set up for this render")
    digits = f"{frame:04d}" if frame >= 0 else f"-{-frame:03d}"
    # The node follows the scene's File Extensions setting, and Blender 5.0 names a still's
    # file without a frame number; the folder holds only this render's passes.
    files = sorted(glob.glob(os.path.join(glob.escape(folder), f"{_FILE_STEM}*")))
    names = {p: _without_exr(os.path.basename(p)) for p in files}
    found = [p for p in files if names[p].endswith(digits)]
    if not found:
        unnumbered = [p for p in files if not names[p][-1:].isdigit()]
        found = unnumbered if len(unnumbered) == 1 else []
    if not found:
        raise PassNodeError(f"the Freestyle pass of frame {frame} was not written")
    return found[-1]


def _without_exr(name: str) -> str:
    return name[:-4] if name.lower().endswith(".exr") else name


def discard_frame(scene_name: str, frame: int) -> None:
    """Delete the pass file of a frame nothing will refine (no bpy: safe on the render
    thread), so that a long render that is not refined leaves no file per frame."""
    try:
        os.unlink(frame_pass_file(scene_name, frame))
    except (PassNodeError, OSError):
        pass


def read_pass_file(path: str, delete: bool = True) -> np.ndarray:
    """A pass file: (H, W, 4) premultiplied linear float32, top row first."""
    found = [path]
    try:
        ch = exr.read_exr(path)
    except exr.ExrError as ex:
        raise PassNodeError(f"the Freestyle pass {path} could not be read ({ex})") from None
    finally:
        for p in found if delete else ():
            try:
                os.unlink(p)
            except OSError:
                pass
    if not all(c in ch for c in "RGBA"):
        raise PassNodeError(f"the Freestyle pass {path} lacks RGBA channels")
    return np.stack([ch["R"], ch["G"], ch["B"], ch["A"]], axis=-1)


def wanted(scene) -> bool:
    """Whether auto-refine needs the node in ``scene`` (pass on, auto-refine on)."""
    settings = getattr(scene, "linerelifer", None)
    return bool(settings is not None and settings.auto_refine and freestyle_view_layer(scene) is not None
                and scene.render.use_compositing)


def sync_all() -> dict[str, str]:
    """UI, main thread, no render running: the node is in every scene that wants it and in
    no other (auto-refine or the pass switched, scenes renamed or deleted). Returns why it
    could not be added, per scene name: one scene's problem does not hold up the others."""
    present = {s.name: s for s in bpy.data.scenes}
    for name in list(_added):
        scene = present.get(name)
        if scene is None or not wanted(scene) or not _intact(name):
            remove(name)
    problems = {}
    for name, scene in present.items():
        if name not in _added and wanted(scene):
            try:
                add(scene)
            except Exception as ex:  # noqa: BLE001 - told once by the timer, retried
                problems[name] = str(ex)
    return problems


def _intact(name: str) -> bool:
    info = _added[name]
    scene = bpy.data.scenes.get(name)
    tree = None
    if scene is not None and scene.session_uid == info["scene"]:
        tree = compositor_tree(scene)  # 4.x: None once Use Nodes is switched off
    return (tree is not None and tree.session_uid == info["tree"]
            and all(tree.nodes.get(n) is not None for n in info["nodes"]))
