"""Refinement: a rough mask (a box, a scribble, a detector's box, an SGIM mask drawn too large)
becomes the exact text pixels inside it.

For every 8-connected region of the rough mask, on its box plus a margin at full resolution:

1. Otsu's threshold of the grey values under the region splits ink from paper. Under a box or a
   mask the class with fewer pixels is the text (black on white, or white text on black); a thin
   scribble lies on the ink itself, so there the text is the class with more components inside the
   crop (the background is one piece or runs out of the crop);
2. the connected components of that class that touch the region's box are candidates (a scribble
   marks the text around it too);
3. rejected: components that run out of the crop (art, a panel border, a bubble outline crossing
   the box), components not enclosed by the paper the text sits on (the largest paper component
   under the box: art and screentone in the corners of a box lie elsewhere), components that
   enclose other candidates (the bubble's own outline around its text), and specks far smaller
   than the glyphs and away from them;
4. the kept components, grown by ``grow`` px, are the mask; pixels within ``protect`` px of a
   rejected component stay out of it (the outline and its anti-aliased edge survive).

Regions without contrast (flat paper) give nothing. Same idea as the mask refinement of
manga-image-translator and comic-translate (threshold + connected components + rejecting the
bubble outline + dilation), written for this package.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..imaging import masks
from .classical import TextBlock, TextMaskResult
from .common import EIGHT, check_page, crop_gray, expand, grow_crop, holes_of, otsu

#: Least grey-level spread (0..1) under a region for it to hold any text.
MIN_CONTRAST = 0.2


def _as_rough(rough, shape: tuple[int, int]) -> np.ndarray:
    arr = rough.detach().cpu().numpy() if hasattr(rough, "detach") else np.asarray(rough)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValueError(f"rough_mask: expected the page's size {shape}, got {tuple(arr.shape)}")
    return arr if arr.dtype == bool else arr >= 0.5


def refine_region(gray: np.ndarray, region: np.ndarray, *, rough: np.ndarray | None = None, area: bool = True,
                  grow: float = 3.0, protect: float = 2.0, threshold: float = 0.0) -> tuple[np.ndarray, int]:
    """Text pixels of one crop: ``gray`` float 0..1 ``[h, w]``, ``region`` bool (where to look in the
    crop: the rough region's box), ``rough`` the rough mask in the crop (default: ``region``),
    ``area`` False for a thin stroke (a scribble). Returns ``(mask, number of components kept)``."""
    rough = region if rough is None else rough
    under = gray[region]
    if under.size == 0 or float(under.max() - under.min()) < MIN_CONTRAST:
        return np.zeros_like(region), 0
    t = threshold or float(np.clip(otsu(under), 0.15, 0.85))
    dark = gray < t
    # which class is the text: the one with more components inside the crop that touch the region
    # (black glyphs on paper, or white glyphs on black; the background is one piece or runs out of the crop)
    best = None
    classes = (dark, ~dark)
    if area:  # a box, a mask: the minority under it is the text
        classes = (dark,) if dark[rough].mean() <= 0.5 else (~dark,)
    for text_class in classes:
        lab, n = ndimage.label(text_class, EIGHT)
        touching = np.unique(lab[region & text_class])
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        cand = np.setdiff1d(touching[touching > 0], edge).tolist()
        weight = len(cand)
        if best is None or weight > best[0]:
            best = (weight, text_class, lab, n, cand)
    _, text_class, lab, n, cand = best
    if not cand:
        return np.zeros_like(region), 0
    keep = np.zeros(n + 1, bool)
    keep[cand] = True
    slices = ndimage.find_objects(lab)
    # the background the text sits on: the largest paper component under the region; text is what
    # it encloses (screentone dots or art in the corners of a box lie on other paper)
    bg_lab, _ = ndimage.label(~text_class)
    counts = np.bincount(bg_lab[region].ravel(), minlength=int(bg_lab.max()) + 1)
    counts[0] = 0
    if counts.max() > 0:
        enclosed = holes_of(np.pad(bg_lab == int(counts.argmax()), 1))[0][1:-1, 1:-1] > 0
        for k in cand:
            sl = slices[k - 1]
            if not (enclosed[sl] & (lab[sl] == k)).any():
                keep[k] = False
    # a component that encloses other candidates is an outline (of the bubble holding the text)
    for k in cand:
        if not keep[k]:
            continue
        sl = slices[k - 1]
        hl, nh = holes_of(np.pad(lab[sl] == k, 1))
        if nh and (np.isin(lab[sl], cand) & (hl[1:-1, 1:-1] > 0)).any():
            keep[k] = False
    # specks far smaller than the glyphs and away from them (dust, screentone dots) are not text
    kept_ids = np.flatnonzero(keep)
    if len(kept_ids) > 1:
        size = np.array([max(slices[k - 1][0].stop - slices[k - 1][0].start,
                             slices[k - 1][1].stop - slices[k - 1][1].start) for k in kept_ids], np.float64)
        area = np.bincount(lab.ravel(), minlength=n + 1)[kept_ids].astype(np.float64)
        order = np.argsort(size)
        ref = size[order][np.searchsorted(np.cumsum(area[order]), area.sum() / 2)]
        big = kept_ids[size >= 0.25 * ref]
        near = grow_crop(np.isin(lab, big), 0.5 * ref)
        for k, sz in zip(kept_ids, size):
            if sz < 0.25 * ref:
                sl = slices[k - 1]
                keep[k] = bool((near[sl] & (lab[sl] == k)).any())
    kept = keep[lab]
    if not kept.any():
        return np.zeros_like(region), 0
    out = grow_crop(kept, grow)
    if protect > 0:
        rejected = text_class & ~kept
        if rejected.any():
            out &= ~grow_crop(rejected, protect) | kept
    return out, int(keep.sum())


def refine_mask(image, rough, *, grow: int = 3, protect: int = 2, min_size: int = 0,
                threshold: float = 0.0) -> TextMaskResult:
    """Exact text pixels inside every region of ``rough`` (bool or 0..1 ``[H, W]``) on ``image``
    (numpy ``[H, W]`` / ``[H, W, C]``, float 0..1 or uint8). Regions whose box is shorter than
    ``min_size`` px on its longer side are dropped."""
    page = check_page(image)
    h, w = page.shape[:2]
    m = _as_rough(rough, (h, w))
    out = np.zeros((h, w), bool)
    blocks = []
    for box in masks.regions(m, cell=4):
        y0, x0, y1, x1 = box
        if min_size and max(y1 - y0, x1 - x0) < min_size:
            continue
        # room for whole glyphs around a thin scribble (up to 4 % of the page's long side)
        margin = max(int(math.ceil(grow + protect)) + 2, int(0.05 * max(y1 - y0, x1 - x0)), int(0.04 * max(h, w)))
        crop = expand(box, margin, (h, w))
        cy0, cx0, cy1, cx1 = crop
        region = np.zeros((cy1 - cy0, cx1 - cx0), bool)  # the region's box: a scribble marks its whole text
        region[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = True
        rough_crop = m[cy0:cy1, cx0:cx1]
        area = min(y1 - y0, x1 - x0) >= 0.015 * max(h, w) and rough_crop.sum() >= 0.5 * (y1 - y0) * (x1 - x0)
        part, kept = refine_region(crop_gray(page, crop), region, rough=rough_crop, area=area, grow=grow,
                                   protect=protect, threshold=threshold)
        if kept:
            out[cy0:cy1, cx0:cx1] |= part
            blocks.append(TextBlock("rough", crop, kept))
    return TextMaskResult(mask=out, blocks=blocks)
