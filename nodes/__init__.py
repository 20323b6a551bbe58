"""ComfyUI adapter of MDIM: declares the nodes and translates host objects into mdim_core calls.

This is the only package that imports ``comfy*``. Each node module exports ``NODES``
(a list of ``io.ComfyNode`` classes). A module whose optional dependency is missing is
skipped with one log line; the rest of the pack still loads.
"""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io

log = logging.getLogger("MDIM")

# Node modules, in menu order. Each one exports NODES.
NODE_MODULES = (
    "schedule_nodes",
    "symvae_nodes",
    "sgim_nodes",
    "restore_nodes",
    "textmask_nodes",
    "detector_nodes",
    "lama_nodes",
    "harmonize_nodes",
    "repaint_nodes",
    "outpaint_nodes",
)


def load_node_classes() -> list[type[io.ComfyNode]]:
    classes: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ImportError as exc:  # an optional dependency is missing
            log.warning("[MDIM] nodes of %s are disabled: %s (pip install -r requirements.txt)", name, exc)
            continue
        classes.extend(module.NODES)
    return classes


class MDIMExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return load_node_classes()
