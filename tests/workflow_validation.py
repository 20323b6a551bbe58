"""Validate UI-format ComfyUI workflows against node schemas, and convert them to API prompts.

Pure Python (no comfy import): CI checks the shipped ``workflows/*.json`` with the recorded schemas of
every supported host: ``tests/data/comfyui_object_info_<version>.json`` (core ComfyUI) and
``tests/data/mdim_object_info_<version>.json`` (this pack, recorded from that live host by
``tests/integration/record_schema.py``), for ComfyUI 0.8.0 (the oldest supported) and 0.28.0 (the newest tested). The integration
tests convert the same files with :func:`ui_to_api` and run them on a real server.

UI format (what ComfyUI's "Save" writes): ``nodes`` (id, type, mode, inputs with ``link``, outputs
with ``links``, ``widgets_values``) and ``links`` ``[id, origin_id, origin_slot, target_id,
target_slot, type]``. Widget values follow the order of the node's widget inputs in its schema
(``input_order``: required, then optional). The editor adds values that are not inputs: the
"control_after_generate" choice after seed-like INT widgets and the upload button value after
file-upload combos; both are skipped here.

Shipped workflows are held to exact widget lists: the editor itself ignores extra trailing values
and gives missing trailing widgets their defaults, but either means the file was written for a
different node schema. Checked against the 148 templates without subgraphs that ship with the
0.8.0 editor: 112 validate and convert; the others were saved for other node versions (mostly API
nodes) or carry editor-only display values (GetImageSize, SaveGLB, LoadAudio).
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"
#: ComfyUI versions the pack supports and is tested on: the oldest and the newest
HOST_VERSIONS = ("0.8.0", "0.28.0")


def core_schema_path(version: str) -> Path:
    """Recorded ``/object_info`` of an unmodified ComfyUI ``version`` (core nodes only)."""
    return DATA_DIR / f"comfyui_object_info_{version}.json"


def mdim_schema_path(version: str) -> Path:
    """Recorded ``/object_info`` of this pack's nodes on ComfyUI ``version``."""
    return DATA_DIR / f"mdim_object_info_{version}.json"


def host_version(comfyui_dir) -> str:
    """The version of a ComfyUI source tree (its ``comfyui_version.py``)."""
    text = (Path(comfyui_dir) / "comfyui_version.py").read_text(encoding="utf-8")
    match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    if not match:
        raise ValueError(f"comfyui_dir: {comfyui_dir} has no __version__ in comfyui_version.py")
    return match.group(1)
# Folders ComfyUI 0.8.0 offers as a pack's workflow templates, in its order of preference.
TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "upload")
# Nodes that exist only in the editor: notes are dropped, reroutes and primitives are resolved.
NOTE_TYPES = {"Note", "MarkdownNote"}
VIRTUAL_TYPES = NOTE_TYPES | {"Reroute", "PrimitiveNode"}
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4
FILE_EXTENSIONS = re.compile(
    r"\.(safetensors|sft|ckpt|pt|pth|bin|gguf|onnx|yaml|json|png|jpe?g|webp|gif|bmp|tiff?|mp4|webm|mov|wav|flac|mp3|ogg)$",
    re.IGNORECASE,
)

FILE_INPUT_NAMES = re.compile(
    r"(ckpt|vae|lora|model|adapter|control_net|unet|clip\d?|clip_vision|upscale_model|style_model|gligen|"
    r"hypernetwork|embedding|audio_encoder|photomaker_model)_name\d*"
)


def shipped_workflows_dir(repo: Path = REPO_ROOT) -> Path:
    """The folder holding the pack's UI-format workflows (``example_workflows/`` or ``workflows/``)."""
    for name in ("example_workflows", "workflows"):
        if (repo / name).is_dir() and any((repo / name).glob("*.json")):
            return repo / name
    return repo / "workflows"


def shipped_workflows(repo: Path = REPO_ROOT) -> list[Path]:
    return sorted(shipped_workflows_dir(repo).glob("*.json"))


class WorkflowError(ValueError):
    """A workflow cannot be converted; the message lists every problem found."""


# --------------------------------------------------------------------------- schemas


def load_schema(*paths: Path) -> dict:
    """Merge object_info JSON files (later files win)."""
    merged: dict = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            merged.update(json.load(f))
    return merged


