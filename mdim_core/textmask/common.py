"""Shared pieces of the text detectors: page conversion, thresholds, small morphology on crops.

Pages are numpy arrays ``[H, W]`` or ``[H, W, C]`` (C = 1..4; alpha ignored), float in 0..1 or
uint8. Detection works on a grey page at a *working scale*: the page is min-pooled by an integer
factor so that its long side is at most :data:`WORK_SIDE` px (a 600-dpi A4 page by 2). Min-pooling
keeps every ink pixel (a block is as dark as its darkest pixel), so thin strokes and the outline of
a bubble never break up, and a mask found at that scale, blown up by the same factor, covers every
ink pixel of the page.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive

#: Shortest page side the detector accepts (px).
MIN_PAGE_SIDE = 8
#: Longest side of the working page (px).
WORK_SIDE = 3600
_LUMA = (0.299, 0.587, 0.114)
EIGHT = np.ones((3, 3), bool)


def check_page(image, name: str = "image", min_side: int = MIN_PAGE_SIDE) -> np.ndarray:
    """Validate a page (sides of at least ``min_side`` px) and return it as ``[H, W, C]`` (a view, never a
    copy of the pixels)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array [H, W] or [H, W, C], got {type(image).__name__}")
    arr = image[..., None] if image.ndim == 2 else image
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] < min_side or arr.shape[1] < min_side:
        raise ValueError(f"{name}: expected [H, W] or [H, W, C] with C = 1..4 and sides >= {min_side} px, got {tuple(image.shape)}")
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected float values in 0..1 or uint8, got dtype {arr.dtype}")
    return arr


def work_factor(shape: tuple[int, int], side: int = WORK_SIDE) -> int:
    """The integer pooling factor that brings the long side to at most ``side`` px."""
    return max(1, math.ceil(max(shape) / side))


