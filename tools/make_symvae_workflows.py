"""Write the Symmetric VAE workflows shipped in ``workflows/``.

    python tools/make_symvae_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sgim_workflows import NEGATIVE, POSITIVE, SGIM_INPUTS, SGIM_WIDGETS  # noqa: E402
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CHECKPOINT = "sd15_mdim_zsnr_vpred.safetensors"
PAGE = "mdim_example_page.png"
MASK = "mdim_example_mask.png"
OLD_SCAN = "mdim_example_old_scan.png"
NO_ADAPTERS = "(none: untrained, decodes like the VAE)"  # pick your adapter file in models/mdim


def _loader(g: Graph):
    ckpt = g.add(Node(1, "CheckpointLoaderSimple", (40, 60), [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT], size=(320, 100)))
    sym = g.add(Node(2, "MDIM_SymVAELoader", (400, 60), [("MDIM_SYMVAE", "MDIM_SYMVAE")], [NO_ADAPTERS, False],
                     inputs=[("vae", "VAE")], size=(360, 110), title="MDIM Symmetric VAE Loader"))
    g.link(ckpt, 2, sym, "vae")
    return ckpt, sym


def _page_and_mask(g: Graph):
    page = g.add(Node(3, "LoadImage", (40, 420), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"],
                      size=(320, 360), title="Page"))
    mask_img = g.add(Node(4, "LoadImage", (40, 820), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [MASK, "image"],
                          size=(320, 360), title="Mask (white = remove)"))
    to_mask = g.add(Node(5, "ImageToMask", (400, 900), [("MASK", "MASK")], ["red"], inputs=[("image", "IMAGE")],
                         size=(240, 60)))
    g.link(mask_img, 0, to_mask, "image")
    return page, to_mask


def _prompts(g: Graph, ckpt: Node):
    pos = g.add(Node(6, "CLIPTextEncode", (400, 220), [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Positive prompt"))
    neg = g.add(Node(7, "CLIPTextEncode", (400, 410), [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], size=(400, 150), title="Negative prompt"))
    zsnr = g.add(Node(8, "MDIM_ZeroSNRModel", (400, 600), [("MODEL", "MODEL")], ["v_prediction", 0.7, False],
                      inputs=[("model", "MODEL")], size=(320, 110), title="MDIM Zero-SNR Model"))
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(ckpt, 0, zsnr, "model")
    return pos, neg, zsnr


def restore_scan() -> Graph:
    """Old scan -> MDIM Symmetric VAE Restore -> save (restoration adapters do the whole cleanup)."""
    g = Graph()
    _, sym = _loader(g)
    scan = g.add(Node(3, "LoadImage", (40, 420), [("IMAGE", "IMAGE"), ("MASK", "MASK")], [OLD_SCAN, "image"],
                      size=(320, 360), title="Old scan"))
    restore = g.add(Node(10, "MDIM_SymVAERestore", (820, 60), [("IMAGE", "IMAGE")], [1024, True],
                         inputs=[("symvae", "MDIM_SYMVAE"), ("image", "IMAGE")], size=(340, 110),
                         title="MDIM Symmetric VAE Restore"))
    save = g.add(Node(20, "SaveImage", (1200, 60), [], ["MDIM/symvae_restore_scan"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    g.link(sym, 0, restore, "symvae")
    g.link(scan, 0, restore, "image")
    g.link(restore, 0, save, "images")
    return g


def text_removal_ksampler() -> Graph:
    """Page + mask -> Symmetric VAE Encode -> core KSampler -> Symmetric VAE Decode -> save."""
    g = Graph()
    ckpt, sym = _loader(g)
    page, mask = _page_and_mask(g)
    pos, neg, zsnr = _prompts(g, ckpt)
    enc = g.add(Node(9, "MDIM_SymVAEEncode", (840, 600), [("LATENT", "LATENT")], [True],
                     inputs=[("symvae", "MDIM_SYMVAE"), ("image", "IMAGE"), ("mask", "MASK")], size=(340, 110),
                     title="MDIM Symmetric VAE Encode"))
    ks = g.add(Node(10, "KSampler", (1220, 60), [("LATENT", "LATENT")], [1234, "fixed", 30, 7.0, "euler", "simple", 1.0],
                    inputs=[("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                            ("latent_image", "LATENT")], size=(320, 262)))
    dec = g.add(Node(11, "MDIM_SymVAEDecode", (1580, 60), [("IMAGE", "IMAGE")], ["base", True, 1024],
                     inputs=[("symvae", "MDIM_SYMVAE"), ("samples", "LATENT")], size=(340, 130),
                     title="MDIM Symmetric VAE Decode"))
    save = g.add(Node(20, "SaveImage", (1960, 60), [], ["MDIM/symvae_text_removal"], inputs=[("images", "IMAGE")],
                      size=(420, 480)))
    g.link(sym, 0, enc, "symvae")
    g.link(page, 0, enc, "image")
    g.link(mask, 0, enc, "mask")
    g.link(zsnr, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(enc, 0, ks, "latent_image")
    g.link(sym, 0, dec, "symvae")
    g.link(ks, 0, dec, "samples")
    g.link(dec, 0, save, "images")
    return g


def sgim_text_removal() -> Graph:
    """Page + mask -> MDIM SGIM Inpaint decoding through the Symmetric VAE -> save."""
    g = Graph()
    ckpt, sym = _loader(g)
    page, mask = _page_and_mask(g)
    pos, neg, zsnr = _prompts(g, ckpt)
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", (1180, 60), [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
                      list(SGIM_WIDGETS), inputs=list(SGIM_INPUTS), size=(340, 640), title="MDIM SGIM Inpaint"))
    save = g.add(Node(20, "SaveImage", (1560, 60), [], ["MDIM/symvae_sgim_text_removal"],
                      inputs=[("images", "IMAGE")], size=(420, 480)))
    g.link(zsnr, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    g.link(ckpt, 2, sgim, "vae")
    g.link(page, 0, sgim, "image")
    g.link(mask, 0, sgim, "mask")
    g.link(sym, 0, sgim, "symvae")
    g.link(sgim, 0, save, "images")
    return g


def main() -> None:
    restore_scan().write(WORKFLOWS / "mdim_symvae_restore_scan.json")
    text_removal_ksampler().write(WORKFLOWS / "mdim_symvae_text_removal_ksampler.json")
    sgim_text_removal().write(WORKFLOWS / "mdim_symvae_sgim_text_removal.json")


if __name__ == "__main__":
    main()
