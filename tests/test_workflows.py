"""Shipped workflows are valid UI-format graphs on every supported ComfyUI, and the pack's schema is complete.

Runs without ComfyUI: core nodes are checked against tests/data/comfyui_object_info_<version>.json
(recorded from an unmodified ComfyUI 0.8.0 and 0.28.0), ours against tests/data/mdim_object_info_<version>.json
(recorded from each live host by tests/integration/record_schema.py). The rules of the validator itself
are tested against 0.8.0's schema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from workflow_validation import (
    HOST_VERSIONS,
    TEMPLATE_FOLDERS,
    WorkflowError,
    core_schema_path,
    input_specs,
    load_schema,
    mdim_schema_path,
    shipped_workflows,
    shipped_workflows_dir,
    spec_options,
    substitute_inputs,
    types_compatible,
    ui_to_api,
    validate_workflow,
)

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = shipped_workflows()


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(core_schema_path(HOST_VERSIONS[0]), mdim_schema_path(HOST_VERSIONS[0]))


@pytest.fixture(scope="module")
def mdim_schema() -> dict:
    return load_schema(mdim_schema_path(HOST_VERSIONS[0]))


@pytest.fixture(scope="module", params=HOST_VERSIONS)
def host_schema(request) -> dict:
    """Core and pack schemas of one supported host."""
    return load_schema(core_schema_path(request.param), mdim_schema_path(request.param))


# --------------------------------------------------------------------------- shipped workflows


def test_workflows_are_shipped():
    assert WORKFLOWS, "workflows/ has no .json file"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_is_valid_on_every_supported_host(path, host_schema):
    with open(path, encoding="utf-8") as f:
        workflow = json.load(f)
    problems = validate_workflow(workflow, host_schema)
    assert problems == [], f"{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_converts_to_a_prompt_with_an_output(path, schema):
    with open(path, encoding="utf-8") as f:
        workflow = json.load(f)
    prompt = ui_to_api(workflow, schema)
    assert any(schema[n["class_type"]].get("output_node") for n in prompt.values()), "no output node"
    for node_id, node in prompt.items():
        info = schema[node["class_type"]]
        for name, _spec, required in input_specs(info):
            if required:
                assert name in node["inputs"], f"node {node_id} ({node['class_type']}) lacks {name}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_uses_placeholder_file_names(path):
    """Model and image names are the documented placeholders, not files of someone's machine."""
    with open(path, encoding="utf-8") as f:
        workflow = json.load(f)
    for node in workflow["nodes"]:
        if node["type"] in ("LoadImage", "LoadImageMask"):
            assert node["widgets_values"][0].startswith("mdim_example_"), (node["id"], node["widgets_values"])
        if node["type"] == "CheckpointLoaderSimple":
            assert node["widgets_values"][0].endswith(".safetensors"), (node["id"], node["widgets_values"])


# --------------------------------------------------------------------------- our recorded schema


def test_every_node_has_category_display_name_and_tooltips(mdim_schema):
    assert mdim_schema, "no MDIM node recorded"
    for node_id, info in mdim_schema.items():
        assert node_id.startswith("MDIM_")
        assert info["category"].startswith("MDIM/"), (node_id, info["category"])
        assert info.get("display_name", "").startswith("MDIM "), (node_id, info.get("display_name"))
        assert info.get("description"), f"{node_id} has no description"
        for name, spec, _required in input_specs(info):
            assert spec_options(spec).get("tooltip"), f"{node_id} input {name!r} has no tooltip"
        tooltips = info.get("output_tooltips") or []
        assert len(tooltips) == len(info["output"]), f"{node_id}: one tooltip per output expected"
        for name, tooltip in zip(info["output_name"], tooltips):
            assert tooltip, f"{node_id} output {name!r} has no tooltip"


def test_every_node_is_shown_in_a_shipped_workflow(mdim_schema):
    used = set()
    for path in WORKFLOWS:
        used |= {node["type"] for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]}
    assert sorted(set(mdim_schema) - used) == [], "nodes without an example workflow"


def test_our_node_ids_do_not_collide_with_core(mdim_schema):
    core = load_schema(core_schema_path(HOST_VERSIONS[0]), core_schema_path(HOST_VERSIONS[-1]))
    assert not set(mdim_schema) & set(core)


# --------------------------------------------------------------------------- the validator itself


