"""Geometry and resampling: crop boxes, merging, panels, padding to multiples, halving plans.

Images are float32 torch tensors ``[B, H, W, C]`` in 0..1, masks ``[B, H, W]``. Boxes are
``(y0, x0, y1, x1)`` in pixels, end-exclusive. Nothing here edits its inputs.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

Box = tuple[int, int, int, int]
PlanMode = Literal["halve", "fit"]
PadMode = Literal["replicate", "reflect"]


# --- boxes -------------------------------------------------------------------------------


def box_size(box: Box) -> tuple[int, int]:
    return box[2] - box[0], box[3] - box[1]


def boxes_overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def union_box(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def offset_box(box: Box, origin: tuple[int, ...]) -> Box:
    """``box`` moved by ``origin`` ``(y, x)`` (e.g. from a crop's or frame's pixels to the page's)."""
    return box[0] + origin[0], box[1] + origin[1], box[2] + origin[0], box[3] + origin[1]


def widen_spans(lo, hi, want: int, low, high):
    """Widen spans ``[lo, hi)`` symmetrically to ``want`` (at most ``high - low``), shifted to stay inside
    ``[low, high)``; spans already that wide are kept. Works on ints and on numpy arrays alike."""
    want = np.minimum(want, np.subtract(high, low))
    extra = np.maximum(want - np.subtract(hi, lo), 0)
    lo, hi = np.subtract(lo, extra // 2), np.add(hi, extra - extra // 2)
    shift = np.maximum(np.subtract(low, lo), 0)
    lo, hi = lo + shift, hi + shift
    shift = np.maximum(np.subtract(hi, high), 0)
    lo, hi = np.maximum(low, lo - shift), hi - shift
    if np.ndim(lo) == 0:
        return int(lo), int(hi)
    return lo, hi


def expand_box(box: Box, margin: int, image_size: tuple[int, int], min_side: int = 0) -> Box:
    """Add ``margin`` pixels of context on every side, widen to ``min_side``, clamp to the image."""
    h, w = image_size
    y0, x0 = max(0, box[0] - margin), max(0, box[1] - margin)
    y1, x1 = min(h, box[2] + margin), min(w, box[3] + margin)
    y0, y1 = widen_spans(y0, y1, min_side, 0, h)
    x0, x1 = widen_spans(x0, x1, min_side, 0, w)
    return y0, x0, y1, x1


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Merge overlapping boxes into their union until no two overlap; sorted by (y0, x0)."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        merged: list[Box] = []
        for box in out:
            for i, other in enumerate(merged):
                if boxes_overlap(box, other):
                    merged[i] = union_box(box, other)
                    changed = True
                    break
            else:
                merged.append(box)
        out = merged
    return sorted(out)


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: (start, end, core_start, core_end); cores partition [0, length)."""
    if length <= tile:
        return [(0, length, 0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    ends = [s + tile for s in starts]
    cuts = [0] + [(ends[i] + starts[i + 1]) // 2 for i in range(n - 1)] + [length]
    return [(starts[i], ends[i], cuts[i], cuts[i + 1]) for i in range(n)]


def tile_boxes(size: tuple[int, int], tile: int, overlap: int) -> list[tuple[Box, Box]]:
    """Overlapping tiles of at most ``tile`` x ``tile`` covering ``size``, in raster order.

    Returns ``(tile_box, core_box)`` pairs: neighbouring tiles overlap by at least
    ``overlap`` pixels, and the cores (each tile cut at the middle of its overlaps) partition
    the area exactly, so every pixel is taken from exactly one tile, away from its edges.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"tile: expected tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    out = []
    for ys, ye, cys, cye in _spans(size[0], tile, overlap):
        for xs, xe, cxs, cxe in _spans(size[1], tile, overlap):
            out.append(((ys, xs, ye, xe), (cys, cxs, cye, cxe)))
    return out


# --- panels ------------------------------------------------------------------------------


def detect_panels(gray: np.ndarray | torch.Tensor, white: float = 0.85, edge: int | None = None) -> np.ndarray:
    """Label the panels of a page: int32 ``[H, W]``, 0 = gutter/background, 1..N = panels.

    The gutter is the near-white area (``>= white``) that reaches the band of ``edge`` pixels
    along the page border (default 2 % of the shorter side, at least 4), so a thin dark edge
    of a scan (scanner shadow, a black border) does not hide it; every 8-connected piece of
    the rest (frames, art, and whatever the frames enclose) is a panel. ``gray`` is
    ``[H, W]`` in 0..1.
    """
    g = gray.numpy() if isinstance(gray, torch.Tensor) else np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"gray: expected [H, W], got shape {g.shape}")
    h, w = g.shape
    edge = max(4, round(0.02 * min(h, w))) if edge is None else edge
    e_y, e_x = min(edge, h), min(edge, w)
    light = g >= white
    lab, _ = ndimage.label(light)
    band = np.concatenate([lab[:e_y].ravel(), lab[h - e_y :].ravel(), lab[:, :e_x].ravel(), lab[:, w - e_x :].ravel()])
    border = np.unique(band)
    gutter = np.isin(lab, border[border > 0])
    panels, _ = ndimage.label(~gutter, structure=np.ones((3, 3), dtype=bool))
    return panels.astype(np.int32)


def panel_box(panels: np.ndarray, region_mask: np.ndarray, box: Box, slices=None) -> Box | None:
    """Bounding box of the panel(s) under the mask pixels of ``region_mask`` inside ``box``.

    None when the region lies entirely in the gutter. ``slices`` is
    ``scipy.ndimage.find_objects(panels)`` when the caller has it already.
    """
    y0, x0, y1, x1 = box
    ids = np.unique(panels[y0:y1, x0:x1][region_mask[y0:y1, x0:x1]])
    ids = ids[ids > 0]
    if ids.size == 0:
        return None
    if slices is None:
        slices = ndimage.find_objects(panels)
    out: Box | None = None
    for i in ids:
        sl = slices[int(i) - 1]
        b = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        out = b if out is None else union_box(out, b)
    return out


# --- padding -----------------------------------------------------------------------------


def padded_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return math.ceil(size[0] / multiple) * multiple, math.ceil(size[1] / multiple) * multiple


def pad_image(image: torch.Tensor, multiple: int, mode: PadMode = "replicate") -> torch.Tensor:
    """Pad ``[B, H, W, C]`` at the bottom and right to multiples of ``multiple`` (never crops or stretches).

    ``reflect`` falls back to ``replicate`` along a side too short to reflect (1xN strips).
    """
    h, w = image.shape[1:3]
    th, tw = padded_size((h, w), multiple)
    if (th, tw) == (h, w):
        return image
    x = image.permute(0, 3, 1, 2)
    ph, pw = th - h, tw - w
    if mode == "reflect" and ph < h and pw < w:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    elif mode in ("reflect", "replicate"):
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    else:
        raise ValueError(f"pad_mode: expected 'replicate' or 'reflect', got {mode!r}")
    return x.permute(0, 2, 3, 1).contiguous()


def pad_mask(mask: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``[B, H, W]`` at the bottom and right with 0 (known) to multiples of ``multiple``."""
    h, w = mask.shape[1:3]
    th, tw = padded_size((h, w), multiple)
    if (th, tw) == (h, w):
        return mask
    return F.pad(mask, (0, tw - w, 0, th - h), value=0.0)


# --- plans -------------------------------------------------------------------------------


def shrink_plan(size: tuple[int, int], max_side: int, mode: PlanMode = "halve") -> tuple[int, int]:
    """Size of the structure pass for content of ``size``.

    ``halve``: halve (rounding up) until the longest side is <= ``max_side``; the thesis'
    rule, and exact 2x2 averaging keeps screentone periodic. ``fit``: scale once so that
    the longest side equals ``max_side`` (aspect kept, sides rounded, at least 1).
    A size already within the limit is returned unchanged.
    """
    if max_side < 1:
        raise ValueError(f"sgi_max_side: expected >= 1, got {max_side!r}")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"size: expected positive sides, got {size!r}")
    if max(h, w) <= max_side:
        return h, w
    if mode == "halve":
        while max(h, w) > max_side:
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w
    if mode == "fit":
        scale = max_side / max(h, w)
        return max(1, min(max_side, round(h * scale))), max(1, min(max_side, round(w * scale)))
    raise ValueError(f"plan: expected 'halve' or 'fit', got {mode!r}")


# --- resampling --------------------------------------------------------------------------


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``[B, H, W, C]`` to ``size`` without aliasing.

    Shrinking uses area averaging (exact 2x2 box means for halving: screentone dots
    average to their grey instead of aliasing into moire; never nearest-neighbour).
    Enlarging uses bicubic, clamped to 0..1. Mixed directions use antialiased bicubic.
    """
    h, w = image.shape[1:3]
    th, tw = size
    if (th, tw) == (h, w):
        return image
    x = image.permute(0, 3, 1, 2).float()
    if th <= h and tw <= w:
        y = F.interpolate(x, size=size, mode="area")
    else:
        y = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=th < h or tw < w)
        y = y.clamp(0.0, 1.0)
    return y.permute(0, 2, 3, 1).contiguous()


def shrink_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary ``[B, H, W]`` mask at a smaller ``size``: a small pixel is 1 if any of its source pixels was."""
    if tuple(mask.shape[1:3]) == tuple(size):
        return mask
    area = F.interpolate(mask[:, None].float(), size=size, mode="area")[:, 0]
    return (area > 1e-6).float()


def sample_box(small: torch.Tensor, size: tuple[int, int], box: Box) -> torch.Tensor:
    """The part ``box`` of ``small`` ``[B, h, w, C]`` resized to ``size`` ``(H, W)``, without resizing the rest.

    Equals ``resize_image(small, size)[:, y0:y1, x0:x1]`` for enlarging (the same bicubic
    kernel and pixel-centre mapping, ``align_corners=False``; only the clamping at the image
    border differs slightly), at the cost of the box alone: a page-sized enlargement is never
    built. ``box`` is in the pixels of ``size``. Clamped to 0..1.
    """
    h, w = small.shape[1:3]
    big_h, big_w = size
    y0, x0, y1, x1 = box
    if (h, w) == (big_h, big_w):
        return small[:, y0:y1, x0:x1]
    # pixel centres of the box in the normalised coordinates of the whole image (grid_sample: x, y order)
    ys = (torch.arange(y0, y1, dtype=torch.float64) + 0.5) * (2.0 / big_h) - 1.0
    xs = (torch.arange(x0, x1, dtype=torch.float64) + 0.5) * (2.0 / big_w) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).float()
    grid = grid.expand(small.shape[0], -1, -1, -1)
    out = F.grid_sample(
        small.permute(0, 3, 1, 2).float(), grid, mode="bicubic", padding_mode="border", align_corners=False
    )
    return out.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
