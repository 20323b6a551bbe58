"""MDIM Outpaint Pad in a real ComfyUI: through /prompt the original pixels come back bit for bit, the mask
is exactly the new area, and the shipped outpainting workflow draws the new area with SGIM."""

from __future__ import annotations

import numpy as np
import pytest
from comfy_harness import PromptError

PAGE = "mdim_example_page.png"


def pad_prompt(**widgets) -> dict:
    inputs = {"top": 0, "bottom": 0, "left": 0, "right": 0, "fill": "paper", "feather": 0, "aspect": "off",
              "target_width": 0, "target_height": 0, "anchor": "center"}  # fmt: skip
    inputs.update(widgets)
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": PAGE}},
        "2": {"class_type": "MDIM_OutpaintPad", "inputs": {"image": ["1", 0], **inputs}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "MDIM/test_pad"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 1]}},
        "5": {
            "class_type": "SaveImage",
            "inputs": {"images": ["4", 0], "filename_prefix": "MDIM/test_pad_mask"},
        },
    }


@pytest.mark.parametrize(
    "widgets,box",
    [
        (dict(top=5, bottom=0, left=17, right=3, fill="paper"), (5, 17)),
        (dict(bottom=24, fill="edge", feather=6), (0, 0)),
        (dict(right=9, fill="mirror"), (0, 0)),
        (dict(aspect="1:√2 (manga page)", anchor="bottom-left", fill="white"), None),
        (dict(left=4, target_width=200, target_height=210, anchor="top-right", fill="grey"), None),
    ],
)
def test_original_pixels_exact_and_mask_of_the_new_area(widgets, box, comfy_run, comfy_images, test_images):
    original = test_images[PAGE]
    h, w = original.shape[:2]
    padded, mask = comfy_images(comfy_run(pad_prompt(**widgets)))
    big_h, big_w = padded.shape[:2]
    if box is None:  # found from the saved mask: the one all-zero rectangle
        zero_rows = np.flatnonzero((mask[..., 0] == 0).any(axis=1))
        zero_cols = np.flatnonzero((mask[..., 0] == 0).any(axis=0))
        box = (int(zero_rows[0]), int(zero_cols[0]))
    top, left = box
    assert np.array_equal(padded[top : top + h, left : left + w], original)  # bit for bit through /prompt
    new = np.ones((big_h, big_w), bool)
    new[top : top + h, left : left + w] = False
    assert (big_h, big_w) != (h, w) and new.any()
    assert np.all(mask[~new] == 0)
    if widgets.get("feather"):
        assert np.all(mask[new] > 0) and mask[new].max() == 255 and mask[new].min() < 255
    else:
        assert np.all(mask[new] == 255)
    if widgets.get("fill") == "white":
        assert np.all(padded[new] == 255)
    if widgets.get("aspect"):
        assert abs(big_w / big_h - 1 / 2**0.5) < 1 / big_h
        assert top == big_h - h and left == 0  # bottom-left anchor
    if widgets.get("target_width"):
        assert (big_h, big_w) == (210, 200) and top == 0 and left == 200 - w


def test_bad_target_is_reported_by_name(comfy_run):
    with pytest.raises(PromptError, match="target_width"):
        comfy_run(pad_prompt(right=10, target_width=100))


def test_shipped_outpaint_workflow_extends_the_page(workflow_prompt, comfy_run, comfy_images, test_images):
    """Load Image -> MDIM Outpaint Pad -> MDIM SGIM Inpaint -> Save Image, on the tiny checkpoint."""
    prompt = workflow_prompt("mdim_outpaint.json", steps=2, fri_steps=1, sgi_max_side=64, min_crop_side=0)
    pad = next(node["inputs"] for node in prompt.values() if node["class_type"] == "MDIM_OutpaintPad")
    images = comfy_images(comfy_run(prompt, timeout=900))
    original = test_images[PAGE]
    h, w = original.shape[:2]
    top, left = pad["top"], pad["left"]
    out = images[0]
    assert out.shape[:2] == (h + top + pad["bottom"], w + left + pad["right"])
    assert np.array_equal(out[top : top + h, left : left + w], original)
    new = np.ones(out.shape[:2], bool)
    new[top : top + h, left : left + w] = False
    assert out[new].std() > 0  # the new area was drawn, not left as a flat fill