def load_default_schema(version: str = HOST_VERSIONS[0]) -> dict:
    """Core ComfyUI ``version`` plus this pack's schema recorded on it (if recorded yet)."""
    mdim = mdim_schema_path(version)
    return load_schema(core_schema_path(version), *([mdim] if mdim.is_file() else []))


def input_specs(node_info: dict) -> list[tuple[str, list, bool]]:
    """``[(name, spec, required)]`` of a node's inputs in the order the editor lays them out."""
    inputs = node_info.get("input", {})
    order = node_info.get("input_order", {})
    result = []
    for section in ("required", "optional"):
        declared = inputs.get(section, {}) or {}
        names = order.get(section) or list(declared)
        for name in names:
            if name in declared:
                result.append((name, declared[name], section == "required"))
    return result


def spec_type(spec) -> str:
    """``"COMBO"`` for option lists, else the declared type string (e.g. ``"INT"``, ``"IMAGE,MASK"``)."""
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return "COMBO" if isinstance(kind, list) else str(kind)


def spec_options(spec) -> dict:
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_values(spec) -> list:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if isinstance(kind, list):
        return kind
    return list(spec_options(spec).get("options", []))


def is_widget(spec) -> bool:
    options = spec_options(spec)
    return spec_type(spec) in WIDGET_TYPES and not options.get("forceInput", False)


def has_upload_button(spec) -> bool:
    options = spec_options(spec)
    return any(options.get(flag) for flag in UPLOAD_FLAGS)


def is_file_combo(spec, name: str | None = None) -> bool:
    """Combos listing files of the machine (checkpoints, images...): any string is acceptable.

    Recognised by an upload button, an empty or file-name option list, or an input name of the
    ``*_name`` family that core and this pack use for model files (``ckpt_name``, ``adapter_name``...).
    """
    if spec_type(spec) != "COMBO":
        return False
    values = combo_values(spec)
    if has_upload_button(spec) or not values:
        return True
    if name is not None and FILE_INPUT_NAMES.fullmatch(name):
        return True
    return any(isinstance(v, str) and FILE_EXTENSIONS.search(v) for v in values)


def types_compatible(output_type: str, input_type: str) -> bool:
    """ComfyUI's link rule: ``*`` matches anything; comma-separated types match if they share one."""
    if output_type == "*" or input_type == "*":
        return True
    out_set = {t.strip() for t in str(output_type).split(",") if t.strip()}
    in_set = {t.strip() for t in str(input_type).split(",") if t.strip()}
    return bool(out_set & in_set)


# --------------------------------------------------------------------------- widget values


def has_control_widget(name: str, spec) -> bool:
    """Whether the editor adds a "control_after_generate" widget (and value) after this widget.

    As the 0.8.0 editor decides it: INT widgets when their ``control_after_generate`` option is
    true, or, without that option, when they are named ``seed`` / ``noise_seed``; FLOAT and COMBO
    widgets only when the option is true.
    """
    kind = spec_type(spec)
    flag = spec_options(spec).get("control_after_generate")
    if kind == "INT":
        return bool(flag) if flag is not None else name in ("seed", "noise_seed")
    return kind in ("FLOAT", "COMBO") and bool(flag)


def map_widget_values(node: dict, node_info: dict) -> tuple[dict, list[str]]:
    """Map a UI node's ``widgets_values`` to ``{input name: value}``; returns ``(values, problems)``.

    The editor assigns saved values to widgets by position, so a missing or extra value shifts
    every widget after it; such lists are reported rather than guessed.
    """
    values = node.get("widgets_values")
    widgets = [(name, spec) for name, spec, _ in input_specs(node_info) if is_widget(spec)]
    if values is None:
        values = []
    if isinstance(values, dict):  # some editors save widgets by name
        return {name: values[name] for name, _ in widgets if name in values}, []
    if not isinstance(values, list):
        return {}, [f"widgets_values must be a list, got {type(values).__name__}"]
    result: dict = {}
    problems: list[str] = []
    i = 0
    for name, spec in widgets:
        if i >= len(values):
            problems.append(f"widgets_values has {len(values)} values: no value for widget {name!r}")
            break
        result[name] = values[i]
        i += 1
        if has_control_widget(name, spec):
            if i < len(values) and isinstance(values[i], str) and values[i] in CONTROL_VALUES:
                i += 1
            else:
                found = values[i] if i < len(values) else "nothing"
                problems.append(
                    f"after {name!r} the editor expects its control_after_generate value "
                    f"(one of {sorted(CONTROL_VALUES)}), found {found!r}: every later widget would shift"
                )
        elif spec_type(spec) == "COMBO" and has_upload_button(spec) and i < len(values):
            if values[i] in ("image", "video", "audio"):
                i += 1  # the upload button's value, saved by some editor versions
    if i < len(values):
        problems.append(f"widgets_values has {len(values) - i} unexpected extra value(s): {values[i:]!r}")
    return result, problems


