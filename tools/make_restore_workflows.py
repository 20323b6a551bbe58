"""Write the old-scan restoration workflows shipped in ``workflows/``.

    python tools/make_restore_workflows.py

1. old scan -> MDIM Scan Cleanup -> save (no model)
2. old scan -> MDIM Scan Cleanup -> MDIM Symmetric VAE Restore -> save
3. old scan -> MDIM Scan Cleanup -> MDIM SGIM Inpaint (text mask from a loaded image), decoded
   through the Symmetric VAE -> save
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sgim_workflows import NEGATIVE, POSITIVE, SGIM_INPUTS, SGIM_WIDGETS  # noqa: E402
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CHECKPOINT = "sd15_mdim_zsnr_vpred.safetensors"
OLD_SCAN = "mdim_example_old_scan.png"
MASK = "mdim_example_mask.png"
# The untrained choice runs everywhere; pick your restoration adapter file (models/mdim) instead.
NO_ADAPTERS = "(none: untrained, decodes like the VAE)"

# gray, remove_background, levels, black_point, white_point, sharpen, dpi, bleed_through, despeckle, deskew
CLEANUP_WIDGETS = ["auto", True, "thesis", 90.0, 190.0, 3.0, 0.0, 0.0, 0, False]


def _scan_and_cleanup(g: Graph):
    scan = g.add(Node(2, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [OLD_SCAN, "image"], title="Old scan"))
    clean = g.add(Node(3, "MDIM_ScanCleanup", None, [("IMAGE", "IMAGE")], list(CLEANUP_WIDGETS),
                       inputs=[("image", "IMAGE")], title="MDIM Scan Cleanup"))
    g.link(scan, 0, clean, "image")
    return scan, clean


def _symvae(g: Graph, ckpt: Node) -> Node:
    loader = g.add(Node(4, "MDIM_SymVAELoader", None, [("MDIM_SYMVAE", "MDIM_SYMVAE")], [NO_ADAPTERS, False],
                        inputs=[("vae", "VAE")], title="MDIM Symmetric VAE Loader (restoration adapters)"))
    g.link(ckpt, 2, loader, "vae")
    return loader


def _checkpoint(g: Graph) -> Node:
    return g.add(Node(1, "CheckpointLoaderSimple", None, [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                      [CHECKPOINT]))


def scan_cleanup() -> Graph:
    g = Graph()
    scan, clean = _scan_and_cleanup(g)
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/scan_cleanup"], inputs=[("images", "IMAGE")]))
    g.link(clean, 0, save, "images")
    return g


def symvae_restore() -> Graph:
    g = Graph()
    ckpt = _checkpoint(g)
    scan, clean = _scan_and_cleanup(g)
    loader = _symvae(g, ckpt)
    restore = g.add(Node(5, "MDIM_SymVAERestore", None, [("IMAGE", "IMAGE")], [1024, True],
                         inputs=[("symvae", "MDIM_SYMVAE"), ("image", "IMAGE")],
                         title="MDIM Symmetric VAE Restore"))
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/symvae_restore"], inputs=[("images", "IMAGE")]))
    g.link(loader, 0, restore, "symvae")
    g.link(clean, 0, restore, "image")
    g.link(restore, 0, save, "images")
    return g


def text_removal() -> Graph:
    g = Graph()
    ckpt = _checkpoint(g)
    scan, clean = _scan_and_cleanup(g)
    loader = _symvae(g, ckpt)
    mask_img = g.add(Node(6, "LoadImage", None, [("IMAGE", "IMAGE"), ("MASK", "MASK")], [MASK, "image"], title="Text mask (white = remove)"))
    to_mask = g.add(Node(7, "ImageToMask", None, [("MASK", "MASK")], ["red"], inputs=[("image", "IMAGE")]))
    pos = g.add(Node(8, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [POSITIVE],
                     inputs=[("clip", "CLIP")], title="Positive prompt"))
    neg = g.add(Node(9, "CLIPTextEncode", None, [("CONDITIONING", "CONDITIONING")], [NEGATIVE],
                     inputs=[("clip", "CLIP")], title="Negative prompt"))
    sgim = g.add(Node(10, "MDIM_SGIMInpaint", None, [("image", "IMAGE"), ("sgi_preview", "IMAGE")],
                      list(SGIM_WIDGETS), inputs=list(SGIM_INPUTS),
                      title="MDIM SGIM Inpaint (decodes through the Symmetric VAE)"))
    save = g.add(Node(20, "SaveImage", None, [], ["MDIM/restore_text_removal"], inputs=[("images", "IMAGE")]))
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(ckpt, 0, sgim, "model")
    g.link(pos, 0, sgim, "positive")
    g.link(neg, 0, sgim, "negative")
    g.link(ckpt, 2, sgim, "vae")
    g.link(clean, 0, sgim, "image")
    g.link(mask_img, 0, to_mask, "image")
    g.link(to_mask, 0, sgim, "mask")
    g.link(loader, 0, sgim, "symvae")
    g.link(sgim, 0, save, "images")
    return g


def main() -> None:
    scan_cleanup().write(WORKFLOWS / "mdim_restore_scan_cleanup.json")
    symvae_restore().write(WORKFLOWS / "mdim_restore_symvae.json")
    text_removal().write(WORKFLOWS / "mdim_restore_text_removal.json")


if __name__ == "__main__":
    main()
