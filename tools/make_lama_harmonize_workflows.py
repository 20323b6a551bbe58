"""Write the LaMa pre-fill and SFX translation workflows shipped in ``workflows/``.

    python tools/make_lama_harmonize_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sgim_workflows import CHECKPOINT, MASK, NEGATIVE, PAGE, POSITIVE, SGIM_INPUTS, SGIM_WIDGETS  # noqa: E402
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
LAMA = "big-lama.safetensors"
SFX = "mdim_example_sfx_translated.png"
SFX_POSITIVE = POSITIVE + ", sound effect, bold lettering"
# max_side, context_margin, grow_mask, precision
LAMA_FILL_WIDGETS = [512, 128, 0, "fp32"]
# mask_is, x, y, scale, strength, steps, ring, seed, control_after_generate, cfg, sampler_name, scheduler,
# context_margin, min_crop_side, tiled_vae_megapixels
HARMONIZE_WIDGETS = ["transparency", 40, 100, 1.0, 0.3, 10, 8, 0, "fixed", 7.0, "euler", "simple", 64, 512, 4.0]
HARMONIZE_INPUTS = [
    ("model", "MODEL"),
    ("positive", "CONDITIONING"),
    ("negative", "CONDITIONING"),
    ("vae", "VAE"),
    ("page", "IMAGE"),
    ("foreground", "IMAGE"),
    ("foreground_mask", "MASK"),
    ("symvae", "MDIM_SYMVAE"),
    ("sampler", "SAMPLER"),
]


def _inputs(g: Graph, mask_name: str, mask_title: str):
    ckpt = g.add(Node(1, "CheckpointLoaderSimple", (40, 60), [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT], size=(320, 100)))
    page = g.add(Node(2, "LoadImage", (40, 420), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"],
                      size=(320, 360), title="Page"))
    mask_img = g.add(Node(3, "LoadImage", (40, 820), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [mask_name, "image"],
                          size=(320, 360), title=mask_title))
    to_mask = g.add(Node(4, "ImageToMask", (400, 900), [("MASK", "MASK")], ["red"], inputs=[("image", "IMAGE")],
                         size=(240, 60)))
    pos = g.add(Node(5, "CLIPTextEncode", (400, 60), [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Positive prompt"))
    neg = g.add(Node(6, "CLIPTextEncode", (400, 250), [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Negative prompt"))
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(mask_img, 0, to_mask, "image")
    return ckpt, page, to_mask, pos, neg


def _sgim(g: Graph, ckpt: Node, page: Node, mask: Node, pos: Node, neg: Node, pos_xy, inputs, widgets, title):
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", pos_xy, [("image", "IMAGE"), ("sgi_preview", "IMAGE")], widgets,
                      inputs=inputs, size=(340, 680), title=title))
    g.link(ckpt, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    g.link(ckpt, 2, sgim, "vae")
    g.link(page, 0, sgim, "image")
    g.link(mask, 0, sgim, "mask")
    return sgim


def lama_prefill_sgim() -> Graph:
    """Page + mask -> MDIM LaMa Fill -> MDIM SGIM Inpaint (the fill as its prefill) -> Save Image."""
    g = Graph()
    ckpt, page, to_mask, pos, neg = _inputs(g, MASK, "Mask (white = remove)")
    loader = g.add(Node(7, "MDIM_LamaLoader", (700, 460), [("MDIM_LAMA", "MDIM_LAMA")], [LAMA], size=(320, 60),
                        title="MDIM LaMa Loader"))
    fill = g.add(Node(8, "MDIM_LamaFill", (700, 580), [("image", "IMAGE")], list(LAMA_FILL_WIDGETS),
                      inputs=[("lama", "MDIM_LAMA"), ("image", "IMAGE"), ("mask", "MASK")], size=(320, 180),
                      title="MDIM LaMa Fill"))
    g.link(loader, 0, fill, "lama")
    g.link(page, 0, fill, "image")
    g.link(to_mask, 0, fill, "mask")
    sgim = _sgim(g, ckpt, page, to_mask, pos, neg, (1180, 60), SGIM_INPUTS,
                 list(SGIM_WIDGETS), "MDIM SGIM Inpaint (starts from the LaMa fill)")
    g.link(fill, 0, sgim, "prefill")
    save = g.add(Node(20, "SaveImage", (1560, 60), [], ["MDIM/lama_prefill_sgim"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    preview = g.add(Node(21, "PreviewImage", (1560, 580), [], [], inputs=[("images", "IMAGE")], size=(420, 480),
                         title="LaMa fill (the pre-fill)"))
    g.link(sgim, 0, save, "images")
    g.link(fill, 0, preview, "images")
    return g


def sfx_translate_harmonize() -> Graph:
    """SFX removed with SGIM, then the translated SFX (an image with transparency) pasted and harmonised."""
    g = Graph()
    ckpt, page, to_mask, pos, neg = _inputs(g, MASK, "SFX mask (white = remove)")
    sgim = _sgim(g, ckpt, page, to_mask, pos, neg, (840, 60), SGIM_INPUTS, list(SGIM_WIDGETS),
                 "MDIM SGIM Inpaint (removes the SFX)")
    sfx = g.add(Node(11, "LoadImage", (840, 780), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [SFX, "image"],
                     size=(320, 360), title="Translated SFX (PNG with transparency)"))
    sfx_pos = g.add(Node(9, "CLIPTextEncode", (400, 440), [("CONDITIONING", "CONDITIONING")], [SFX_POSITIVE],
                         inputs=[("clip", "CLIP")], size=(400, 150), title="Positive prompt (SFX)"))
    paste = g.add(Node(12, "MDIM_PasteHarmonize", (1220, 60), [("image", "IMAGE"), ("mask", "MASK"),
                       ("pasted", "IMAGE")], list(HARMONIZE_WIDGETS), inputs=list(HARMONIZE_INPUTS),
                       size=(340, 640), title="MDIM Paste & Harmonize"))  # fmt: skip
    g.link(ckpt, 1, sfx_pos, "clip")
    g.link(ckpt, 0, paste, "model")
    g.link(sfx_pos, 0, paste, "positive")
    g.link(neg, 0, paste, "negative")
    g.link(ckpt, 2, paste, "vae")
    g.link(sgim, 0, paste, "page")
    g.link(sfx, 0, paste, "foreground")
    g.link(sfx, 1, paste, "foreground_mask")
    save = g.add(Node(20, "SaveImage", (1600, 60), [], ["MDIM/sfx_translate_harmonize"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    removed = g.add(Node(21, "PreviewImage", (1600, 580), [], [], inputs=[("images", "IMAGE")], size=(420, 480),
                         title="SFX removed"))
    pasted = g.add(Node(22, "PreviewImage", (2040, 60), [], [], inputs=[("images", "IMAGE")], size=(420, 480),
                        title="Pasted, before harmonising"))
    g.link(paste, 0, save, "images")
    g.link(sgim, 0, removed, "images")
    g.link(paste, 2, pasted, "images")
    return g


def main() -> None:
    lama_prefill_sgim().write(WORKFLOWS / "mdim_lama_prefill_sgim.json")
    sfx_translate_harmonize().write(WORKFLOWS / "mdim_sfx_translate_harmonize.json")


if __name__ == "__main__":
    main()