def _graph() -> dict:
    """A small valid text-to-image graph in UI format (as the editor saves it)."""
    return {
        "last_node_id": 7,
        "last_link_id": 9,
        "nodes": [
            {
                "id": 1,
                "type": "CheckpointLoaderSimple",
                "mode": 0,
                "inputs": [],
                "outputs": [
                    {"name": "MODEL", "type": "MODEL", "links": [1]},
                    {"name": "CLIP", "type": "CLIP", "links": [2, 3]},
                    {"name": "VAE", "type": "VAE", "links": [8]},
                ],
                "widgets_values": ["any_model.safetensors"],
            },
            {
                "id": 2,
                "type": "CLIPTextEncode",
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": 2}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}],
                "widgets_values": ["manga"],
            },
            {
                "id": 3,
                "type": "CLIPTextEncode",
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [5]}],
                "widgets_values": ["color"],
            },
            {
                "id": 4,
                "type": "EmptyLatentImage",
                "mode": 0,
                "inputs": [],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [6]}],
                "widgets_values": [512, 768, 1],
            },
            {
                "id": 5,
                "type": "KSampler",
                "mode": 0,
                "inputs": [
                    {"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 5},
                    {"name": "latent_image", "type": "LATENT", "link": 6},
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}],
                "widgets_values": [42, "randomize", 20, 7.0, "euler", "simple", 1.0],
            },
            {
                "id": 6,
                "type": "VAEDecode",
                "mode": 0,
                "inputs": [
                    {"name": "samples", "type": "LATENT", "link": 7},
                    {"name": "vae", "type": "VAE", "link": 8},
                ],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9]}],
                "widgets_values": [],
            },
            {
                "id": 7,
                "type": "SaveImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 9}],
                "outputs": [],
                "widgets_values": ["ComfyUI"],
            },
        ],
        "links": [
            [1, 1, 0, 5, 0, "MODEL"],
            [2, 1, 1, 2, 0, "CLIP"],
            [3, 1, 1, 3, 0, "CLIP"],
            [4, 2, 0, 5, 1, "CONDITIONING"],
            [5, 3, 0, 5, 2, "CONDITIONING"],
            [6, 4, 0, 5, 3, "LATENT"],
            [7, 5, 0, 6, 0, "LATENT"],
            [8, 1, 2, 6, 1, "VAE"],
            [9, 6, 0, 7, 0, "IMAGE"],
        ],
        "groups": [],
        "version": 0.4,
    }


def _node(graph: dict, node_id: int) -> dict:
    return next(n for n in graph["nodes"] if n["id"] == node_id)


def _relink(graph: dict, link_id: int, origin_id: int, origin_slot: int) -> None:
    """Move the origin of a link, keeping both ends' bookkeeping consistent."""
    link = next(lk for lk in graph["links"] if lk[0] == link_id)
    _node(graph, link[1])["outputs"][link[2]]["links"].remove(link_id)
    link[1], link[2] = origin_id, origin_slot
    _node(graph, origin_id)["outputs"][origin_slot]["links"].append(link_id)


def test_the_reference_graph_is_valid_and_converts(schema):
    graph = _graph()
    assert validate_workflow(graph, schema) == []
    prompt = ui_to_api(graph, schema)
    assert prompt["5"] == {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": 42,  # the editor's "randomize" control value is not an input
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "denoise": 1.0,
        },
    }
    assert prompt["4"]["inputs"] == {"width": 512, "height": 768, "batch_size": 1}
    assert prompt["6"]["inputs"] == {"samples": ["5", 0], "vae": ["1", 2]}
    assert set(prompt) == {"1", "2", "3", "4", "5", "6", "7"}


def test_missing_control_after_generate_value_is_reported(schema):
    """The editor assigns saved values by position: without "randomize", steps would get 20's slot."""
    graph = _graph()
    _node(graph, 5)["widgets_values"] = [42, 20, 7.0, "euler", "simple", 1.0]
    text = _problems(graph, schema)
    assert "after 'seed' the editor expects its control_after_generate value" in text


def test_control_value_after_a_widget_without_control_is_reported(schema):
    graph = _graph()
    _node(graph, 4)["widgets_values"] = [512, "fixed", 768, 1]
    assert "height='fixed': expected an integer" in _problems(graph, schema)


