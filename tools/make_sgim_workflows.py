"""Write the SGIM inpainting workflows shipped in ``workflows/``.

    python tools/make_sgim_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CHECKPOINT = "sd15_mdim_zsnr_vpred.safetensors"
CONTROLNET = "control_v11p_sd15_lineart.safetensors"
PAGE = "mdim_example_page.png"
MASK = "mdim_example_mask.png"
POSITIVE = "manga, manga style, comic, monochrome"
NEGATIVE = "color, blurry, lowres, jpeg artifacts, watermark, text, speech bubble text"

SGIM_INPUTS = [
    ("model", "MODEL"),
    ("positive", "CONDITIONING"),
    ("negative", "CONDITIONING"),
    ("vae", "VAE"),
    ("image", "IMAGE"),
    ("mask", "MASK"),
    ("symvae", "MDIM_SYMVAE"),
    ("sampler", "SAMPLER"),
    ("sigmas", "SIGMAS"),
    ("prefill", "IMAGE"),
]
# seed, control_after_generate, steps, cfg, sampler_name, scheduler, sgi_max_side, plan, fri_strength,
# fri_steps, run_fri, grow_mask, feather, context_margin, min_crop_side, limit_to_panel, tiled_vae_megapixels,
# then the optional widgets prefill_strength, flat_fill
SGIM_WIDGETS = [0, "fixed", 30, 7.0, "euler", "simple", 1024, "halve", 0.5, 15, "auto", 0, 0, 128, 512, False, 4.0,
                0.75, "auto"]


def _base(g: Graph, prefix: str):
    """Loader, page, mask, prompts, SGIM, save and preview; returns the nodes to rewire."""
    ckpt = g.add(Node(1, "CheckpointLoaderSimple", None, [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT]))
    page = g.add(Node(2, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"], title="Page"))
    mask_img = g.add(Node(3, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [MASK, "image"], title="Mask (white = remove)"))
    to_mask = g.add(Node(4, "ImageToMask", None, [("MASK", "MASK")], ["red"], inputs=[("image", "IMAGE")]))
    pos = g.add(Node(5, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], title="Positive prompt"))
    neg = g.add(Node(6, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], title="Negative prompt"))
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", None, [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
                      list(SGIM_WIDGETS), inputs=list(SGIM_INPUTS), title="MDIM SGIM Inpaint"))
    save = g.add(Node(20, "SaveImage", None, [], [prefix], inputs=[("images", "IMAGE")]))
    preview = g.add(Node(21, "PreviewImage", None, [], [], inputs=[("images", "IMAGE")],
                         title="Structure pass (SGI) preview"))
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(mask_img, 0, to_mask, "image")
    g.link(ckpt, 2, sgim, "vae")
    g.link(page, 0, sgim, "image")
    g.link(to_mask, 0, sgim, "mask")
    g.link(sgim, 0, save, "images")
    g.link(sgim, 1, preview, "images")
    return ckpt, page, pos, neg, sgim


def text_removal() -> Graph:
    g = Graph()
    ckpt, _, pos, neg, sgim = _base(g, "MDIM/sgim_text_removal")
    g.link(ckpt, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    return g


def _zero_snr(g: Graph, ckpt: Node) -> Node:
    zsnr = g.add(Node(7, "MDIM_ZeroSNRModel", None, [("MODEL", "MODEL")], ["v_prediction", 0.7, False],
                      inputs=[("model", "MODEL")], title="MDIM Zero-SNR Model"))
    g.link(ckpt, 0, zsnr, "model")
    return zsnr


def zero_snr() -> Graph:
    g = Graph()
    ckpt, _, pos, neg, sgim = _base(g, "MDIM/sgim_zero_snr")
    zsnr = _zero_snr(g, ckpt)
    g.link(zsnr, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    return g


def controlnet() -> Graph:
    g = Graph()
    ckpt, page, pos, neg, sgim = _base(g, "MDIM/sgim_controlnet")
    zsnr = _zero_snr(g, ckpt)
    loader = g.add(Node(8, "ControlNetLoader", None, [("CONTROL_NET", "CONTROL_NET")], [CONTROLNET]))
    hint = g.add(Node(9, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"], title="Control image (e.g. line guide of the page)"))
    apply = g.add(Node(11, "ControlNetApplyAdvanced", None, [("positive", "CONDITIONING"),
                       ("negative", "CONDITIONING")], [0.8, 0.0, 0.8],
                       inputs=[("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                               ("control_net", "CONTROL_NET"), ("image", "IMAGE"), ("vae", "VAE")]))  # fmt: skip
    g.link(zsnr, 0, sgim, "model")
    g.link(pos, 0, apply, "positive")
    g.link(neg, 0, apply, "negative")
    g.link(loader, 0, apply, "control_net")
    g.link(hint, 0, apply, "image")
    g.link(ckpt, 2, apply, "vae")
    g.link(apply, 0, sgim, "positive")
    g.link(apply, 1, sgim, "negative")
    return g


def main() -> None:
    text_removal().write(WORKFLOWS / "mdim_sgim_text_removal.json")
    zero_snr().write(WORKFLOWS / "mdim_sgim_zero_snr.json")
    controlnet().write(WORKFLOWS / "mdim_sgim_controlnet.json")


if __name__ == "__main__":
    main()
