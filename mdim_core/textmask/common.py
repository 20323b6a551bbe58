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

#: Longest side of the working page (px).
WORK_SIDE = 3600
_LUMA = (0.299, 0.587, 0.114)
EIGHT = np.ones((3, 3), bool)


def check_page(image, name: str = "image") -> np.ndarray:
    """Validate a page and return it as ``[H, W, C]`` (a view, never a copy of the pixels)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array [H, W] or [H, W, C], got {type(image).__name__}")
    arr = image[..., None] if image.ndim == 2 else image
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"{name}: expected [H, W] or [H, W, C] with C = 1..4 and sides >= 8 px, got {tuple(image.shape)}")
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected float values in 0..1 or uint8, got dtype {arr.dtype}")
    return arr


def work_factor(shape: tuple[int, int], side: int = WORK_SIDE) -> int:
    """The integer pooling factor that brings the long side to at most ``side`` px."""
    return max(1, math.ceil(max(shape) / side))


def _minpool(plane: np.ndarray, f: int) -> np.ndarray:
    """Minimum over ``f x f`` blocks (the last row and column of blocks may be smaller)."""
    if f == 1:
        return plane
    out = plane[0::f, 0::f].copy()
    for dy in range(f):
        for dx in range(f):
            if dy or dx:
                v = plane[dy::f, dx::f]
                dst = out[: v.shape[0], : v.shape[1]]
                np.minimum(dst, v, out=dst)
    return out


def holes_of(comp: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (8-connected) of what a bool region encloses: the parts of its complement that do not
    reach the crop's edge. Returns ``(labels, count)``, 0 = not a hole."""
    lab, n = ndimage.label(~comp, EIGHT)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    keep = np.ones(n + 1, bool)
    keep[edge] = False
    keep[0] = False
    return relabel(lab, keep)[0], int(keep.sum())


def work_gray(page: np.ndarray, f: int) -> np.ndarray:
    """Grey uint8 ``[ceil(H/f), ceil(W/f)]`` (0 = ink, 255 = paper): each channel min-pooled, then luma."""
    c = page.shape[2]
    planes = [_minpool(page[..., i], f) for i in range(1 if c <= 2 else 3)]
    if len(planes) == 1:
        g = planes[0]
    else:
        g = planes[0].astype(np.float32) * _LUMA[0]
        g += planes[1].astype(np.float32) * _LUMA[1]
        g += planes[2].astype(np.float32) * _LUMA[2]
        if page.dtype == np.uint8:
            return np.clip(g + 0.5, 0, 255).astype(np.uint8)
    if g.dtype == np.uint8:
        return np.ascontiguousarray(g)
    return np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)


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


def grow_crop(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate a small bool crop by a disk of ``radius`` px (distance <= radius)."""
    if radius <= 0:
        return mask.copy()
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius


def inner(mask: np.ndarray, depth: float) -> np.ndarray:
    """Pixels of a bool crop at least ``depth`` px inside it (distance to its outside > depth)."""
    if depth <= 0:
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > depth


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
