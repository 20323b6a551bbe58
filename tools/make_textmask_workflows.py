"""Write the automatic text removal workflows shipped in ``workflows/``.

    python tools/make_textmask_workflows.py

- ``mdim_auto_text_removal.json``: Load Image -> MDIM Text Mask -> MDIM SGIM Inpaint -> Save Image
  (no hand-drawn mask);
- ``mdim_text_mask_flat_fill.json``: Load Image -> MDIM Text Mask -> MDIM Flat Fill -> Save Image
  (no model at all);
- ``mdim_text_mask_detector.json``: the same with a learned detector (MDIM Text Detector Loader) whose
  boxes MDIM Text Mask refines to text pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sgim_workflows import CHECKPOINT, NEGATIVE, PAGE, POSITIVE, SGIM_INPUTS, SGIM_WIDGETS  # noqa: E402
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"

# text_in_bubbles, free_text, sfx, grow, min_size
TEXT_MASK_WIDGETS = [True, True, False, 3, 0]
TEXT_MASK_INPUTS = [("image", "IMAGE"), ("rough_mask", "MASK"), ("detector", "MDIM_TEXT_DETECTOR")]
# tolerance, ring
FLAT_FILL_WIDGETS = [0.08, 3]
DETECTOR = "comic_text_bubble_detector.onnx"  # placeholder: the user's own RT-DETR-style .onnx in models/mdim
def _page_and_mask(g: Graph):
    page = g.add(Node(2, "LoadImage", (40, 420), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"],
                      size=(320, 360), title="Page (raw, with text)"))
    text = g.add(Node(3, "MDIM_TextMask", (400, 420), [("mask", "MASK"), ("preview", "IMAGE")], list(TEXT_MASK_WIDGETS),
                      inputs=list(TEXT_MASK_INPUTS), size=(320, 250), title="MDIM Text Mask"))
    preview = g.add(Node(22, "PreviewImage", (400, 720), [], [], inputs=[("images", "IMAGE")], size=(320, 360),
                         title="Text found (red) and bubbles (blue)"))
    g.link(page, 0, text, "image")
    g.link(text, 1, preview, "images")
    return page, text


def auto_text_removal() -> Graph:
    g = Graph()
    page, text = _page_and_mask(g)
    ckpt = g.add(Node(1, "CheckpointLoaderSimple", (40, 60), [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT], size=(320, 100)))
    pos = g.add(Node(5, "CLIPTextEncode", (400, 60), [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Positive prompt"))
    neg = g.add(Node(6, "CLIPTextEncode", (400, 250), [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Negative prompt"))
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", (860, 60), [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
                      list(SGIM_WIDGETS), inputs=list(SGIM_INPUTS), size=(340, 660), title="MDIM SGIM Inpaint"))
    save = g.add(Node(20, "SaveImage", (1240, 60), [], ["MDIM/auto_text_removal"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    g.link(ckpt, 0, sgim, "model")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    g.link(ckpt, 2, sgim, "vae")
    g.link(page, 0, sgim, "image")
    g.link(text, 0, sgim, "mask")
    g.link(sgim, 0, save, "images")
    return g


def text_mask_flat_fill() -> Graph:
    g = Graph()
    page, text = _page_and_mask(g)
    flat = g.add(Node(10, "MDIM_FlatFill", (860, 420), [("image", "IMAGE"), ("remaining", "MASK"), ("preview", "IMAGE")],
                      list(FLAT_FILL_WIDGETS), inputs=[("image", "IMAGE"), ("mask", "MASK")], size=(320, 130),
                      title="MDIM Flat Fill"))
    save = g.add(Node(20, "SaveImage", (1220, 420), [], ["MDIM/text_flat_fill"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    preview = g.add(Node(21, "PreviewImage", (1220, 940), [], [], inputs=[("images", "IMAGE")], size=(420, 480),
                         title="Filled flat (green), left for a model (red)"))
    g.link(page, 0, flat, "image")
    g.link(text, 0, flat, "mask")
    g.link(flat, 0, save, "images")
    g.link(flat, 2, preview, "images")
    return g


def text_mask_detector() -> Graph:
    g = text_mask_flat_fill()
    text = next(n for n in g.nodes if n.type == "MDIM_TextMask")
    det = g.add(Node(4, "MDIM_TextDetectorLoader", (40, 60), [("MDIM_TEXT_DETECTOR", "MDIM_TEXT_DETECTOR")],
                     [DETECTOR, 0.3], size=(320, 100), title="MDIM Text Detector Loader"))
    g.link(det, 0, text, "detector")
    next(n for n in g.nodes if n.type == "SaveImage").widgets = ["MDIM/text_detector_flat_fill"]
    return g


def main() -> None:
    auto_text_removal().write(WORKFLOWS / "mdim_auto_text_removal.json")
    text_mask_flat_fill().write(WORKFLOWS / "mdim_text_mask_flat_fill.json")
    text_mask_detector().write(WORKFLOWS / "mdim_text_mask_detector.json")


if __name__ == "__main__":
    main()
