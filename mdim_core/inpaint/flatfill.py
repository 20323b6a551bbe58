"""Flat fill: mask regions inside flat paper or solid ink are filled with that value, no model needed.

Most text of a manga page sits in white speech bubbles. There the right repaint is known exactly:
the paper around the text. A model fill risks a grey tint or "dirt" in the bubble; a flat fill is
exact and free. For every 8-connected region of the mask, :func:`flat_fill` looks at the ring of
pixels around it (``ring`` px wide, outside the mask):

- its value is the per-channel median of the ring (a value that occurs in the ring, so 8-bit
  pages stay 8-bit);
- the ring is *flat* when all but ``outliers`` of its pixels lie within ``tolerance`` of that
  value in every channel (scan noise, JPEG ringing, a touching outline's anti-aliased edge are
  tolerated), and the value is paper white or solid black: every colour channel within ``levels``
  of 1, or within ``levels`` of 0.

A flat region is filled with exactly the ring's value; the other regions stay in
``FlatFillResult.remaining`` for a model. Pixels outside the mask come back bit for bit, inputs
are never changed. The regions are labelled on a 4x coarser grid first and then exactly on each
group's box, and every ring is measured on its region's box (plus the ring), so a 4961x7016 page
with hundreds of regions costs little more than copying the page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ..textmask.common import EIGHT, grow_crop, pool_any, upsample

log = logging.getLogger("MDIM")

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive

#: Defaults, shared with the nodes and the command line.
TOLERANCE = 0.08
RING = 3
OUTLIERS = 0.02
LEVELS = 0.25
MIN_RING_PIXELS = 8


class FlatRegion(NamedTuple):
    """A region that took the flat-fill shortcut: page ``batch``, its box, the fill value, its size."""

    batch: int
    box: Box
    value: tuple[float, ...]  # one value per channel of the image
    pixels: int


@dataclass
class FlatFillResult:
    """``image``: the filled pages (the input object itself when nothing was flat).
    ``remaining``: bool ``[B, H, W]``, the mask pixels that were not filled (for a model).
    ``regions``: the regions filled, in page order then by position."""

    image: torch.Tensor
    remaining: torch.Tensor
    regions: list[FlatRegion] = field(default_factory=list)

    @property
    def filled_pixels(self) -> int:
        return sum(r.pixels for r in self.regions)

    def summary(self) -> str:
        """One line for logs: how many regions took the shortcut and how many stay for a model."""
        left = int(self.remaining.sum())
        return (f"flat fill: {len(self.regions)} region(s), {self.filled_pixels} px filled with paper/ink; "
                f"{left} mask px left for a model")


def _check(image, mask, tolerance, ring, outliers, levels) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image: expected a torch tensor [B, H, W, C], got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] not in (1, 2, 3, 4) or 0 in image.shape:
        raise ValueError(f"image: expected [B, H, W, C] with C = 1..4 and no empty side, got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"image: expected float values in 0..1, got dtype {image.dtype}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a bool torch tensor [B, H, W], got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool (True = repaint), got {mask.dtype}; binarise it first")
    if tuple(mask.shape) != tuple(image.shape[:3]):
        raise ValueError(f"mask: expected shape {tuple(image.shape[:3])} (the image's [B, H, W]), got {tuple(mask.shape)}")
    if not (isinstance(tolerance, (int, float)) and 0.0 <= tolerance <= 1.0):
        raise ValueError(f"tolerance: expected a number in 0..1, got {tolerance!r}")
    if not (isinstance(ring, (int, np.integer)) and not isinstance(ring, bool) and 1 <= ring <= 256):
        raise ValueError(f"ring: expected a whole number of pixels in 1..256, got {ring!r}")
    if not (isinstance(outliers, (int, float)) and 0.0 <= outliers < 0.5):
        raise ValueError(f"outliers: expected a share in [0, 0.5), got {outliers!r}")
    if not (isinstance(levels, (int, float)) and 0.0 <= levels <= 1.0):
        raise ValueError(f"levels: expected a number in 0..1, got {levels!r}")


def ring_value(pixels: np.ndarray, *, tolerance: float = TOLERANCE, outliers: float = OUTLIERS,
               levels: float = LEVELS) -> tuple[float, ...] | None:
    """The flat value of ring pixels ``[N, C]`` (float), or None when they are not flat paper/ink.

    Robust statistics: the lower per-channel median is the value; at most ``outliers`` of the
    pixels may differ from it by more than ``tolerance`` in any channel.
    """
    n, c = pixels.shape
    if n < MIN_RING_PIXELS:
        return None
    value = np.partition(pixels, (n - 1) // 2, axis=0)[(n - 1) // 2]
    dev = np.abs(pixels - value).max(axis=1)
    if np.count_nonzero(dev > tolerance) > outliers * n:
        return None
    colour = value[: 1 if c <= 2 else 3]
    if not (colour.min() >= 1.0 - levels or colour.max() <= levels):
        return None
    return tuple(float(v) for v in value)


def _regions(m: np.ndarray, cell: int = 4):
    """The 8-connected regions of a bool ``[H, W]`` mask, in the order of their first pixel (row by
    row): yields ``(box, own)`` with ``own`` the region's pixels on its box.

    Labelled in two steps, exactly: the any-pooled grid of ``cell x cell`` blocks first (a region
    never spans two groups of touching blocks), then each group's box at full resolution."""
    if not m.any():
        return []
    coarse = pool_any(m, cell)
    clab, _ = ndimage.label(coarse, EIGHT)
    found = []
    h, w = m.shape
    for k, sl in enumerate(ndimage.find_objects(clab), start=1):
        if sl is None:
            continue
        y0, x0 = sl[0].start * cell, sl[1].start * cell
        y1, x1 = min(h, sl[0].stop * cell), min(w, sl[1].stop * cell)
        group = m[y0:y1, x0:x1] & upsample(clab[sl] == k, cell, (y1 - y0, x1 - x0))
        lab, _ = ndimage.label(group, EIGHT)
        for j, fs in enumerate(ndimage.find_objects(lab), start=1):
            own = lab[fs] == j
            first = int(np.argmax(own[0]))  # the region's first pixel: top row, leftmost
            box = (y0 + fs[0].start, x0 + fs[1].start, y0 + fs[0].stop, x0 + fs[1].stop)
            found.append(((box[0], box[1] + first), box, own))
    found.sort(key=lambda r: r[0])
    return [(box, own) for _, box, own in found]