def _problems(graph: dict, schema: dict) -> str:
    problems = validate_workflow(graph, schema)
    assert problems, "the validator accepted a broken workflow"
    with pytest.raises(WorkflowError):
        ui_to_api(graph, schema)
    return "\n".join(problems)


def test_wrong_type_link_is_reported(schema):
    graph = _graph()
    _relink(graph, 4, origin_id=4, origin_slot=0)  # LATENT into KSampler.positive
    graph["links"][3][5] = "LATENT"
    assert "input 'positive' expects CONDITIONING but is linked to LATENT" in _problems(graph, schema)


def test_link_type_label_contradicting_the_output_is_reported(schema):
    graph = _graph()
    graph["links"][0][5] = "CLIP"  # MODEL link labelled CLIP
    assert "declared type 'CLIP'" in _problems(graph, schema)


def test_out_of_range_values_are_reported(schema):
    graph = _graph()
    _node(graph, 5)["widgets_values"][2] = 0  # steps min 1
    _node(graph, 5)["widgets_values"][6] = 1.5  # denoise max 1
    _node(graph, 4)["widgets_values"][0] = 8  # width min 16
    text = _problems(graph, schema)
    assert "steps=0: below the minimum 1" in text
    assert "denoise=1.5: above the maximum 1" in text
    assert "width=8: below the minimum 16" in text


def test_wrong_value_types_are_reported(schema):
    graph = _graph()
    _node(graph, 5)["widgets_values"][2] = "20"
    _node(graph, 5)["widgets_values"][3] = True
    text = _problems(graph, schema)
    assert "steps='20': expected an integer" in text
    assert "cfg=True: expected a finite number" in text


def test_unknown_sampler_scheduler_and_control_values_are_reported(schema):
    graph = _graph()
    _node(graph, 5)["widgets_values"][4] = "trailing_euler"
    _node(graph, 5)["widgets_values"][5] = "trailing"
    text = _problems(graph, schema)
    assert "sampler_name='trailing_euler': not one of" in text
    assert "scheduler='trailing': not one of" in text


def test_file_name_combos_accept_any_name(schema):
    graph = _graph()
    _node(graph, 1)["widgets_values"] = ["some/other_model.ckpt"]
    assert validate_workflow(graph, schema) == []


def test_unknown_node_type_is_reported(schema):
    graph = _graph()
    _node(graph, 6)["type"] = "MDIM_NoSuchNode"
    assert "node 6 (MDIM_NoSuchNode): unknown node type" in _problems(graph, schema)


def test_dangling_and_inconsistent_links_are_reported(schema):
    graph = _graph()
    graph["links"][8][3] = 99  # target node does not exist
    _node(graph, 5)["inputs"][0]["link"] = 77  # input points to a missing link
    text = _problems(graph, schema)
    assert "link 9: node 99 does not exist" in text
    assert "input 'model' points to link 77, which does not exist" in text
    assert "link 1: node 5 input 0 does not point back to it" in text


def test_duplicate_ids_and_stale_counters_are_reported(schema):
    graph = _graph()
    graph["nodes"].append(copy.deepcopy(_node(graph, 7)))
    graph["last_node_id"] = 3
    text = _problems(graph, schema)
    assert "node id 7 is used twice" in text
    assert "last_node_id 3 is smaller than the largest node id 7" in text


def test_missing_required_input_and_extra_widget_values_are_reported(schema):
    graph = _graph()
    _node(graph, 6)["inputs"][1]["link"] = None
    graph["links"] = [lk for lk in graph["links"] if lk[0] != 8]
    _node(graph, 1)["outputs"][2]["links"] = []
    _node(graph, 4)["widgets_values"] = [512, 768, 1, 5]
    text = _problems(graph, schema)
    assert "node 6 (VAEDecode): required input 'vae' is not connected" in text
    assert "1 unexpected extra value(s): [5]" in text


def test_api_format_and_non_graphs_are_refused(schema):
    prompt = ui_to_api(_graph(), schema)
    assert "API-format" in validate_workflow(prompt, schema)[0]
    assert validate_workflow([], schema) == ["workflow must be a JSON object"]


def test_type_rules_match_comfyui():
    assert types_compatible("IMAGE", "IMAGE")
    assert types_compatible("*", "MODEL") and types_compatible("LATENT", "*")
    assert types_compatible("IMAGE", "IMAGE,MASK") and types_compatible("MASK,IMAGE", "MASK")
    assert not types_compatible("IMAGE", "MASK")
    assert not types_compatible("MODEL", "MODEL_PATCH")


