"""Write the outpainting and RePaint workflows shipped in ``workflows/``.

python tools/make_repaint_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sgim_workflows import CHECKPOINT, MASK, NEGATIVE, PAGE, POSITIVE, SGIM_INPUTS, SGIM_WIDGETS  # noqa: E402
from workflow_builder import Graph, Node  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mdim_core.inpaint.config import FLAT_FILL_OPTIONS  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"

# top, bottom, left, right, fill, feather, aspect, target_width, target_height, anchor
OUTPAINT_WIDGETS = [0, 192, 0, 0, "paper", 0, "off", 0, 0, "center"]
# jump_length, jump_n_sample, step
REPAINT_WIDGETS = [10, 10, "ddpm"]


def outpaint_sgim_widgets() -> list:
    """SGIM's widgets with flat_fill (the last one) 'off': a new area is not text in a bubble, and 'auto'
    would fill a band whose neighbouring rows are flat paper or ink (a panel border) with that value."""
    widgets = list(SGIM_WIDGETS)
    if widgets[-1] not in FLAT_FILL_OPTIONS:
        raise ValueError(f"SGIM_WIDGETS no longer ends with flat_fill: {widgets[-1]!r}")
    widgets[-1] = "off"
    return widgets


def _loader_and_prompts(g: Graph):
    ckpt = g.add(
        Node(
            1,
            "CheckpointLoaderSimple",
            (40, 60),
            [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
            [CHECKPOINT],
            size=(320, 100),
        )
    )
    pos = g.add(
        Node(
            5,
            "CLIPTextEncode",
            (400, 60),
            [("CONDITIONING", "CONDITIONING")],
            [POSITIVE],
            inputs=[("clip", "CLIP")],
            size=(400, 150),
            title="Positive prompt",
        )
    )
    neg = g.add(
        Node(
            6,
            "CLIPTextEncode",
            (400, 250),
            [("CONDITIONING", "CONDITIONING")],
            [NEGATIVE],
            inputs=[("clip", "CLIP")],
            size=(400, 150),
            title="Negative prompt",
        )
    )
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    return ckpt, pos, neg


def outpaint() -> Graph:
    """Page -> MDIM Outpaint Pad -> MDIM SGIM Inpaint (mask = the new area) -> Save Image."""
    g = Graph()
    ckpt, pos, neg = _loader_and_prompts(g)
    page = g.add(
        Node(
            2,
            "LoadImage",
            (40, 420),
            [("IMAGE", "IMAGE"), ("MASK", "MASK")],
            [PAGE, "image"],
            size=(320, 360),
            title="Page or panel to extend",
        )
    )
    pad = g.add(
        Node(
            7,
            "MDIM_OutpaintPad",
            (400, 460),
            [("image", "IMAGE"), ("mask", "MASK")],
            list(OUTPAINT_WIDGETS),
            inputs=[("image", "IMAGE")],
            size=(340, 330),
            title="MDIM Outpaint Pad",
        )
    )
    sgim = g.add(
        Node(
            10,
            "MDIM_SGIMInpaint",
            (840, 60),
            [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
            outpaint_sgim_widgets(),
            inputs=list(SGIM_INPUTS),
            size=(340, 640),
            title="MDIM SGIM Inpaint",
        )
    )
    save = g.add(
        Node(
            20, "SaveImage", (1220, 60), [], ["MDIM/outpaint"], inputs=[("images", "IMAGE")], size=(420, 480)
        )
    )
    preview = g.add(Node(21, "PreviewImage", (1220, 580), [], [], inputs=[("images", "IMAGE")], size=(420, 480),
                         title="Structure pass (SGI) preview"))  # fmt: skip
    g.link(page, 0, pad, "image")
    g.link(ckpt, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    g.link(ckpt, 2, sgim, "vae")
    g.link(pad, 0, sgim, "image")
    g.link(pad, 1, sgim, "mask")
    g.link(sgim, 0, save, "images")
    g.link(sgim, 1, preview, "images")
    return g


def repaint_samplercustom() -> Graph:
    """RePaint inpainting with core SamplerCustom: page + mask -> VAE Encode + Set Latent Noise Mask ->
    SamplerCustom (MDIM RePaint Sampler, BasicScheduler) -> VAE Decode -> composited onto the page."""
    g = Graph()
    ckpt, pos, neg = _loader_and_prompts(g)
    page = g.add(
        Node(
            2,
            "LoadImage",
            (40, 420),
            [("IMAGE", "IMAGE"), ("MASK", "MASK")],
            [PAGE, "image"],
            size=(320, 360),
            title="Page",
        )
    )
    mask_img = g.add(
        Node(
            3,
            "LoadImage",
            (40, 820),
            [("IMAGE", "IMAGE"), ("MASK", "MASK")],
            [MASK, "image"],
            size=(320, 360),
            title="Mask (white = repaint)",
        )
    )
    to_mask = g.add(
        Node(
            4,
            "ImageToMask",
            (400, 900),
            [("MASK", "MASK")],
            ["red"],
            inputs=[("image", "IMAGE")],
            size=(240, 60),
        )
    )
    encode = g.add(
        Node(
            7,
            "VAEEncode",
            (400, 460),
            [("LATENT", "LATENT")],
            [],
            inputs=[("pixels", "IMAGE"), ("vae", "VAE")],
            size=(220, 50),
        )
    )
    noise_mask = g.add(
        Node(
            8,
            "SetLatentNoiseMask",
            (400, 560),
            [("LATENT", "LATENT")],
            [],
            inputs=[("samples", "LATENT"), ("mask", "MASK")],
            size=(240, 50),
        )
    )
    repaint = g.add(
        Node(
            9,
            "MDIM_RePaintSampler",
            (840, 60),
            [("SAMPLER", "SAMPLER")],
            list(REPAINT_WIDGETS),
            size=(320, 110),
            title="MDIM RePaint Sampler",
        )
    )
    sigmas = g.add(
        Node(
            11,
            "BasicScheduler",
            (840, 210),
            [("SIGMAS", "SIGMAS")],
            ["simple", 30, 1.0],
            inputs=[("model", "MODEL")],
            size=(320, 110),
        )
    )
    sampler = g.add(Node(12, "SamplerCustom", (840, 360), [("output", "LATENT"), ("denoised_output", "LATENT")],
                         [True, 1234, "fixed", 7.0],
                         inputs=[("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                 ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"), ("latent_image", "LATENT")],
                         size=(320, 260)))  # fmt: skip
    decode = g.add(
        Node(
            13,
            "VAEDecode",
            (1200, 60),
            [("IMAGE", "IMAGE")],
            [],
            inputs=[("samples", "LATENT"), ("vae", "VAE")],
            size=(220, 50),
        )
    )
    # pixels outside the mask are the page's own, bit for bit (the VAE round trip changes them)
    composite = g.add(Node(14, "ImageCompositeMasked", (1200, 160), [("IMAGE", "IMAGE")], [0, 0, True],
                           inputs=[("destination", "IMAGE"), ("source", "IMAGE"), ("mask", "MASK")],
                           size=(320, 150), title="Keep the page outside the mask"))  # fmt: skip
    save = g.add(
        Node(20, "SaveImage", (1560, 60), [], ["MDIM/repaint"], inputs=[("images", "IMAGE")], size=(420, 480))
    )
    g.link(mask_img, 0, to_mask, "image")
    g.link(page, 0, encode, "pixels")
    g.link(ckpt, 2, encode, "vae")
    g.link(encode, 0, noise_mask, "samples")
    g.link(to_mask, 0, noise_mask, "mask")
    g.link(ckpt, 0, sigmas, "model")
    g.link(ckpt, 0, sampler, "model")
    g.link(pos, 0, sampler, "positive")
    g.link(neg, 0, sampler, "negative")
    g.link(repaint, 0, sampler, "sampler")
    g.link(sigmas, 0, sampler, "sigmas")
    g.link(noise_mask, 0, sampler, "latent_image")
    g.link(sampler, 0, decode, "samples")
    g.link(ckpt, 2, decode, "vae")
    g.link(page, 0, composite, "destination")
    g.link(decode, 0, composite, "source")
    g.link(to_mask, 0, composite, "mask")
    g.link(composite, 0, save, "images")
    return g


def main() -> None:
    outpaint().write(WORKFLOWS / "mdim_outpaint.json")
    repaint_samplercustom().write(WORKFLOWS / "mdim_repaint_samplercustom.json")


if __name__ == "__main__":
    main()