def flat_fill(
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    tolerance: float = TOLERANCE,
    ring: int = RING,
    outliers: float = OUTLIERS,
    levels: float = LEVELS,
) -> FlatFillResult:
    """Fill every mask region whose surrounding ring is flat paper or ink (see the module docstring).

    ``image``: float ``[B, H, W, C]`` in 0..1, C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA);
    ``mask``: bool ``[B, H, W]``, True = repaint. Alpha is filled like the other channels (with the
    ring's alpha) but does not decide flatness or paper/ink.
    """
    _check(image, mask, tolerance, ring, outliers, levels)
    remaining = mask.detach().to("cpu", copy=True)
    out_np = None  # numpy [B, H, W, C] copy of the pages, made at the first flat region
    regions: list[FlatRegion] = []
    b_count, h, w, c = image.shape
    # float64 pages keep their precision; the others are measured and filled in float32 (exact for
    # float16/bfloat16 values, which numpy cannot hold or view)
    work = torch.float64 if image.dtype == torch.float64 else torch.float32
    for b in range(b_count):
        m = remaining[b].numpy().copy()  # the page's own mask (remaining changes as regions fill)
        page = None  # the page as numpy (a view when it is already a CPU float32/float64 tensor)
        for (y0, x0, y1, x1), own in _regions(m):
            cy0, cx0 = max(0, y0 - ring), max(0, x0 - ring)
            cy1, cx1 = min(h, y1 + ring), min(w, x1 + ring)
            region = np.zeros((cy1 - cy0, cx1 - cx0), bool)
            region[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = own
            around = grow_crop(region, ring) & ~m[cy0:cy1, cx0:cx1]
            if np.count_nonzero(around) < MIN_RING_PIXELS:
                continue
            if page is None:
                page = image[b].detach().to("cpu", work).numpy()
            value = ring_value(page[cy0:cy1, cx0:cx1][around], tolerance=tolerance, outliers=outliers, levels=levels)
            if value is None:
                continue
            if out_np is None:
                out = image.detach().to("cpu", work, copy=True)
                out_np = out.numpy()
            out_np[b, y0:y1, x0:x1][own] = np.asarray(value, out_np.dtype)
            remaining[b].numpy()[y0:y1, x0:x1][own] = False
            regions.append(FlatRegion(b, (y0, x0, y1, x1), value, int(own.sum())))
    if out_np is None:
        result = image
    else:
        result = out.to(image.device, image.dtype)
    return FlatFillResult(image=result, remaining=remaining.to(mask.device), regions=regions)
