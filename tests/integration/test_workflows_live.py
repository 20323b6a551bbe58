"""Shipped workflows and the recorded schema against a live ComfyUI.

Every ``workflows/*.json`` is converted from the editor format with the live host's /object_info
and queued through /prompt on the tiny checkpoint (its placeholder checkpoint and image names are
present in the test server). Sampling steps and empty-latent sizes are lowered to keep the run cheap;
nothing else is changed. Feature-specific assertions live in each feature's own test file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from record_schema import REGENERATE_COMMAND, normalize_schema
from workflow_validation import host_version, mdim_schema_path, shipped_workflows

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = shipped_workflows()
MAX_STEPS = 2


def cheap(prompt: dict) -> dict:
    """Lower step counts to ``MAX_STEPS`` and empty latents to 1/8 of their size (at least 64 px)."""
    for node in prompt.values():
        inputs = node["inputs"]
        for name, value in list(inputs.items()):
            if isinstance(value, int) and not isinstance(value, bool):
                if (name == "steps" or name.endswith("_steps")) and value > MAX_STEPS:
                    inputs[name] = MAX_STEPS
        if node["class_type"] == "EmptyLatentImage":
            for name in ("width", "height"):
                if isinstance(inputs.get(name), int):
                    inputs[name] = max(64, -(-inputs[name] // 64) * 8)
    return prompt


def expected_sizes(prompt: dict, test_images: dict) -> set[tuple[int, int]]:
    """Image sizes (H, W) a workflow may produce: its empty latents, its inputs, their 8-px crops."""
    sizes = set()
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "EmptyLatentImage":
            sizes.add((inputs["height"] // 8 * 8, inputs["width"] // 8 * 8))
        if node["class_type"] in ("LoadImage", "LoadImageMask") and inputs.get("image") in test_images:
            height, width = test_images[inputs["image"]].shape[:2]
            sizes |= {(height, width), (height // 8 * 8, width // 8 * 8)}
    for node in prompt.values():  # MDIM Outpaint Pad extends its input
        if node["class_type"] == "MDIM_OutpaintPad":
            from mdim_core.inpaint.outpaint import plan_padding

            keys = ("top", "bottom", "left", "right", "aspect", "target_height", "target_width", "anchor")
            plan = {k: node["inputs"][k] for k in keys}
            sizes |= {plan_padding(size, **plan).size(size) for size in list(sizes)}
    return sizes


def _recorded_for_this_host() -> tuple[str, dict]:
    path = mdim_schema_path(host_version(os.environ["COMFYUI_DIR"]))
    return path.name, json.loads(path.read_text(encoding="utf-8"))


def test_recorded_schema_matches_the_live_host(comfy_server):
    """The schema recorded for this host's version (each version adds fields of its own) is what it serves."""
    live = normalize_schema(comfy_server.object_info())
    name, recorded = _recorded_for_this_host()
    differing = sorted(k for k in set(live) | set(recorded) if live.get(k) != recorded.get(k))
    assert not differing, (
        f"tests/data/{name} differs from the live host for {differing}; "
        f"regenerate it with:\n    {REGENERATE_COMMAND}"
    )


def test_every_registered_node_is_served_with_its_declared_inputs(comfy_server):
    _, recorded = _recorded_for_this_host()
    info = comfy_server.object_info()
    for node_id, node in recorded.items():
        assert node_id in info, node_id
        assert info[node_id]["input_order"] == node["input_order"], node_id
        assert info[node_id]["output"] == node["output"], node_id


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_runs(path, workflow_prompt, comfy_run, comfy_images, test_images):
    prompt = cheap(workflow_prompt(path.name))
    outputs = comfy_run(prompt, timeout=900)
    images = comfy_images(outputs)
    assert images, f"{path.name} produced no image"
    allowed = expected_sizes(prompt, test_images)
    for image in images:
        assert image.shape[:2] in allowed, (
            f"{path.name}: image of size {image.shape[:2]}, expected one of {allowed}"
        )
        assert image.dtype.kind == "u"


def test_shipped_workflows_are_offered_as_templates(comfy_server):
    """The host lists workflows/*.json of the pack in its template browser and serves them unchanged."""
    from comfy_harness import PACK_DIR_NAME

    listed = comfy_server.get_json("/workflow_templates")
    assert sorted(listed.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in WORKFLOWS)
    for path in WORKFLOWS:
        served = comfy_server.get_json(f"/api/workflow_templates/{PACK_DIR_NAME}/{path.name}")
        assert served == json.loads(path.read_text(encoding="utf-8")), path.name