def test_reroute_primitive_bypass_and_mute_are_resolved(schema):
    graph = _graph()
    # a reroute between the checkpoint's VAE and VAEDecode
    graph["nodes"].append(
        {
            "id": 8,
            "type": "Reroute",
            "inputs": [{"name": "", "type": "*", "link": 10}],
            "outputs": [{"name": "", "type": "VAE", "links": [8]}],
        }
    )
    _relink(graph, 8, origin_id=8, origin_slot=0)
    _node(graph, 1)["outputs"][2]["links"].append(10)
    graph["links"].append([10, 1, 2, 8, 0, "VAE"])
    # a primitive feeding KSampler.steps (the widget keeps its own copy of the value)
    graph["nodes"].append(
        {
            "id": 9,
            "type": "PrimitiveNode",
            "outputs": [{"name": "INT", "type": "INT", "links": [11]}],
            "widgets_values": [3, "fixed"],
        }
    )
    _node(graph, 5)["inputs"].append(
        {"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 11}
    )
    graph["links"].append([11, 9, 0, 5, 4, "INT"])
    # a bypassed LatentUpscaleBy between EmptyLatentImage and KSampler passes its LATENT through
    graph["nodes"].append(
        {
            "id": 10,
            "type": "LatentUpscaleBy",
            "mode": 4,
            "inputs": [{"name": "samples", "type": "LATENT", "link": 12}],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [6]}],
            "widgets_values": ["nearest-exact", 1.5],
        }
    )
    _relink(graph, 6, origin_id=10, origin_slot=0)
    _node(graph, 4)["outputs"][0]["links"].append(12)
    graph["links"].append([12, 4, 0, 10, 0, "LATENT"])
    # a muted note-like extra output and a note
    graph["nodes"].append({"id": 11, "type": "MarkdownNote", "widgets_values": ["read me"]})
    graph["nodes"].append(
        {
            "id": 12,
            "type": "PreviewImage",
            "mode": 2,
            "inputs": [{"name": "images", "type": "IMAGE", "link": None}],
            "outputs": [],
            "widgets_values": [],
        }
    )
    graph["last_node_id"], graph["last_link_id"] = 12, 12
    assert validate_workflow(graph, schema) == []
    prompt = ui_to_api(graph, schema)
    assert prompt["6"]["inputs"]["vae"] == ["1", 2]
    assert prompt["5"]["inputs"]["steps"] == 3
    assert prompt["5"]["inputs"]["latent_image"] == ["4", 0]
    assert not {"8", "9", "10", "11", "12"} & set(prompt)


