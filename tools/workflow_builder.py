"""Build UI-format ComfyUI workflow JSON (what ComfyUI's "Save" writes) from a compact graph description.

Used by every ``tools/make_*workflows.py`` to write the shipped files in ``workflows/``; run them after
editing. Only the structure ComfyUI needs is produced: nodes (id, type, pos, size, mode, inputs, outputs,
widgets_values, properties) and links ``[link_id, from_node, from_slot, to_node, to_slot, type]``.

Generators describe nodes and links only: :meth:`Graph.to_json` lays the graph out itself (:func:`layout`),
so no two nodes overlap in the ComfyUI frontends the pack supports (1.35 with ComfyUI 0.8.0, 1.45 with
0.28.0), whether nodes are drawn classically or as "Nodes 2.0", and with advanced inputs shown.
``tools/check_workflow_layout.py`` checks that in a real browser.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Node:
    """One node. ``pos`` is ignored (:func:`layout` places every node); ``size`` is a minimum, if given."""

    id: int
    type: str
    pos: tuple[int, int] | None
    outputs: list[tuple[str, str]]  # (name, type) per output slot
    widgets: list = field(default_factory=list)  # widget values in the node's widget order
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of socket inputs, in order
    size: tuple[int, int] | None = None
    title: str | None = None


# --------------------------------------------------------------------------- size estimates
#
# Measured in the frontends (node.computeSize() and the rendered size): the classic canvas draws a title bar
# of 30 px above ``pos``, 20 px per socket row and 24 px per widget; "Nodes 2.0" (1.45, optional) draws
# widgets about 28-40 px high and grows a node to its content. A node is saved at the classic size
# (``drawn_size``, never smaller than its content there) and the layout reserves the larger "Nodes 2.0"
# height with every widget shown (``reserved_height``), so a node that grows never reaches the next one.

TITLE_HEIGHT = 40  # the title bar sits above pos: 30 px in both frontends, counted generously
SOCKET_ROW, WIDGET_ROW, PADDING = 22, 26, 24  # drawn size (classic canvas)
RESERVED_SOCKET_ROW, RESERVED_WIDGET_ROW, RESERVED_PADDING = 26, 40, 40  # layout space (any mode)
MIN_WIDTH = 320
CHAR_WIDTH = 9  # title and widget label text, px per character (generous for the default font)
#: body height added for what a node draws besides sockets and widgets: image previews, text boxes
EXTRA_HEIGHT = {"LoadImage": 300, "SaveImage": 360, "PreviewImage": 360, "CLIPTextEncode": 90}
COLUMN_GAP, ROW_GAP, MARGIN = 80, 40, 40


def _rows(node: Node) -> tuple[int, int]:
    return max(len(node.inputs), len(node.outputs)), len(node.widgets)


def drawn_size(node: Node) -> tuple[int, int]:
    """The size saved in the file: what the classic canvas needs (width from the title), or ``node.size`` if larger."""
    sockets, widgets = _rows(node)
    title = node.title or node.type
    width = max(MIN_WIDTH, CHAR_WIDTH * len(title) + 80)
    height = sockets * SOCKET_ROW + widgets * WIDGET_ROW + PADDING + EXTRA_HEIGHT.get(node.type, 0)
    if node.size:
        width, height = max(width, node.size[0]), max(height, node.size[1])
    return int(width), int(height)


def reserved_height(node: Node) -> int:
    """Height the layout keeps free for a node's body: every widget shown, at the tallest widget style."""
    sockets, widgets = _rows(node)
    grown = (sockets * RESERVED_SOCKET_ROW + widgets * RESERVED_WIDGET_ROW + RESERVED_PADDING
             + EXTRA_HEIGHT.get(node.type, 0))
    return max(grown, drawn_size(node)[1])


# --------------------------------------------------------------------------- layout


def layout(nodes: list[Node], links: list[list]) -> dict[int, tuple[int, int]]:
    """``{node id: (x, y)}``: columns by graph depth, nodes stacked in each column.

    A node's column is one right of its deepest input (sources without inputs sit just left of their first
    consumer); within a column nodes are ordered by the mean height of the nodes feeding them (nodes
    without inputs last), then by the order they were added. Columns are as wide as their widest node;
    each node gets its reserved height plus the title bar and a gap, so nothing overlaps however the
    frontend grows it.
    """
    ids = [n.id for n in nodes]
    by_id = {n.id: n for n in nodes}
    preds: dict[int, set[int]] = {i: set() for i in ids}
    succs: dict[int, set[int]] = {i: set() for i in ids}
    for _, src, _, dst, _, _ in links:
        preds[dst].add(src)
        succs[src].add(dst)

    depth: dict[int, int] = {}

    def visit(i: int, stack: frozenset = frozenset()) -> int:
        if i in stack:
            raise ValueError(f"node {i} is part of a cycle; a workflow must be a DAG")
        if i not in depth:
            depth[i] = 1 + max((visit(p, stack | {i}) for p in preds[i]), default=-1)
        return depth[i]

    for i in ids:
        visit(i)
    for i in ids:  # sources move next to their first consumer
        if not preds[i] and succs[i]:
            depth[i] = max(0, min(depth[s] for s in succs[i]) - 1)

    columns: dict[int, list[int]] = {}
    for i in ids:
        columns.setdefault(depth[i], []).append(i)
    order = {i: k for k, i in enumerate(ids)}
    positions: dict[int, tuple[int, int]] = {}
    x = MARGIN
    for c in sorted(columns):

        def key(i: int) -> tuple[float, int]:
            near = [positions[j][1] + reserved_height(by_id[j]) / 2 for j in preds[i]]
            return (sum(near) / len(near) if near else float("inf"), order[i])

        y = MARGIN + TITLE_HEIGHT
        for i in sorted(columns[c], key=key):
            positions[i] = (x, y)
            y += reserved_height(by_id[i]) + TITLE_HEIGHT + ROW_GAP
        x += max(drawn_size(by_id[i])[0] for i in columns[c]) + COLUMN_GAP
    return positions


# --------------------------------------------------------------------------- graph


class Graph:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.links: list[list] = []

    def add(self, node: Node) -> Node:
        if any(n.id == node.id for n in self.nodes):
            raise ValueError(f"node id {node.id} is used twice")
        self.nodes.append(node)
        return node

    def link(self, src: Node, src_slot: int, dst: Node, input_name: str) -> None:
        dst_slot = [n for n, _ in dst.inputs].index(input_name)
        link_type = src.outputs[src_slot][1]
        self.links.append([len(self.links) + 1, src.id, src_slot, dst.id, dst_slot, link_type])

    def to_json(self, seed_text: str) -> dict:
        positions = layout(self.nodes, self.links)
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
                "pos": list(positions[n.id]),
                "size": list(drawn_size(n)),
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
            "extra": {"ds": _view(nodes)},
            "version": 0.4,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(path.name), indent=2) + "\n", encoding="utf-8")


def _view(nodes: list[dict], viewport: tuple[int, int] = (1600, 860)) -> dict:
    """The editor's initial view: the whole graph fits a 1600x860 canvas (a 1080p window minus the menus)."""
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes) + MARGIN
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes) + MARGIN
    scale = round(min(1.0, viewport[0] / x1, viewport[1] / y1), 2)
    return {"scale": scale, "offset": [0, 0]}
