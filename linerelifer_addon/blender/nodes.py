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


def attach_lines_image(scene, image):
    """Add (or update) an Image node labelled LineRelifer that holds the
    refined line layer, next to the Render Layers node.  It is left
    unconnected: wiring it in place of the Freestyle pass is the user's
    choice (a connected still image would otherwise be composited into every
    later frame).  Returns the node, or None without a compositor."""
    tree = compositor_tree(scene)
    if tree is None:
        return None
    node = find_lines_node(tree)
    if node is None:
        node = tree.nodes.new("CompositorNodeImage")
        node.name = NODE_NAME
        node.label = NODE_LABEL
        rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
        if rl is not None:
            node.location = (rl.location.x, rl.location.y - rl.dimensions.y - 120.0)
    node.image = image
    return node