def test_load_image_upload_value_is_skipped(schema):
    graph = {
        "nodes": [
            {
                "id": 1,
                "type": "LoadImage",
                "mode": 0,
                "inputs": [],
                "outputs": [
                    {"name": "IMAGE", "type": "IMAGE", "links": [1]},
                    {"name": "MASK", "type": "MASK", "links": []},
                ],
                "widgets_values": ["mdim_example_page.png", "image"],
            },
            {
                "id": 2,
                "type": "PreviewImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
                "outputs": [],
                "widgets_values": [],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    }
    assert validate_workflow(graph, schema) == []
    assert ui_to_api(graph, schema)["1"]["inputs"] == {"image": "mdim_example_page.png"}


def test_substitute_inputs_replaces_literals_only(schema):
    prompt = ui_to_api(_graph(), schema)
    changed = substitute_inputs(prompt, {"ckpt_name": "tiny.safetensors", "KSampler.steps": 2, "model": "x"})
    assert changed["1"]["inputs"]["ckpt_name"] == "tiny.safetensors"
    assert changed["5"]["inputs"]["steps"] == 2
    assert changed["5"]["inputs"]["model"] == ["1", 0]  # links are never replaced
    assert prompt["5"]["inputs"]["steps"] == 20  # the input prompt is not modified


def test_file_combos_are_told_apart_from_option_combos(schema):
    from workflow_validation import is_file_combo

    def spec(node, name):
        return dict((n, s) for n, s, _ in input_specs(schema[node]))[name]

    assert is_file_combo(spec("CheckpointLoaderSimple", "ckpt_name"), "ckpt_name")
    assert is_file_combo(spec("LoadImage", "image"), "image")
    assert is_file_combo(spec("LoraLoader", "lora_name"), "lora_name")
    assert not is_file_combo(spec("KSampler", "sampler_name"), "sampler_name")
    assert not is_file_combo(spec("KSampler", "scheduler"), "scheduler")
    assert not is_file_combo(spec("LatentUpscaleBy", "upscale_method"), "upscale_method")
    if "MDIM_SymVAELoader" in schema:  # model files of the pack's own folder
        assert is_file_combo(spec("MDIM_SymVAELoader", "adapter_name"), "adapter_name")


def test_widget_converted_to_an_input_takes_the_linked_value(schema):
    graph = _graph()
    graph["nodes"].append(
        {
            "id": 8,
            "type": "PrimitiveInt",
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "INT", "type": "INT", "links": [10]}],
            "widgets_values": [7, "fixed"],
        }
    )
    _node(graph, 5)["inputs"].append({"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 10})
    graph["links"].append([10, 8, 0, 5, 4, "INT"])
    graph["last_node_id"], graph["last_link_id"] = 8, 10
    assert validate_workflow(graph, schema) == []
    prompt = ui_to_api(graph, schema)
    assert prompt["5"]["inputs"]["seed"] == ["8", 0]
    assert prompt["8"] == {"class_type": "PrimitiveInt", "inputs": {"value": 7}}
    # a FLOAT cannot feed an INT widget
    graph["nodes"][-1]["type"] = "PrimitiveFloat"
    graph["nodes"][-1]["outputs"][0]["type"] = "FLOAT"
    graph["links"][-1][5] = "FLOAT"
    assert "input 'seed' expects INT but is linked to FLOAT" in _problems(graph, schema)


def test_bypassed_node_passes_the_input_the_editor_would_pick(schema):
    graph = _graph()
    graph["nodes"].append(
        {
            "id": 8,
            "type": "LoadImage",
            "mode": 0,
            "inputs": [],
            "outputs": [
                {"name": "IMAGE", "type": "IMAGE", "links": [11]},
                {"name": "MASK", "type": "MASK", "links": []},
            ],
            "widgets_values": ["mdim_example_page.png", "image"],
        }
    )
    # VAEDecode -> destination, LoadImage -> source of a bypassed ImageCompositeMasked -> SaveImage
    graph["nodes"].append(
        {
            "id": 9,
            "type": "ImageCompositeMasked",
            "mode": 4,
            "inputs": [
                {"name": "destination", "type": "IMAGE", "link": 10},
                {"name": "source", "type": "IMAGE", "link": 11},
                {"name": "mask", "type": "MASK", "link": None},
            ],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9]}],
            "widgets_values": [0, 0, False],
        }
    )
    _relink(graph, 9, origin_id=9, origin_slot=0)
    _node(graph, 6)["outputs"][0]["links"].append(10)
    graph["links"] += [[10, 6, 0, 9, 0, "IMAGE"], [11, 8, 0, 9, 1, "IMAGE"]]
    graph["last_node_id"], graph["last_link_id"] = 9, 11
    assert validate_workflow(graph, schema) == []
    assert ui_to_api(graph, schema)["7"]["inputs"]["images"] == ["6", 0]  # the input at the output's slot
    # the editor does not fall back to another input when the chosen one is unconnected
    _node(graph, 9)["inputs"][0]["link"] = None
    _node(graph, 6)["outputs"][0]["links"].remove(10)
    graph["links"] = [lk for lk in graph["links"] if lk[0] != 10]
    assert "images" not in ui_to_api(graph, schema)["7"]["inputs"]
    # a muted source leaves the input out as well
    _node(graph, 9)["mode"] = 2
    assert "images" not in ui_to_api(graph, schema)["7"]["inputs"]


def test_comfyui_serves_the_folder_that_holds_the_workflows():
    """ComfyUI 0.8.0 serves a pack's templates only from the first existing folder of TEMPLATE_FOLDERS."""
    present = [name for name in TEMPLATE_FOLDERS if (REPO / name).is_dir()]
    shipped = shipped_workflows_dir().name
    assert present[0] == shipped, (
        f"{present[0]}/ hides {shipped}/: the editor would list the workflows but fail to open them"
    )
