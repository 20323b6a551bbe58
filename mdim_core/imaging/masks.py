"""Mask cleanup: normalise shapes and sizes, binarise, grow, feather, find regions.

Masks inside ``mdim_core`` are float32 torch tensors ``[B, H, W]`` with 1 = repaint.
Every function here returns a new tensor and never edits its input.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

log = logging.getLogger("MDIM")

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(value).__name__}")
    return value


def normalize_mask(
    mask,
    *,
    batch: int,
    size: tuple[int, int],
    name: str = "mask",
    resize: bool = True,
) -> torch.Tensor:
    """Bring a user mask to ``[batch, H, W]`` float32 (bool stays bool) on the CPU, values in 0..1.

    Accepts ``[H, W]``, ``[B, H, W]`` and ``[B, H, W, 1]`` (torch or numpy, bool, integer
    0/1 or 0/255 is not guessed: integers must be 0/1, floats 0..1). A batch of 1 is
    broadcast to ``batch``; any other batch mismatch is an error. A mask of a different
    size than ``size`` is resized (bilinear, antialiased when shrinking) and logged, or refused
    with ``resize=False``.
    """
    mask = _as_tensor(mask, name)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{name}: expected shape [H, W], [B, H, W] or [B, H, W, 1], got {tuple(mask.shape)}")
    if mask.shape[1] == 0 or mask.shape[2] == 0 or mask.shape[0] == 0:
        raise ValueError(f"{name}: empty shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:  # already binary: no conversion, no range check (large pages)
        mask = mask.detach().cpu()
    else:
        mask = mask.detach().to("cpu", torch.float32)
        lo, hi = (float(v) for v in torch.aminmax(mask))  # one pass; NaN propagates, inf shows in the range
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{name}: contains NaN or infinite values; expected values in 0..1")
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"{name}: values must lie in 0..1 (1 = repaint), got range {lo:g}..{hi:g}")
        if lo < 0.0 or hi > 1.0:
            mask = mask.clamp(0.0, 1.0)
    if mask.shape[0] != batch:
        if mask.shape[0] != 1:
            raise ValueError(
                f"{name}: batch of {mask.shape[0]} masks for {batch} images; expected 1 (shared) or {batch}"
            )
        mask = mask.expand(batch, -1, -1)
    if tuple(mask.shape[1:]) != tuple(size):
        if not resize:
            raise ValueError(
                f"{name}: size {mask.shape[2]}x{mask.shape[1]} does not match the image size {size[1]}x{size[0]}"
            )
        mask = mask.float()
        log.info("[MDIM] %s: resized from %dx%d to the image size %dx%d", name, mask.shape[2], mask.shape[1], size[1], size[0])
        mask = resize_mask(mask, size)
    return mask.contiguous()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, H, W]`` soft masks to ``size``: area average when shrinking, bilinear when growing."""
    h, w = mask.shape[-2:]
    x = mask[:, None].float()
    th, tw = size
    if th <= h and tw <= w:
        out = F.interpolate(x, size=size, mode="area")
    else:
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=th < h or tw < w)
    return out[:, 0].clamp(0.0, 1.0)


