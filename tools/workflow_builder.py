"""Build UI-format ComfyUI workflow JSON (what ComfyUI's "Save" writes) from a compact graph description.

Used to write the shipped files in ``workflows/``; run ``python tools/make_workflows.py`` after editing.
Only the structure ComfyUI needs is produced: nodes (id, type, pos, size, mode, inputs, outputs,
widgets_values, properties) and links ``[link_id, from_node, from_slot, to_node, to_slot, type]``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    outputs: list[tuple[str, str]]  # (name, type) per output slot
    widgets: list = field(default_factory=list)  # widget values in the node's widget order
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of socket inputs, in order
    size: tuple[int, int] = (320, 130)
    title: str | None = None


class Graph:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.links: list[list] = []

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def link(self, src: Node, src_slot: int, dst: Node, input_name: str) -> None:
        dst_slot = [n for n, _ in dst.inputs].index(input_name)
        link_type = src.outputs[src_slot][1]
        self.links.append([len(self.links) + 1, src.id, src_slot, dst.id, dst_slot, link_type])

    def to_json(self, seed_text: str) -> dict:
        nodes = []
        for order, n in enumerate(self.nodes):
            inputs = []
            for slot, (name, typ) in enumerate(n.inputs):
                link = next((lk[0] for lk in self.links if lk[3] == n.id and lk[4] == slot), None)
                inputs.append({"name": name, "type": typ, "link": link})
            outputs = []
            for slot, (name, typ) in enumerate(n.outputs):
                links = [lk[0] for lk in self.links if lk[1] == n.id and lk[2] == slot]
                outputs.append({"name": name, "type": typ, "slot_index": slot, "links": links})
            entry = {
                "id": n.id,
                "type": n.type,
                "pos": list(n.pos),
                "size": list(n.size),
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": inputs,
                "outputs": outputs,
                "properties": {"Node name for S&R": n.type},
                "widgets_values": list(n.widgets),
            }
            if n.title:
                entry["title"] = n.title
            nodes.append(entry)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "mdim-workflow:" + seed_text)),
            "revision": 0,
            "last_node_id": max(n.id for n in self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(path.name), indent=2) + "\n", encoding="utf-8")
