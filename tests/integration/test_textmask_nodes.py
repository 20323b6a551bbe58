"""MDIM Text Mask, MDIM Flat Fill and the text workflows inside a real ComfyUI.

Needs COMFYUI_DIR (skipped otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration

TEXT_DEFAULTS = dict(text_in_bubbles=True, free_text=True, sfx=False, grow=3, min_size=0)


@pytest.fixture(scope="module")
def synth_pages():
    from mdim_core.synth import generate_page

    return [generate_page(s, size=(620, 437), dpi=150, truth=True, masks=False) for s in (0, 3)]


def _batch(pages) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.repeat(p.page[..., None], 3, axis=2) for p in pages]))


def test_text_mask_node_matches_core_and_keeps_input(inprocess_comfy, synth_pages):
    from mdim_pack_under_test.mdim_core.textmask import TextMaskSettings, find_text

    image = _batch(synth_pages)
    before = image.clone()
    mask, preview = inprocess_comfy.run("MDIM_TextMask", image=image, **TEXT_DEFAULTS)
    assert torch.equal(image, before)
    assert mask.shape == image.shape[:3] and mask.dtype == torch.float32
    assert preview.shape == image.shape
    for i in range(len(synth_pages)):
        expect = find_text(image[i].numpy(), TextMaskSettings()).mask
        assert np.array_equal(mask[i].numpy() > 0.5, expect)
        assert expect.any()


def test_text_mask_rough_mask_and_bad_inputs(inprocess_comfy, synth_pages):
    image = _batch(synth_pages[:1])
    rough = torch.zeros(image.shape[:3])
    rough[0, 50:200, 50:300] = 1.0
    mask, _ = inprocess_comfy.run("MDIM_TextMask", image=image, rough_mask=rough, **TEXT_DEFAULTS)
    outside = torch.ones_like(rough, dtype=torch.bool)
    outside[0, 0:260, 0:360] = False  # the rough box plus the refinement's margin
    assert not mask[outside].any()
    with pytest.raises(ValueError, match="image"):
        inprocess_comfy.run("MDIM_TextMask", image=image[:, :4, :4], **TEXT_DEFAULTS)
    with pytest.raises(ValueError, match="rough_mask: batch of 2"):
        inprocess_comfy.run("MDIM_TextMask", image=image, rough_mask=torch.zeros(2, 8, 8), **TEXT_DEFAULTS)


def test_flat_fill_node_exact_outside_and_truth_in_bubbles(inprocess_comfy, synth_pages):
    image = _batch(synth_pages)
    mask, _ = inprocess_comfy.run("MDIM_TextMask", image=image, **TEXT_DEFAULTS)
    before = image.clone()
    out, remaining, preview = inprocess_comfy.run("MDIM_FlatFill", image=image, mask=mask, tolerance=0.08, ring=3)
    assert torch.equal(image, before)
    m = mask > 0.5
    assert torch.equal(out[~m], image[~m])  # bit-exact outside the mask
    assert remaining.shape == mask.shape and not (remaining.bool() & ~m).any()
    assert preview.shape == image.shape
    for i, sp in enumerate(synth_pages):
        filled = (m[i] & ~remaining[i].bool()).numpy() & sp.truth["bubble"]
        assert filled.any()
        assert np.array_equal(out[i, ..., 0].numpy()[filled], sp.clean[filled])


def test_nodes_are_served_with_help_and_tooltips(comfy_server):
    info = comfy_server.object_info()
    for node_id in ("MDIM_TextMask", "MDIM_FlatFill"):
        assert info[node_id]["category"] == "MDIM/text"
        for name, spec in {**info[node_id]["input"]["required"], **info[node_id]["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip"), (node_id, name)
    # onnxruntime is installed in the host: the loader is offered too
    assert "MDIM_TextDetectorLoader" in info or "onnxruntime" not in comfy_server.log_text()


def test_flat_fill_workflow_runs_through_prompt(workflow_prompt, comfy_run, comfy_images, test_images):
    outputs = comfy_run(workflow_prompt("mdim_text_mask_flat_fill.json"), timeout=600)
    images = comfy_images(outputs)
    page = test_images["mdim_example_page.png"]
    assert images and all(img.shape[:2] == page.shape[:2] for img in images)


def test_auto_text_removal_workflow_runs_through_prompt(workflow_prompt, comfy_run, comfy_images, test_images):
    outputs = comfy_run(workflow_prompt("mdim_auto_text_removal.json", steps=2, fri_steps=1), timeout=900)
    images = comfy_images(outputs)
    assert images and images[0].shape[:2] == test_images["mdim_example_page.png"].shape[:2]
