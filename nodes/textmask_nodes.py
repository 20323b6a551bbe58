"""Text mask and flat fill nodes: MDIM Text Mask (automatic text/bubble/SFX masks, no model needed) and
MDIM Flat Fill (mask regions inside flat paper or ink filled exactly, no model).

The algorithms live in ``mdim_core.textmask`` and ``mdim_core.inpaint.flatfill``; this module only
converts ComfyUI IMAGE/MASK batches to numpy pages and back. Inputs are never changed.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.utils
import numpy as np
import torch
from comfy_api.latest import io

from ..mdim_core.imaging import checks
from ..mdim_core.imaging import masks as mdim_masks
from ..mdim_core.inpaint import flatfill
from ..mdim_core.textmask import MIN_PAGE_SIDE as MIN_TEXT_PAGE
from ..mdim_core.textmask import TextMaskSettings, find_text, preview

log = logging.getLogger("MDIM")

#: The learned detector made by MDIM Text Detector Loader (an mdim_core TextDetector).
DetectorType = io.Custom("MDIM_TEXT_DETECTOR")


def _images(image, min_side: int) -> torch.Tensor:
    """The IMAGE input checked (shape, finite pixels, at least ``min_side`` px a side; alpha dropped)."""
    return checks.image_batch(image, "image", min_side=min_side)


def _progress(total: int, unique_id):
    return comfy.utils.ProgressBar(total, node_id=unique_id)


def _unique_id(cls):
    hidden = getattr(cls, "hidden", None)
    return getattr(hidden, "unique_id", None) if hidden is not None else None


def _list(items: list, limit: int = 8) -> str:
    return ", ".join(map(str, items[:limit])) + (f" ... (+{len(items) - limit})" if len(items) > limit else "")


class MDIMTextMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = TextMaskSettings()
        return io.Schema(
            node_id="MDIM_TextMask",
            display_name="MDIM Text Mask",
            category="MDIM/text",
            description=(
                "Finds the text of manga pages by itself, no hand-drawn mask and no model: text in speech bubbles "
                "(each glyph with its anti-aliased edge, never the bubble's outline), free text with its white "
                "halo, and big SFX (best effort, off by default). With a rough mask it finds the exact text pixels "
                "inside it instead (a box, a scribble, a bubble box of a detector, an SGIM mask drawn too large). "
                "An optional learned detector adds the text it finds. Works on clean scans, and on old ones after "
                "MDIM Scan Cleanup."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The pages (a batch is handled page by page)."),
                io.Boolean.Input("text_in_bubbles", default=d.bubbles,
                                 tooltip="Find the text inside speech bubbles (the bubble outline is kept)."),
                io.Boolean.Input("free_text", default=d.free_text,
                                 tooltip="Find text outside bubbles: narration on white, text with a white halo over the art."),
                io.Boolean.Input("sfx", default=d.sfx,
                                 tooltip="Find big sound effects drawn as outlined letters (best effort: may also take black "
                                 "shapes with a white outline). Off by default."),
                io.Int.Input("grow", default=d.grow, min=0, max=256, step=1,
                             tooltip="Page pixels added around the text found, so its anti-aliased edge, scan blur and JPEG "
                             "ringing go too. Inside bubbles the growth never reaches the outline."),
                io.Int.Input("min_size", default=d.min_size, min=0, max=4096, step=1,
                             tooltip="Smallest text block kept (its longer side, page pixels); smaller finds are dropped. "
                             "0 = automatic (0.8 % of the page's long side)."),
                io.Mask.Input("rough_mask", optional=True,
                              tooltip="Optional rough mask: only the text inside it is found, exactly (boxes, scribbles, a "
                              "bubble box from a detector, a mask drawn too large). The detectors are not run then."),
                DetectorType.Input("detector", optional=True,
                                   tooltip="Optional learned detector (MDIM Text Detector Loader): its text boxes are refined "
                                   "to exact text pixels and added to what the classical detector finds."),
            ],
            outputs=[
                io.Mask.Output(display_name="mask", tooltip="The text to remove (1 = remove), page size, one per page."),
                io.Image.Output(display_name="preview",
                                tooltip="The pages with the mask tinted red and the speech bubbles found framed in blue."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, text_in_bubbles, free_text, sfx, grow, min_size, rough_mask=None,
                detector=None) -> io.NodeOutput:
        image = _images(image, MIN_TEXT_PAGE)
        b, h, w, _ = image.shape
        settings = TextMaskSettings(bubbles=bool(text_in_bubbles), free_text=bool(free_text), sfx=bool(sfx),
                                    grow=int(grow), min_size=int(min_size))
        rough = None
        if rough_mask is not None:
            rough = mdim_masks.clean(rough_mask, batch=b, size=(h, w), name="rough_mask", dtype=torch.bool)
        if detector is not None and not hasattr(detector, "detect"):
            raise TypeError(f"detector: expected a detector from MDIM Text Detector Loader, got {type(detector).__name__}")
        out_masks, previews = [], []
        progress = _progress(b, _unique_id(cls))
        for i in range(b):
            comfy.model_management.throw_exception_if_processing_interrupted()
            page = image[i].detach().to("cpu", torch.float32).numpy()
            res = find_text(page, settings, rough=None if rough is None else rough[i].numpy(), detector=detector)
            counts = res.counts()
            extra = sum(1 for blk in res.blocks if blk.kind in ("rough", "detector"))
            log.info("[MDIM] Text Mask: page %d of %d: %d bubble(s) with text, %d free-text block(s), %d SFX%s; "
                     "%.2f %% of the page masked", i + 1, b, counts["bubble"], counts["free"], counts["sfx"],
                     f", {extra} refined region(s)" if extra else "", 100.0 * res.mask.mean())
            out_masks.append(torch.from_numpy(res.mask.astype(np.float32)))
            previews.append(torch.from_numpy(preview(page, res.mask, boxes=res.bubbles)))
            progress.update(1)
        return io.NodeOutput(torch.stack(out_masks), torch.stack(previews))


class MDIMFlatFill(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_FlatFill",
            display_name="MDIM Flat Fill",
            category="MDIM/text",
            description=(
                "Removes text without any model where that is exact: every mask region whose surrounding ring is flat "
                "paper white or solid black (within a tolerance for scan noise and JPEG) is filled with exactly that "
                "value, so white speech bubbles get no grey tint or dirt. The other regions are left as they are and "
                "come out as the 'remaining' mask, for a model (e.g. MDIM SGIM Inpaint). Outside the mask the pages "
                "stay bit-exact. The log lists the regions filled; the preview shows them green, the rest red."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The pages."),
                io.Mask.Input("mask", tooltip="What to remove (1 = remove), e.g. from MDIM Text Mask. One mask serves a whole "
                              "batch; a different size is resized."),
                io.Float.Input("tolerance", default=flatfill.TOLERANCE, min=0.0, max=0.5, step=0.01,
                               tooltip="How far (0..1) ring pixels may differ from the fill value and still count as flat: "
                               "scan noise and JPEG ringing. Higher fills more regions, with more risk."),
                io.Int.Input("ring", default=flatfill.RING, min=1, max=64, step=1,
                             tooltip="Width in pixels of the ring around each region that must be flat."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The pages with the flat regions filled; everything else unchanged."),
                io.Mask.Output(display_name="remaining",
                               tooltip="The mask regions that were not flat (1 = still to remove), for a model."),
                io.Image.Output(display_name="preview",
                                tooltip="The result with the filled regions tinted and framed green and the remaining mask red."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, image, mask, tolerance, ring) -> io.NodeOutput:
        image = _images(image, 1)
        b, h, w, c = image.shape
        m = mdim_masks.clean(mask, batch=b, size=(h, w), name="mask", dtype=torch.bool)
        comfy.model_management.throw_exception_if_processing_interrupted()
        res = flatfill.flat_fill(image, m, tolerance=float(tolerance), ring=int(ring))
        log.info("[MDIM] Flat Fill: %s", res.summary())
        for i in range(b):
            boxes = [r.box for r in res.regions if r.batch == i]
            if boxes:
                log.info("[MDIM] Flat Fill: page %d: filled flat (no model) %d region(s): %s", i + 1, len(boxes),
                         _list([f"y{y0}-{y1} x{x0}-{x1}" for y0, x0, y1, x1 in boxes]))
        previews = []
        out = res.image
        for i in range(b):
            filled = (m[i] & ~res.remaining[i]).numpy()
            page = out[i].detach().to("cpu", torch.float32).numpy()
            boxes = [r.box for r in res.regions if r.batch == i]
            previews.append(torch.from_numpy(preview(page, res.remaining[i].numpy(), flat=filled, flat_boxes=boxes)))
        _progress(1, _unique_id(cls)).update(1)
        return io.NodeOutput(out, res.remaining.float(), torch.stack(previews))


NODES = [MDIMTextMask, MDIMFlatFill]
