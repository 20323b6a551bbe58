"""Tone levels and the MDIM thesis' ground-truth preparation of scanned pages.

All functions take single pages as numpy arrays and return float32 ``[H, W]`` grayscale in 0..1
(0 = black ink, 1 = white paper). Inputs may be ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
``[H, W, 4]`` (alpha is ignored), float in 0..1 or ``uint8`` in 0..255. Inputs are never modified.

Level values (``lo``, ``hi``) are given on the familiar 0..255 scale, whatever the array's dtype.

The thesis prepares the clean targets of restoration as::

    grayscale -> auto-contrast (darkest -> 0, brightest -> 255) -> linear map of 90..190 to 0..255

which is :func:`prepare_ground_truth`.
"""

from __future__ import annotations

import numpy as np

from ..imaging import checks

__all__ = [
    "to_grayscale",
    "auto_contrast",
    "level_map",
    "prepare_ground_truth",
    "LUMA_WEIGHTS",
]

# ITU-R BT.601 luma, the weights PIL's "L" conversion and OpenCV's RGB2GRAY use.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: Pages whose values span less than this (one step of a 16-bit scan) are flat: the difference is
#: float rounding (a blank page after the background is divided out is 1.0 give or take 1e-7), and
#: stretching it to 0..1 would turn a blank page black.
FLAT_SPAN = 1.0 / 65535.0

# Rows processed at once when a page is large: keeps float temporaries small on 600-dpi scans.
_ROWS_PER_CHUNK = 1024


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Grayscale float32 ``[H, W]`` in 0..1 from a gray, RGB or RGBA page (BT.601 luma). A new array."""
    gray = _gray_view(image, "image")
    return gray.copy() if np.shares_memory(gray, image) else gray


def _gray_view(image: np.ndarray, name: str) -> np.ndarray:
    """Like :func:`to_grayscale`, but may return a view of ``image`` (never write into it)."""
    img = checks.page_array(image, name)
    if img.shape[2] == 1:
        return img[:, :, 0]
    out = np.empty(img.shape[:2], dtype=np.float32)
    w = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    for y0 in range(0, img.shape[0], _ROWS_PER_CHUNK):
        rows = img[y0 : y0 + _ROWS_PER_CHUNK, :, :3]
        out[y0 : y0 + _ROWS_PER_CHUNK] = rows @ w
    return out


def auto_contrast(gray: np.ndarray, clip: float = 0.0) -> np.ndarray:
    """Stretch a grayscale page so its darkest value becomes 0 and its brightest 1.

    ``clip`` (a fraction in 0..0.5) ignores that share of the darkest and of the brightest pixels,
    like PIL's ``ImageOps.autocontrast(cutoff=...)``; 0 uses the true minimum and maximum. A flat
    page (values within :data:`FLAT_SPAN` of each other) is returned unchanged.
    """
    g = _gray_view(gray, "gray")
    if not 0.0 <= clip < 0.5:
        raise ValueError(f"clip must be a fraction in [0, 0.5), got {clip}")
    if clip > 0:
        lo, hi = np.quantile(g, [clip, 1.0 - clip])
    else:
        lo, hi = g.min(), g.max()
    lo, hi = float(lo), float(hi)
    if hi - lo <= FLAT_SPAN:
        return np.array(g, dtype=np.float32, copy=True)
    return _affine_clip(g, lo, hi)


def _affine_clip(g: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(g - lo) / (hi - lo) clipped to 0..1, chunked, float32."""
    out = np.empty(g.shape, dtype=np.float32)
    scale = np.float32(1.0 / (hi - lo))
    lo32 = np.float32(lo)
    for y0 in range(0, g.shape[0], _ROWS_PER_CHUNK):
        rows = out[y0 : y0 + _ROWS_PER_CHUNK]
        np.subtract(g[y0 : y0 + _ROWS_PER_CHUNK], lo32, out=rows)
        rows *= scale
        np.clip(rows, 0.0, 1.0, out=rows)
    return out


def level_map(gray: np.ndarray, lo: float = 90.0, hi: float = 190.0) -> np.ndarray:
    """Map the input level range ``lo..hi`` (0..255 scale) linearly onto 0..1, clipping outside.

    Values at or below ``lo`` become black (0), at or above ``hi`` white (1).
    """
    g = _gray_view(gray, "gray")
    if not (0.0 <= lo < hi <= 255.0):
        raise ValueError(f"lo and hi must satisfy 0 <= lo < hi <= 255, got lo={lo}, hi={hi}")
    return _affine_clip(g, lo / 255.0, hi / 255.0)


def prepare_ground_truth(
    image: np.ndarray, lo: float = 90.0, hi: float = 190.0, clip: float = 0.0
) -> np.ndarray:
    """The thesis' clean-target preparation: grayscale -> auto-contrast -> map ``lo..hi`` to 0..1.

    Returns float32 ``[H, W]`` in 0..1. ``lo``/``hi`` are on the 0..255 scale (defaults 90 and 190);
    ``clip`` is passed to :func:`auto_contrast`.
    """
    if not (0.0 <= lo < hi <= 255.0):
        raise ValueError(f"lo and hi must satisfy 0 <= lo < hi <= 255, got lo={lo}, hi={hi}")
    stretched = auto_contrast(_gray_view(image, "image"), clip=clip)
    return level_map(stretched, lo, hi)