def binarize(mask: torch.Tensor, threshold: float = 0.5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0/1 mask: 1 where ``mask >= threshold`` (which also snaps near-binary values).

    ``dtype=torch.bool`` gives a bool mask (a quarter of the memory on large pages).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: expected a value in (0, 1], got {threshold!r}")
    out = mask if mask.dtype == torch.bool else mask >= threshold
    return out if dtype == torch.bool else out.to(dtype)


def _np_bool(mask2d) -> np.ndarray:
    m = mask2d.numpy() if isinstance(mask2d, torch.Tensor) else np.asarray(mask2d)
    return m if m.dtype == bool else m > 0.5


def _bbox(mask2d: np.ndarray) -> Box | None:
    rows = np.flatnonzero(mask2d.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask2d.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate a binary ``[B, H, W]`` mask by a disk of radius ``pixels`` (negative erodes)."""
    if pixels == 0:
        return mask.clone()
    out = torch.empty_like(mask)
    for b in range(mask.shape[0]):
        if b > 0 and torch.equal(mask[b], mask[b - 1]):  # a shared mask: grow it once
            out[b] = out[b - 1]
            continue
        m = _np_bool(mask[b])
        if pixels > 0:
            box = _bbox(m)
            res = np.zeros_like(m)
            if box is not None:  # work only around the mask: pages are large, masks small
                h, w = m.shape
                y0, x0 = max(0, box[0] - pixels - 1), max(0, box[1] - pixels - 1)
                y1, x1 = min(h, box[2] + pixels + 1), min(w, box[3] + pixels + 1)
                sub = m[y0:y1, x0:x1]
                res[y0:y1, x0:x1] = ndimage.distance_transform_edt(~sub) <= pixels
        else:
            res = ndimage.distance_transform_edt(m) > -pixels
        out[b] = torch.from_numpy(res).to(mask.dtype)
    return out


def feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """Blend weights for a binary ``[B, H, W]`` mask that fall off inside the mask only.

    The weight is ``min(1, d / (pixels + 1))`` where ``d`` is the distance of a mask pixel
    to the nearest pixel outside the mask (1 on the mask's edge), and exactly 0 outside the
    mask. ``pixels = 0`` returns the mask itself. The mask's edges at the image border do
    not fade (the border is not "outside the mask").
    """
    if pixels < 0:
        raise ValueError(f"feather: expected pixels >= 0, got {pixels!r}")
    if pixels == 0:
        return mask.float()
    out = torch.empty(mask.shape, dtype=torch.float32)
    for b in range(mask.shape[0]):
        m = _np_bool(mask[b])
        if not m.any() or m.all():
            out[b] = torch.from_numpy(m.astype(np.float32))
            continue
        d = ndimage.distance_transform_edt(m)
        out[b] = torch.from_numpy(np.clip(d / (pixels + 1.0), 0.0, 1.0).astype(np.float32))
    return out


def region_labels(mask2d: torch.Tensor | np.ndarray, cell: int = 8) -> tuple[np.ndarray, tuple[int, int], list[Box]]:
    """Label the 8-connected regions of a binary ``[H, W]`` mask on a ``cell``-times coarser grid.

    The grid is any-pooled (a cell holding one mask pixel counts) and covers the mask's bounding
    box from ``origin`` ``(y, x)``: cell ``(i, j)`` spans pixels ``origin + (i, j) * cell`` onward.
    Returns ``(labels, origin, boxes)``: ``labels`` int32 ``[hc, wc]`` (0 = no mask, ``k`` =
    region ``k``), and ``boxes[k - 1]`` the exact pixel box of region ``k``'s own pixels. Every
    mask pixel lies in exactly one labelled cell, so the labels tell which region owns it.
    An empty mask gives ``(empty array, (0, 0), [])``.
    """
    if cell < 1:
        raise ValueError(f"cell: expected an integer >= 1, got {cell!r}")
    m = _np_bool(mask2d)
    box = _bbox(m)
    if box is None:
        return np.zeros((0, 0), dtype=np.int32), (0, 0), []
    y0, x0, y1, x1 = box  # label only the mask's bounding box
    sub = m[y0:y1, x0:x1]
    h, w = sub.shape
    hc, wc = -(-h // cell), -(-w // cell)
    padded = np.zeros((hc * cell, wc * cell), dtype=bool)
    padded[:h, :w] = sub
    coarse = padded.reshape(hc, cell, wc, cell).any(axis=(1, 3))
    labels, _ = ndimage.label(coarse, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        own = np.repeat(np.repeat(labels[sl] == k, cell, axis=0), cell, axis=1)
        fy, fx = sl[0].start * cell, sl[1].start * cell
        pix = padded[fy : fy + own.shape[0], fx : fx + own.shape[1]] & own
        b = _bbox(pix)
        boxes.append((b[0] + fy + y0, b[1] + fx + x0, b[2] + fy + y0, b[3] + fx + x0))
    return labels.astype(np.int32, copy=False), (y0, x0), boxes


def regions(mask2d: torch.Tensor | np.ndarray, cell: int = 1) -> list[Box]:
    """Bounding boxes of the 8-connected regions of a binary ``[H, W]`` mask, sorted by (y0, x0).

    ``cell > 1`` labels a ``cell``-times coarser any-pooled grid instead (much faster on large
    pages; see :func:`region_labels`): pixels in touching ``cell x cell`` blocks count as one
    region; boxes stay exact boxes of the region's own pixels.
    """
    if cell > 1:
        return sorted(region_labels(mask2d, cell)[2])
    m = _np_bool(mask2d)
    box = _bbox(m)
    if box is None:
        return []
    y0, x0, y1, x1 = box
    labels, _ = ndimage.label(m[y0:y1, x0:x1], structure=np.ones((3, 3), dtype=bool))
    return sorted((sl[0].start + y0, sl[1].start + x0, sl[0].stop + y0, sl[1].stop + x0)
                  for sl in ndimage.find_objects(labels) if sl is not None)


def clean(
    mask,
    *,
    batch: int,
    size: tuple[int, int],
    threshold: float = 0.5,
    grow_pixels: int = 0,
    name: str = "mask",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The whole cleanup chain: normalise shape/size, binarise (snaps near-binary values), grow."""
    m = binarize(normalize_mask(mask, batch=batch, size=size, name=name), threshold, dtype)
    return grow(m, grow_pixels) if grow_pixels else m