def check_widget_value(name: str, spec, value) -> str | None:
    """``None`` if ``value`` fits the declared widget type, range and options; else the problem."""
    kind = spec_type(spec)
    options = spec_options(spec)
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return f"{name}={value!r}: expected an integer"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}={value!r}: expected a finite number"
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return f"{name}={value!r}: expected true/false"
    elif kind == "STRING":
        if not isinstance(value, str):
            return f"{name}={value!r}: expected a string"
    elif kind == "COMBO":
        if not isinstance(value, str) and not isinstance(value, (int, float)):
            return f"{name}={value!r}: expected one of the options"
        if not is_file_combo(spec, name) and value not in combo_values(spec):
            return f"{name}={value!r}: not one of {combo_values(spec)!r}"
        return None
    if kind in ("INT", "FLOAT"):
        low, high = options.get("min"), options.get("max")
        if low is not None and value < low:
            return f"{name}={value!r}: below the minimum {low}"
        if high is not None and value > high:
            return f"{name}={value!r}: above the maximum {high}"
    return None


# --------------------------------------------------------------------------- graph helpers


def _links_by_id(workflow: dict) -> tuple[dict, list[str]]:
    links: dict = {}
    problems: list[str] = []
    for raw in workflow.get("links", []) or []:
        if isinstance(raw, dict):  # newer serialisation
            keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
            raw = [raw.get(k) for k in keys]
        if not isinstance(raw, list) or len(raw) < 6:
            problems.append(
                f"link {raw!r}: expected [id, origin_id, origin_slot, target_id, target_slot, type]"
            )
            continue
        link_id = raw[0]
        if link_id in links:
            problems.append(f"link id {link_id} is used twice")
        links[link_id] = raw[:6]
    return links, problems


def _output_type(node: dict, slot: int, schema: dict) -> str | None:
    info = schema.get(node.get("type"))
    if info is not None:
        outputs = info.get("output", [])
        if 0 <= slot < len(outputs):
            out = outputs[slot]
            return "COMBO" if isinstance(out, list) else str(out)
        return None
    outputs = node.get("outputs") or []  # editor-only nodes declare their own types
    if 0 <= slot < len(outputs):
        return str(outputs[slot].get("type", "*"))
    return None


# --------------------------------------------------------------------------- validation


