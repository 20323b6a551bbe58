"""ComfyUI-MDIM: manga inpainting and restoration nodes for ComfyUI.

ComfyUI imports this file when it loads the pack. It stays import-light: the node
modules (and their optional dependencies) are imported only when ComfyUI asks for the
node list, and a missing dependency disables only the nodes that need it.
"""

# ComfyUI serves this folder under /extensions/<pack folder>/; the frontend shows web/docs/<node_id>.md
# as each node's help page (node library and help panel).
WEB_DIRECTORY = "./web"

# ComfyUI 0.8.0 registers V3 nodes through this coroutine. Do not also define
# NODE_CLASS_MAPPINGS here: when both exist the loader registers only the V1 ones.


async def comfy_entrypoint():
    from .nodes import MDIMExtension

    return MDIMExtension()
