"""Restoration node: MDIM Scan Cleanup (classical, no model).

The algorithm lives in ``mdim_core.restore.cleanup``; this module only converts ComfyUI IMAGE batches
(float32 [B, H, W, C] in 0..1) to numpy pages and back. The output is grayscale replicated to three
channels (ComfyUI's IMAGE convention), same size as the input. The input tensor is never changed.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.utils
import numpy as np
import torch
from comfy_api.latest import io

from ..mdim_core.imaging import checks
from ..mdim_core.restore import cleanup
from .host_compat import HOST_VERSION, LOAD_IMAGE_WHITENS_16_BIT

log = logging.getLogger("MDIM")


WHITE_WARNING = 0.995  # share of pure-white pixels above which a page is taken for a loading problem


def _warn_flat_pages(image: torch.Tensor) -> None:
    """Log a warning for pages that are (almost) all white or one flat value: usually a loading problem.

    ComfyUI's Load Image before 0.21 (verified on 0.8.0) reads 16-bit grayscale PNG/TIFF scans (mode I;16)
    as an all-white page (only values below 256 of 65535 keep any darkness), so the cleaned page is white
    too; newer hosts (verified on 0.28.0) read them correctly. The pixels are left as they are; the warning
    names the likely cause on this host and the fix.
    """
    rgb = image[..., :3]
    white = (rgb == 1.0).all(dim=-1).flatten(1).float().mean(dim=1)
    flat = rgb.flatten(1)
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    whites = [i + 1 for i in range(len(flat)) if white[i] >= WHITE_WARNING]
    flats = [(i + 1, float(hi[i])) for i in range(len(flat)) if lo[i] == hi[i] and white[i] < WHITE_WARNING]
    if whites and LOAD_IMAGE_WHITENS_16_BIT:
        log.warning(
            "[MDIM] Scan Cleanup: image page(s) %s of %d are all or almost all white, so the cleaned page is "
            "white too. ComfyUI's Load Image before 0.21 (this is %s) turns 16-bit grayscale PNG/TIFF scans "
            "(mode I;16) into a white page: convert the scan to 8-bit first, update ComfyUI, or clean it with "
            "`python -m mdim_core restore`, which reads 16-bit scans.", _list(whites), len(flat), _host_name())
    elif whites:
        log.warning(
            "[MDIM] Scan Cleanup: image page(s) %s of %d are all or almost all white, so the cleaned page is "
            "white too: check the node that feeds image.", _list(whites), len(flat))
    if flats:
        log.warning(
            "[MDIM] Scan Cleanup: image page(s) %s of %d are one flat value (%s) with no ink: check the node "
            "that feeds image.", _list([i for i, _ in flats]), len(flat),
            ", ".join(f"{v:.3g}" for _, v in flats[:10]))


def _host_name() -> str:
    return "ComfyUI " + ".".join(map(str, HOST_VERSION)) if HOST_VERSION else "an older ComfyUI"


def _list(pages: list[int]) -> str:
    return ", ".join(map(str, pages[:10])) + (" ..." if len(pages) > 10 else "")


class MDIMScanCleanup(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = cleanup.CleanupSettings()
        return io.Schema(
            node_id="MDIM_ScanCleanup",
            display_name="MDIM Scan Cleanup",
            category="MDIM/restore",
            description=(
                "Cleans an old, yellowed scan without any model: grayscale with the most ink/paper contrast, "
                "paper background (yellowing, uneven light, stains) divided out, scanner blur undone, and the "
                "MDIM thesis levels (auto-contrast, then 90..190 -> black..white). Screentone dots are kept. "
                "Optional deskew, bleed-through fading and despeckle."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The scanned pages (colour or grayscale; a batch is cleaned page by page)."),
                io.Combo.Input(
                    "gray", options=list(cleanup.GRAY_METHODS), default=d.gray,
                    tooltip="Grayscale conversion. auto weights the channels by their ink/paper contrast (yellowing "
                    "hides in blue); luma is the usual TV formula; red/green/max/mean are fixed choices.",
                ),
                io.Boolean.Input(
                    "remove_background", default=d.background,
                    tooltip="Estimate the paper's brightness (tint, uneven light, stains) and divide it out so paper "
                    "becomes white. Screentone panels and black areas keep their tone.",
                ),
                io.Combo.Input(
                    "levels", options=list(cleanup.LEVELS_MODES), default=d.levels,
                    tooltip="thesis: auto-contrast, then black..white point -> 0..255 (the MDIM recipe). points: "
                    "black..white point -> 0..255 only. off: no levels.",
                ),
                io.Float.Input(
                    "black_point", default=d.black_point, min=0.0, max=254.0, step=1.0,
                    tooltip="Level (0..255) that becomes pure black (thesis default 90).",
                ),
                io.Float.Input(
                    "white_point", default=d.white_point, min=1.0, max=255.0, step=1.0,
                    tooltip="Level (0..255) that becomes pure white (thesis default 190); must be above black_point.",
                ),
                io.Float.Input(
                    "sharpen", default=d.sharpen, min=0.0, max=10.0, step=0.1,
                    tooltip="Unsharp amount that undoes scanner blur so light screentones survive the levels, used in full "
                    "on blurry scans; sharper scans get less (the blur is measured on each page). 0 = off.",
                ),
                io.Float.Input(
                    "dpi", default=0.0, min=0.0, max=4800.0, step=1.0,
                    tooltip="The scan's resolution, for the sharpening radius (dpi/300 px); 0 = guess from the page size.",
                ),
                io.Float.Input(
                    "bleed_through", default=d.bleed_through, min=0.0, max=1.0, step=0.05,
                    tooltip="Fade faint marks showing through from the back page (only where no real ink is near); 0 = off.",
                ),
                io.Int.Input(
                    "despeckle", default=d.despeckle, min=0, max=1000, step=1,
                    tooltip="Remove isolated dark specks up to this area in px (screentone dots are never touched); 0 = off.",
                ),
                io.Boolean.Input(
                    "deskew", default=d.deskew,
                    tooltip="Straighten pages scanned slightly turned (up to 3 degrees), with bicubic resampling.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The cleaned pages: grayscale in 3 channels, same size as the input.")],
        )

    @classmethod
    def execute(cls, image, gray, remove_background, levels, black_point, white_point, sharpen, dpi,
                bleed_through, despeckle, deskew) -> io.NodeOutput:
        image = checks.image_batch(image, "image")  # alpha dropped (logged)
        settings = cleanup.CleanupSettings(
            gray=gray, background=bool(remove_background), levels=levels, black_point=float(black_point),
            white_point=float(white_point), sharpen=float(sharpen), dpi=float(dpi),
            bleed_through=float(bleed_through), despeckle=int(despeckle), deskew=bool(deskew),
        )
        _warn_flat_pages(image)
        out = []
        progress = comfy.utils.ProgressBar(len(image))
        for page in image:
            comfy.model_management.throw_exception_if_processing_interrupted()  # Cancel stops between pages
            arr = page.detach().to("cpu", torch.float32).numpy()  # a view or a copy: never written to
            clean = cleanup.clean_page(np.ascontiguousarray(arr), settings, name="image")
            out.append(torch.from_numpy(clean)[..., None].expand(-1, -1, 3))
            progress.update(1)
        return io.NodeOutput(torch.stack(out).contiguous())


NODES = [MDIMScanCleanup]