def validate_workflow(workflow, schema: dict) -> list[str]:
    """Every problem of a UI-format workflow, as readable strings (empty list = valid)."""
    if not isinstance(workflow, dict):
        return ["workflow must be a JSON object"]
    if "nodes" not in workflow and all(isinstance(v, dict) and "class_type" in v for v in workflow.values()):
        return ["this is an API-format prompt; ship the UI format (what ComfyUI's Save writes)"]
    problems: list[str] = []
    nodes_list = workflow.get("nodes")
    if not isinstance(nodes_list, list) or not nodes_list:
        return ["workflow has no 'nodes' list"]
    if not isinstance(workflow.get("links", []), list):
        return ["'links' must be a list"]
    if (workflow.get("definitions") or {}).get("subgraphs"):
        problems.append("subgraphs are not supported in shipped workflows")

    nodes: dict = {}
    for node in nodes_list:
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("id"), int)
            or not isinstance(node.get("type"), str)
        ):
            problems.append(f"node {node!r:.80}: needs an integer 'id' and a string 'type'")
            continue
        if node["id"] in nodes:
            problems.append(f"node id {node['id']} is used twice")
        nodes[node["id"]] = node
    last_node_id = workflow.get("last_node_id")
    if isinstance(last_node_id, int) and nodes and last_node_id < max(nodes):
        problems.append(f"last_node_id {last_node_id} is smaller than the largest node id {max(nodes)}")

    links, link_problems = _links_by_id(workflow)
    problems += link_problems
    last_link_id = workflow.get("last_link_id")
    numeric_link_ids = [k for k in links if isinstance(k, int)]
    if isinstance(last_link_id, int) and numeric_link_ids and last_link_id < max(numeric_link_ids):
        problems.append(
            f"last_link_id {last_link_id} is smaller than the largest link id {max(numeric_link_ids)}"
        )

    for node in nodes.values():
        label = f"node {node['id']} ({node['type']})"
        if node.get("mode", MODE_ALWAYS) not in (0, 1, 2, 3, 4):
            problems.append(f"{label}: unknown mode {node.get('mode')!r}")
        if node["type"] in VIRTUAL_TYPES:
            continue
        info = schema.get(node["type"])
        if info is None:
            problems.append(f"{label}: unknown node type (not in ComfyUI 0.8.0 nor in this pack)")
            continue
        problems += [f"{label}: {p}" for p in _validate_node(node, info, nodes, links, schema)]

    for link_id, (_, origin_id, origin_slot, target_id, target_slot, link_type) in links.items():
        label = f"link {link_id}"
        origin, target = nodes.get(origin_id), nodes.get(target_id)
        if origin is None or target is None:
            missing = origin_id if origin is None else target_id
            problems.append(f"{label}: node {missing} does not exist")
            continue
        outputs = origin.get("outputs") or []
        if not isinstance(origin_slot, int) or not 0 <= origin_slot < len(outputs):
            problems.append(f"{label}: node {origin_id} has no output slot {origin_slot}")
        elif link_id not in (outputs[origin_slot].get("links") or []):
            problems.append(f"{label}: not listed in the links of node {origin_id} output {origin_slot}")
        inputs = target.get("inputs") or []
        if not isinstance(target_slot, int) or not 0 <= target_slot < len(inputs):
            problems.append(f"{label}: node {target_id} has no input slot {target_slot}")
        elif inputs[target_slot].get("link") != link_id:
            problems.append(f"{label}: node {target_id} input {target_slot} does not point back to it")
        out_type = _output_type(origin, origin_slot, schema) if isinstance(origin_slot, int) else None
        if out_type is not None and link_type is not None and not types_compatible(out_type, str(link_type)):
            problems.append(
                f"{label}: declared type {link_type!r} but node {origin_id} output {origin_slot} is {out_type!r}"
            )
    return problems


def _validate_node(node: dict, info: dict, nodes: dict, links: dict, schema: dict) -> list[str]:
    problems: list[str] = []
    specs = {name: (spec, required) for name, spec, required in input_specs(info)}
    connected: set[str] = set()
    for slot, ui_input in enumerate(node.get("inputs") or []):
        name = ui_input.get("name")
        if name not in specs:
            problems.append(f"input {name!r} (slot {slot}) is not an input of this node type")
            continue
        link_id = ui_input.get("link")
        if link_id is None:
            continue
        link = links.get(link_id)
        if link is None:
            problems.append(f"input {name!r} points to link {link_id}, which does not exist")
            continue
        connected.add(name)
        origin = nodes.get(link[1])
        if origin is None:
            continue
        out_type = _resolve_output_type(origin, link[2], nodes, links, schema)
        in_type = spec_type(specs[name][0])
        if out_type is not None and not types_compatible(out_type, in_type):
            problems.append(
                f"input {name!r} expects {in_type} but is linked to {out_type} (node {origin['id']})"
            )
    widget_values, widget_problems = map_widget_values(node, info)
    problems += widget_problems
    for name, value in widget_values.items():
        if name in connected:
            continue
        problem = check_widget_value(name, specs[name][0], value)
        if problem:
            problems.append(problem)
    if node.get("mode", MODE_ALWAYS) == MODE_ALWAYS:
        for name, (spec, required) in specs.items():
            if required and name not in connected and not (is_widget(spec) and name in widget_values):
                problems.append(f"required input {name!r} is not connected")
    return problems


def _resolve_output_type(origin: dict, slot: int, nodes: dict, links: dict, schema: dict, depth: int = 0):
    """Type flowing out of ``origin``'s slot, looking through reroutes."""
    if origin.get("type") == "Reroute" and depth < 50:
        inputs = origin.get("inputs") or []
        link = links.get(inputs[0].get("link")) if inputs else None
        if link is not None and link[1] in nodes:
            return _resolve_output_type(nodes[link[1]], link[2], nodes, links, schema, depth + 1)
    return _output_type(origin, slot, schema)


# --------------------------------------------------------------------------- conversion