def holes_of(comp: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (8-connected) of what a bool region encloses: the parts of its complement that do not
    reach the crop's edge. Returns ``(labels, count)``, 0 = not a hole."""
    lab, n = ndimage.label(~comp, EIGHT)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    keep = np.ones(n + 1, bool)
    keep[edge] = False
    keep[0] = False
    return relabel(lab, keep)[0], int(keep.sum())


def work_gray(page: np.ndarray, f: int, rows: int = 32) -> np.ndarray:
    """Grey uint8 ``[ceil(H/f), ceil(W/f)]`` (0 = ink, 255 = paper): the luma of each pixel, then the
    minimum over ``f x f`` blocks (the last row and column of blocks may be smaller).

    Works through the page ``rows`` working rows at a time, so no page-sized float copy is made
    (a 600-dpi A4 RGB page is 420 MB as float32).
    """
    h_in, w_in, c = page.shape
    if f == 1 and page.dtype == np.uint8 and c <= 2:
        return np.ascontiguousarray(page[..., 0])
    out = np.empty((-(-h_in // f), -(-w_in // f)), np.uint8)
    luma = [np.float32(v) for v in _LUMA]
    step = rows * f
    for y in range(0, h_in, step):
        blk = page[y : y + step]
        if c >= 3:
            g = blk[..., 0] * luma[0]
            g += blk[..., 1] * luma[1]
            g += blk[..., 2] * luma[2]
        else:
            g = blk[..., 0]
        if f > 1:  # rows first (contiguous), then columns
            a = g[0::f].copy()
            for dy in range(1, f):
                v = g[dy::f]
                np.minimum(a[: v.shape[0]], v, out=a[: v.shape[0]])
            g = a[:, 0::f].copy()
            for dx in range(1, f):
                v = a[:, dx::f]
                np.minimum(g[:, : v.shape[1]], v, out=g[:, : v.shape[1]])
        dst = out[y // f : y // f + g.shape[0]]
        if g.dtype == np.uint8:
            dst[...] = g
            continue
        if page.dtype != np.uint8:
            g = g * np.float32(255.0)  # a new array: the page is never written
        g += np.float32(0.5)
        np.clip(g, 0, 255, out=g)
        dst[...] = g
    return out


def pool_any(mask: np.ndarray, c: int) -> np.ndarray:
    """Bool ``[ceil(h/c), ceil(w/c)]``: True where any pixel of the ``c x c`` block is True."""
    if c == 1:
        return mask.copy()
    h, w = mask.shape
    out = np.zeros((-(-h // c), -(-w // c)), bool)
    for dy in range(c):
        for dx in range(c):
            v = mask[dy::c, dx::c]
            out[: v.shape[0], : v.shape[1]] |= v
    return out


def upsample(mask: np.ndarray, c: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Each pixel of ``mask`` as a ``c x c`` block, cut to ``shape`` (default: the full size)."""
    big = mask if c == 1 else np.repeat(np.repeat(mask, c, axis=0), c, axis=1)
    return big if shape is None else big[: shape[0], : shape[1]]


def crop_gray(page: np.ndarray, box: Box) -> np.ndarray:
    """Grey float32 0..1 of a crop of the full-resolution page (luma of RGB, alpha ignored)."""
    y0, x0, y1, x1 = box
    sub = page[y0:y1, x0:x1]
    if sub.shape[2] >= 3:
        g = sub[..., 0] * np.float32(_LUMA[0]) + sub[..., 1] * np.float32(_LUMA[1]) + sub[..., 2] * np.float32(_LUMA[2])
    else:
        g = sub[..., 0]
    g = g.astype(np.float32)
    return g / np.float32(255.0) if page.dtype == np.uint8 else g


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of uint8 values (or floats in 0..1, then returned in 0..1)."""
    floats = values.dtype.kind == "f"
    v = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8) if floats else values
    hist = np.bincount(v.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5 if floats else 128.0
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mean_all = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    t = float(np.argmax(between)) + 0.5  # class 0 = values <= argmax
    return t / 255.0 if floats else t


#: Up to this radius a disk is grown as a union of rectangles (separable maximum filters, a few
#: per radius); beyond it through the distance transform.
RECT_RADIUS = 12


def _disk_rects(radius: float) -> list[tuple[int, int]]:
    """Half-sizes ``(ry, rx)`` of rectangles whose union is the disk of offsets ``dy² + dx² <= r²``."""
    r2 = radius * radius
    rects = []
    for dx in range(int(math.floor(radius)) + 1):
        dy = int(math.isqrt(max(0, int(math.floor(r2 - dx * dx)))))
        while dy * dy + dx * dx > r2:
            dy -= 1
        while (dy + 1) ** 2 + dx * dx <= r2:
            dy += 1
        rects.append((dy, dx))
    # a rectangle as tall as the next (wider) one is inside it
    return [r for i, r in enumerate(rects) if i == len(rects) - 1 or rects[i + 1][0] != r[0]]


def grow_crop(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate a bool array by a disk of ``radius`` px: True where a True pixel lies within Euclidean
    distance ``radius`` (``distance_transform_edt(~mask) <= radius``, computed faster for small radii)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    if radius > RECT_RADIUS or mask.size <= 1024:  # (tiny crops: the distance transform is quicker)
        return ndimage.distance_transform_edt(~mask) <= radius
    src = mask.view(np.uint8)
    out = np.zeros(mask.shape, bool)
    for ry, rx in _disk_rects(radius):
        d = ndimage.maximum_filter1d(src, 2 * ry + 1, axis=0, mode="constant") if ry else src
        if rx:
            d = ndimage.maximum_filter1d(d, 2 * rx + 1, axis=1, mode="constant")
        out |= d.view(bool)
    return out


def inner(mask: np.ndarray, depth: float) -> np.ndarray:
    """Pixels of a bool crop more than ``depth`` px inside it (no pixel outside it within ``depth``;
    the crop's own edge does not count as outside)."""
    if depth <= 0:
        return mask.copy()
    return ~grow_crop(~mask, depth)


def expand(box: Box, margin: int, shape: tuple[int, int]) -> Box:
    y0, x0, y1, x1 = box
    return max(0, y0 - margin), max(0, x0 - margin), min(shape[0], y1 + margin), min(shape[1], x1 + margin)


def relabel(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels with only the components ``keep[label]`` (bool per label, index 0 = background),
    renumbered 1..k; returns ``(labels, old ids in the new order)``."""
    ids = np.flatnonzero(keep)
    ids = ids[ids > 0]
    remap = np.zeros(len(keep), np.int32)
    remap[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return remap[labels], ids
