"""One entry point for a page's text mask: refinement of a rough mask, or the classical detector
together with an optional learned detector; and the preview picture the nodes and commands show."""

from __future__ import annotations

import numpy as np

from .classical import TextBlock, TextMaskResult, TextMaskSettings, detect_text
from .common import Box, check_page
from .detector import KIND_CLASSES, boxes_mask
from .refine import refine_mask


def find_text(image, settings: TextMaskSettings | None = None, *, rough=None, detector=None) -> TextMaskResult:
    """The text mask of a page (numpy ``[H, W]`` / ``[H, W, C]``, float 0..1 or uint8).

    - ``rough`` (bool or 0..1 ``[H, W]``): only the text inside it, refined (the detectors are not run;
      an empty rough mask gives an empty mask);
    - else the classical detector for the kinds ``settings`` enables, plus, with ``detector`` (a
      :class:`.detector.TextDetector`), the refined text boxes of its enabled classes.
    """
    settings = settings or TextMaskSettings()
    page = check_page(image)
    size = page.shape[:2]
    opts = dict(grow=settings.grow, protect=settings.protect, min_size=settings.min_size, threshold=settings.threshold)
    if rough is not None:
        return refine_mask(page, rough, **opts)
    if settings.bubbles or settings.free_text or settings.sfx:
        result = detect_text(page, settings)
    else:
        result = TextMaskResult(mask=np.zeros(size, bool))
    if detector is not None:
        kinds = [k for k, on in (("bubble", settings.bubbles), ("free", settings.free_text)) if on]
        classes = tuple(c for k in kinds for c in KIND_CLASSES[k])
        detections = detector.detect(page)
        boxes = boxes_mask(detections, size, classes)
        if boxes.any():
            found = refine_mask(page, boxes, **opts)
            result.mask |= found.mask
            result.blocks += [TextBlock("detector", b.box, b.glyphs) for b in found.blocks]
        result.bubbles += [d.box for d in detections if d.label == "bubble"]
    return result


def _frame(rgb: np.ndarray, box: Box, colour, width: int) -> None:
    h, w = rgb.shape[:2]
    y0, x0, y1, x1 = box
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    if y1 <= y0 or x1 <= x0:
        return
    c = np.asarray(colour, rgb.dtype)
    rgb[y0 : min(y1, y0 + width), x0:x1] = c
    rgb[max(y0, y1 - width) : y1, x0:x1] = c
    rgb[y0:y1, x0 : min(x1, x0 + width)] = c
    rgb[y0:y1, max(x0, x1 - width) : x1] = c


MASK_COLOUR = (1.0, 0.15, 0.1)  # red: to remove (left for a model)
FLAT_COLOUR = (0.1, 0.75, 0.2)  # green: filled flat (no model)
BOX_COLOUR = (0.1, 0.45, 1.0)  # blue: bubbles found


def preview(image, mask, *, flat=None, boxes=(), flat_boxes=(), alpha: float = 0.5) -> np.ndarray:
    """RGB float32 ``[H, W, 3]``: the page with ``mask`` tinted red, ``flat`` (pixels that took the
    flat-fill shortcut) tinted green, ``boxes`` framed blue and ``flat_boxes`` framed green. Any page size."""
    page = check_page(image, min_side=1)
    rgb = page[..., :3] if page.shape[2] >= 3 else np.repeat(page[..., :1], 3, axis=2)
    rgb = rgb.astype(np.float32) / np.float32(255.0) if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=True)
    width = max(2, int(round(max(rgb.shape[:2]) / 600)))
    for sel, colour in ((mask, MASK_COLOUR), (flat, FLAT_COLOUR)):
        if sel is None:
            continue
        sel = np.asarray(sel, bool)
        if sel.any():
            rgb[sel] = rgb[sel] * (1 - alpha) + np.float32(alpha) * np.asarray(colour, np.float32)
    for box in boxes:
        _frame(rgb, box, BOX_COLOUR, width)
    for box in flat_boxes:
        _frame(rgb, box, FLAT_COLOUR, width)
    return rgb
