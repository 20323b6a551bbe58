"""Random inpainting masks that do not depend on the artwork (LaMa-style "wide" and "box" masks,
and small-object masks). All return bool ``[H, W]`` arrays, True = to repaint."""

from __future__ import annotations

import math

import numpy as np

from .raster import Ellipse, coverage, stroke_coverage


def _check(shape):
    h, w = shape
    if h < 8 or w < 8:
        raise ValueError(f"shape must be at least 8x8 px, got {shape}")
    return h, w


def wide_mask(rng: np.random.Generator, shape: tuple[int, int], coverage_range=(0.1, 0.4)) -> np.ndarray:
    """Thick random brush strokes (width 3-10 % of the short side) until a random share of the page
    in ``coverage_range`` is covered."""
    h, w = _check(shape)
    target = rng.uniform(*coverage_range)
    side = min(h, w)
    mask = np.zeros((h, w), bool)
    covered = 0
    for _ in range(200):
        n = int(rng.integers(3, 9))
        width = rng.uniform(0.03, 0.10) * side
        pts = [rng.uniform([0, 0], [w, h])]
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(n):
            angle += rng.uniform(-1.2, 1.2)
            step = rng.uniform(0.05, 0.2) * side
            pts.append(np.clip(pts[-1] + step * np.array([math.cos(angle), math.sin(angle)]), 0, [w, h]))
        cov = stroke_coverage(np.array(pts), width / 2, (0, h, 0, w))
        if cov is not None:
            (y0, y1, x0, x1), a = cov
            region = mask[y0:y1, x0:x1]
            before = int(region.sum())
            region |= a >= 0.5
            covered += int(region.sum()) - before
        if covered >= target * h * w:
            break
    return mask


def box_mask(rng: np.random.Generator, shape: tuple[int, int], coverage_range=(0.1, 0.4)) -> np.ndarray:
    """Random axis-aligned rectangles (10-40 % of each side) until a random share of the page in
    ``coverage_range`` is covered."""
    h, w = _check(shape)
    target = rng.uniform(*coverage_range)
    mask = np.zeros((h, w), bool)
    covered = 0
    for _ in range(100):
        bh, bw = int(rng.uniform(0.1, 0.4) * h), int(rng.uniform(0.1, 0.4) * w)
        y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        region = mask[y0 : y0 + bh, x0 : x0 + bw]
        before = int(region.sum())
        region[...] = True
        covered += int(region.sum()) - before
        # Stop before overshooting the range's top when one more box would exceed it.
        if covered >= target * h * w:
            break
    return mask


def small_mask(rng: np.random.Generator, shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """A few small blobs (dust, specks, small marks): 3-15 ellipses of 3-20 px radius at 300 dpi."""
    h, w = _check(shape)
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(3, 16))):
        a = rng.uniform(3, 20) * scale
        b = a * rng.uniform(0.4, 1.0)
        cov = coverage(Ellipse(rng.uniform(0, w), rng.uniform(0, h), a, b, rng.uniform(0, math.pi), margin=2), (0, h, 0, w))
        if cov is not None:
            (y0, y1, x0, x1), c = cov
            mask[y0:y1, x0:x1] |= c >= 0.5
    return mask