def ui_to_api(workflow: dict, schema: dict) -> dict:
    """Convert a UI-format workflow to an API prompt ``{id: {"class_type", "inputs"}}``.

    Links become ``[origin_id, slot]`` (through reroutes and bypassed nodes, primitives become
    their value), widget values are mapped by input order, muted and bypassed nodes are left out,
    and notes are dropped. Raises :class:`WorkflowError` listing every problem.
    """
    problems = validate_workflow(workflow, schema)
    if problems:
        raise WorkflowError("workflow is not valid:\n  " + "\n  ".join(problems))
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links, _ = _links_by_id(workflow)
    prompt: dict = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_TYPES or node.get("mode", MODE_ALWAYS) in (MODE_NEVER, MODE_BYPASS):
            continue
        info = schema[node["type"]]
        widget_values, _ = map_widget_values(node, info)
        ui_inputs = {i.get("name"): i for i in node.get("inputs") or []}
        inputs: dict = {}
        for name, spec, _required in input_specs(info):
            link_id = (ui_inputs.get(name) or {}).get("link")
            if link_id is not None:
                source = _resolve_source(links[link_id], nodes, links, spec_type(spec))
                if source is not None:  # else fed by a muted node: the editor leaves the input out
                    inputs[name] = source
                continue
            if name in widget_values:
                inputs[name] = copy.deepcopy(widget_values[name])
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt


def _resolve_source(link: list, nodes: dict, links: dict, wanted_type: str, depth: int = 0):
    """``[origin_id, slot]``, a primitive's value, or ``None`` when nothing that runs feeds the link.

    Follows the editor's rules: reroutes pass their input through; a bypassed node passes through
    the input at the output's slot index if its type fits, else the first input of exactly the
    wanted type, else the first compatible one; a muted source leaves the input out.
    """
    if depth > 100:
        raise WorkflowError("link cycle through reroutes or bypassed nodes")
    _, origin_id, origin_slot, _, _, _ = link
    origin = nodes[origin_id]
    kind, mode = origin.get("type"), origin.get("mode", MODE_ALWAYS)
    if kind == "PrimitiveNode":
        values = origin.get("widgets_values") or [None]
        return copy.deepcopy(values[0])
    inputs = origin.get("inputs") or []
    if kind == "Reroute":
        index = 0
    elif mode == MODE_BYPASS:
        index = _bypass_input_index(origin, origin_slot, wanted_type)
    elif mode == MODE_NEVER:
        return None
    else:
        return [str(origin_id), origin_slot]
    if index is None or index >= len(inputs) or inputs[index].get("link") not in links:
        return None
    return _resolve_source(links[inputs[index]["link"]], nodes, links, wanted_type, depth + 1)


def _bypass_input_index(node: dict, slot: int, wanted_type: str) -> int | None:
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    out_type = str(outputs[slot].get("type", "*")) if slot < len(outputs) else "*"
    if wanted_type in ("*", ""):
        return slot if len(inputs) > slot else 0
    if slot < len(inputs):
        same = str(inputs[slot].get("type", "*"))
        if types_compatible(same, out_type) and types_compatible(same, wanted_type):
            return slot
    for index, ui_input in enumerate(inputs):
        if ui_input.get("type") == wanted_type:
            return index
    for index, ui_input in enumerate(inputs):
        in_type = str(ui_input.get("type", "*"))
        if types_compatible(in_type, out_type) and types_compatible(in_type, wanted_type):
            return index
    return None


def substitute_inputs(prompt: dict, values: dict) -> dict:
    """Copy of an API prompt with literal inputs replaced by name (links are left alone).

    Keys are input names (``"ckpt_name"``) or ``"ClassType.input"`` to target one node type.
    """
    result = copy.deepcopy(prompt)
    for node in result.values():
        for name, current in list(node["inputs"].items()):
            if isinstance(current, list):  # a link
                continue
            qualified = f"{node['class_type']}.{name}"
            if qualified in values:
                node["inputs"][name] = values[qualified]
            elif name in values:
                node["inputs"][name] = values[name]
    return result


def declared_node_ids() -> list[str]:
    """Ids of every node the pack registers (``NODE_MODULES`` of ``nodes/__init__.py``), read from the nodes'
    own declarations with a stand-in host (``node_schema_stub``), in menu order."""
    from node_schema_stub import load_declared_nodes

    core = load_schema(core_schema_path(HOST_VERSIONS[0]))
    return [cls.define_schema().node_id for cls in load_declared_nodes(core)]
