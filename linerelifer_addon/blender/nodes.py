"""Compositor helpers (Blender 4.x and 5.x differ here; see also capture.py).

Blender 5.0: the compositor tree is ``scene.compositing_node_group`` (a
CompositorNodeTree ending in a Group Output).  Blender 4.x:
``scene.use_nodes`` + ``scene.node_tree`` ending in a Composite node.
"""

from __future__ import annotations

from .common import IS_5 as _IS_5, NODE_LABEL, NODE_NAME


def compositor_tree(scene):
    """The scene's compositor node tree when the compositor is in use, else None."""
    if _IS_5:
        return getattr(scene, "compositing_node_group", None)
    # Blender 4.x
    if getattr(scene, "use_nodes", False):
        return scene.node_tree
    return None


def find_lines_node(tree):
    node = tree.nodes.get(NODE_NAME)
    if node is not None and node.bl_idname == "CompositorNodeImage":
        return node
    for node in tree.nodes:
        if node.bl_idname == "CompositorNodeImage" and node.label == NODE_LABEL:
            return node
    return None


def remove_lines_node(scene) -> bool:
    """Remove the Image node earlier versions added (an unpacked generated image: wired in,
    it stamped stale lines on later frames and reopened as opaque black)."""
    tree = compositor_tree(scene)
    node = find_lines_node(tree) if tree is not None else None
    if node is None:
        return False
    tree.nodes.remove(node)
    return True
