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
    ckpt = g.add(Node(1, "CheckpointLoaderSimple", None, [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT]))
    sym = g.add(Node(2, "MDIM_SymVAELoader", None, [("MDIM_SYMVAE", "MDIM_SYMVAE")], [NO_ADAPTERS, False],
                     inputs=[("vae", "VAE")], title="MDIM Symmetric VAE Loader"))
    g.link(ckpt, 2, sym, "vae")
    return ckpt, sym


def _page_and_mask(g: Graph):
    page = g.add(Node(3, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [PAGE, "image"], title="Page"))
    mask_img = g.add(Node(4, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [MASK, "image"], title="Mask (white = remove)"))
    to_mask = g.add(Node(5, "ImageToMask", None, [("MASK", "MASK")], ["red"], inputs=[("image", "IMAGE")]))
    g.link(mask_img, 0, to_mask, "image")
    return page, to_mask


def _prompts(g: Graph, ckpt: Node):
    pos = g.add(Node(6, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], title="Positive prompt"))
    neg = g.add(Node(7, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], title="Negative prompt"))
    zsnr = g.add(Node(8, "MDIM_ZeroSNRModel", None, [("MODEL", "MODEL")], ["v_prediction", 0.7, False],
                      inputs=[("model", "MODEL")], title="MDIM Zero-SNR Model"))
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(ckpt, 0, zsnr, "model")
    return pos, neg, zsnr


def restore_scan() -> Graph:
    """Old scan -> MDIM Symmetric VAE Restore -> save (restoration adapters do the whole cleanup)."""
    g = Graph()
    _, sym = _loader(g)
    scan = g.add(Node(3, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [OLD_SCAN, "image"], title="Old scan"))
    restore = g.add(Node(10, "MDIM_SymVAERestore", None, [("IMAGE", "IMAGE")], [1024, True],
                         inputs=[("symvae", "MDIM_SYMVAE"), ("image", "IMAGE")],
                         title="MDIM Symmetric VAE Restore"))
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/symvae_restore_scan"], inputs=[("images", "IMAGE")]))
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
    enc = g.add(Node(9, "MDIM_SymVAEEncode", None, [("LATENT", "LATENT")], [True],
                     inputs=[("symvae", "MDIM_SYMVAE"), ("image", "IMAGE"), ("mask", "MASK")],
                     title="MDIM Symmetric VAE Encode"))
    ks = g.add(Node(10, "KSampler", None, [("LATENT", "LATENT")], [1234, "fixed", 30, 7.0, "euler", "simple", 1.0],
                    inputs=[("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                            ("latent_image", "LATENT")]))
    dec = g.add(Node(11, "MDIM_SymVAEDecode", None, [("IMAGE", "IMAGE")], ["base", True, 1024],
                     inputs=[("symvae", "MDIM_SYMVAE"), ("samples", "LATENT")],
                     title="MDIM Symmetric VAE Decode"))
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/symvae_text_removal"], inputs=[("images", "IMAGE")]))
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
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", None, [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
                      list(SGIM_WIDGETS), inputs=list(SGIM_INPUTS), title="MDIM SGIM Inpaint"))
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/symvae_sgim_text_removal"],
                      inputs=[("images", "IMAGE")]))
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
