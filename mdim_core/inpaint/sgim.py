"""SGIM: two-pass inpainting of full pages (structure-guided pass, then full-resolution refinement).

One implementation for every host (ComfyUI, diffusers, test hosts); the host supplies the
model through ``mdim_core.inpaint.host.SGIMHost``. For each page (or, with ``limit_to_panel``, each
manga panel holding part of the mask: the thesis works panel by panel):

1. SGI: shrink the page by halving until its longest side is <= ``sgi_max_side``
   (antialiased area averaging), so the model sees the page at the scale it knows, not a
   zoomed-in piece of a scan. Inpaint it from pure noise inside the mask, on crops around
   the mask regions (bounding box + ``context_margin``, at least ``min_crop_side``, in
   pixels of the shrunk page) padded to multiples of the latent scale;
2. FRI: at full resolution, on crops around the mask regions (the same margin and minimum
   side, in page pixels): paste the SGI result (bicubic upscale) into the crop inside the
   mask, encode, denoise again inside the mask with ``fri_strength`` and ``fri_steps``,
   decode. Large crops run in overlapping tiles. Skipped by default when step 1 did not
   need to shrink: then the SGI pass already ran at full resolution;
3. composite in pixel space: the new pixels inside the mask (optionally feathered inside the
   mask), the input outside it, bit for bit.

Crops: distant regions get separate crops, neighbours share a crop when it covers no more
of the page than separate crops; overlapping crops run one after the other, each repainting
only its own regions and seeing what the earlier ones painted. So a page with a few
bubbles costs one small structure pass plus refinement of the crops around the bubbles.
The host's noise mask keeps the known region during both passes; the engine never grey-fills.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from ..imaging import geometry, masks
from ..imaging.compositing import composite, paste_into
from .host import PassInfo, PassName, check_host

log = logging.getLogger("MDIM")

Box = tuple[int, int, int, int]
SEED_LIMIT = 2**64


@dataclass(frozen=True)
class SGIMConfig:
    """Settings of an SGIM run. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        steps: sampling steps of the SGI pass (strength 1.0).
        fri_steps: sampling steps actually run by the FRI pass; with ``fri_strength`` 0.5
            the default 25 walks the second half of a 50-step schedule (thesis setting).
        fri_strength: fraction of the noise schedule the FRI pass runs, in (0, 1].
        sgi_max_side: longest side of the page (or panel) in the SGI pass; larger pages are
            shrunk.
        plan: ``"halve"`` (halve until within ``sgi_max_side``; thesis) or ``"fit"``
            (scale once to exactly ``sgi_max_side``).
        run_fri: ``"auto"`` (FRI only when SGI had to shrink the page), ``"always"``,
            ``"never"``.
        grow_mask: pixels to dilate the mask by (opt-in: pixels within this distance of the
            user's mask may change too). 0 keeps the user's mask exactly.
        feather: pixels over which the result blends into the original, inside the mask
            only (0 = hard edge).
        context_margin: pixels of context around each mask region in its crop, in the pixels
            the model sees (the shrunk page in the SGI pass, the page in the FRI pass).
        min_crop_side: crops are widened to at least this side (clamped to the page), so the
            model sees enough context for small regions (512 suits SD1.5); in the pixels of
            each pass, like ``context_margin``.
        limit_to_panel: work panel by panel (panels are found from the page's white
            gutters): each panel holding mask is shrunk on its own for SGI and crops stay
            inside it, so context never comes from a neighbour. Mask in the gutter is
            worked on with the page.
        mask_threshold: mask values >= this are repainted (near-binary values snap).
        pad_mode: how crops are padded to latent multiples: ``"replicate"`` or ``"reflect"``.
        fri_tile_side: crops with a side above this run their FRI pass in overlapping tiles of
            at most this side (the structure is already set by SGI), so a page-sized region
            does not need a page-sized model call. 0 never tiles.
        fri_tile_overlap: pixels of overlap between FRI tiles; each pixel is taken from the
            tile whose centre part holds it, never from a tile's edge.
    """

    steps: int = 50
    fri_steps: int = 25
    fri_strength: float = 0.5
    sgi_max_side: int = 1024
    plan: Literal["halve", "fit"] = "halve"
    run_fri: Literal["auto", "always", "never"] = "auto"
    grow_mask: int = 0
    feather: int = 0
    context_margin: int = 64
    min_crop_side: int = 512
    limit_to_panel: bool = False
    mask_threshold: float = 0.5
    pad_mode: Literal["replicate", "reflect"] = "replicate"
    fri_tile_side: int = 2048
    fri_tile_overlap: int = 128

    def __post_init__(self) -> None:
        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")

        integer("steps", 1)
        integer("fri_steps", 1)
        integer("sgi_max_side", 8)
        integer("grow_mask", 0)
        integer("feather", 0)
        integer("context_margin", 0)
        integer("min_crop_side", 0)
        integer("fri_tile_side", 0)
        integer("fri_tile_overlap", 0)
        if self.fri_tile_side and not 64 <= self.fri_tile_side:
            raise ValueError(f"fri_tile_side: expected 0 (no tiles) or an integer >= 64, got {self.fri_tile_side!r}")
        if self.fri_tile_side and self.fri_tile_overlap * 2 >= self.fri_tile_side:
            raise ValueError(
                f"fri_tile_overlap: expected less than half of fri_tile_side ({self.fri_tile_side}), "
                f"got {self.fri_tile_overlap!r}"
            )
        if not isinstance(self.fri_strength, (int, float)) or not 0.0 < float(self.fri_strength) <= 1.0:
            raise ValueError(f"fri_strength: expected a number in (0, 1], got {self.fri_strength!r}")
        if not isinstance(self.mask_threshold, (int, float)) or not 0.0 < float(self.mask_threshold) <= 1.0:
            raise ValueError(f"mask_threshold: expected a number in (0, 1], got {self.mask_threshold!r}")
        for name, allowed in (
            ("plan", ("halve", "fit")),
            ("run_fri", ("auto", "always", "never")),
            ("pad_mode", ("replicate", "reflect")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.limit_to_panel, bool):
            raise ValueError(f"limit_to_panel: expected True or False, got {self.limit_to_panel!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Crop:
    """One crop and the pass(es) run on it.

    ``box`` is in the pixels of the pass's grid: the frame's shrunk copy for an SGI crop of a
    shrunk frame (origin at the frame's corner), the page otherwise. ``page_box`` is the same
    area in page pixels.
    """

    name: PassName
    rows: tuple[int, ...]  # batch images sharing this mask
    region: int  # index among the crops of this kind in its frame
    regions: int
    box: Box
    page_box: Box
    seed: int
    #: ``(tile, core)`` boxes inside the crop when its FRI runs in tiles (only tiles whose core
    #: holds mask pixels); empty when FRI runs on the whole crop.
    tiles: tuple[tuple[Box, Box], ...] = ()
    #: which crop of this frame owns each mask pixel, in the grid of ``box`` (None: every mask
    #: pixel in the box is this crop's)
    owners: RegionOwners | None = field(default=None, compare=False, repr=False)
    #: the exact page area the crop shows, in (fractional) page pixels: ``page_box`` rounded
    #: outward is what a crop of a shrunk frame covers; None when it is ``page_box`` itself
    extent: tuple[float, float, float, float] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return geometry.box_size(self.box)

    @property
    def passes(self) -> int:
        return len(self.tiles) or 1


@dataclass(frozen=True)
class Frame:
    """A page (or a panel) and its two lists of crops.

    ``sgi`` crops run the structure pass on the frame shrunk to ``sgi_size``. ``crops`` are
    the full-resolution crops where the result is pasted back; the FRI pass runs on them when
    ``run_fri`` (with FRI off and no shrink they are the SGI crops, in page pixels).
    """

    rows: tuple[int, ...]
    box: Box  # page pixels
    sgi_size: tuple[int, int]
    run_fri: bool
    sgi: tuple[Crop, ...]
    crops: tuple[Crop, ...]
    #: the frame's own mask pixels, bool ``[h, w]`` over ``box`` (frames may overlap; each
    #: repaints only its own regions)
    mask: torch.Tensor | None = field(default=None, compare=False, repr=False)
    index: int = 0
    #: ``mask`` at ``sgi_size`` (a pixel is set when any of its page pixels is)
    sgi_mask: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return geometry.box_size(self.box)

    @property
    def shrunk(self) -> bool:
        return self.sgi_size != self.size

    @property
    def passes(self) -> int:
        return len(self.sgi) + (sum(c.passes for c in self.crops) if self.run_fri else 0)

    @property
    def jobs(self) -> list[Crop]:
        """The crops whose passes run, in run order."""
        return list(self.sgi) + (list(self.crops) if self.run_fri else [])


class SGIMResult:
    """The outcome of :func:`inpaint`.

    Attributes:
        image: the composited result, ``[B, H, W, C]`` like the input (RGBA -> RGB).
        sgi_preview: the page with the (upscaled) SGI results pasted inside the mask: what the
            structure pass drew, before refinement. Built on first access (a page-sized copy).
        frames: the plan that ran (empty when the mask was empty).
        jobs: every crop whose passes ran, in run order.
    """

    def __init__(self, image: torch.Tensor, frames: list[Frame], base: torch.Tensor | None = None,
                 parts: list | None = None, device: torch.device | None = None):
        self.image = image
        self.frames = frames
        self.jobs = [c for f in frames for c in f.jobs]
        self._base = base
        self._parts = parts or []
        self._device = device
        self._preview: torch.Tensor | None = None if base is not None else image

    @property
    def sgi_preview(self) -> torch.Tensor:
        if self._preview is None:
            page = self._base.clone()
            for rows, frame, small, mask_f in self._parts:
                fy, fx = frame.box[:2]
                for y0 in range(0, frame.size[0], PREVIEW_STRIP):  # strips: no page-sized float copy
                    y1 = min(frame.size[0], y0 + PREVIEW_STRIP)
                    box = (y0, 0, y1, frame.size[1])
                    up = geometry.sample_box(small, frame.size, box)
                    page_box = _offset(box, (fy, fx))
                    y, x, yy, xx = page_box
                    current = page[rows, y:yy, x:xx]
                    paste_into(page, composite(current, _to_channels(up, current.shape[-1]), mask_f[:, y0:y1]),
                               page_box, rows)
            self._preview = page.to(self._device)
            self._base, self._parts = None, []
        return self._preview

    @property
    def passes(self) -> int:
        return sum(f.passes for f in self.frames)


#: rows of the page built at a time for the SGI preview
PREVIEW_STRIP = 1024


# --- input checks ------------------------------------------------------------------------


def _check_image(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image: expected a torch tensor or numpy array [B, H, W, C], got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image: expected shape [B, H, W, C] with C = 1, 3 or 4, got {tuple(image.shape)}")
    if min(image.shape[:3]) < 1:
        raise ValueError(f"image: empty shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image: expected floats in 0..1, got dtype {image.dtype}")
    lo, hi = (float(v) for v in torch.aminmax(image.detach()))  # one fast pass; NaN propagates
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"image: contains {bad} NaN or infinite value(s); expected finite values in 0..1")
    if image.shape[-1] == 4:
        log.info("[MDIM] image: RGBA input, alpha channel dropped (the result is RGB)")
        image = image[..., :3]
    return image


def _check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def _to_channels(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB result back to the input's channel count (grayscale: mean, exact when R = G = B)."""
    if channels == 3:
        return rgb
    r = rgb[..., :1]
    same = (rgb[..., 1:2] == r) & (rgb[..., 2:3] == r)
    return torch.where(same, r, rgb.mean(dim=-1, keepdim=True))


# --- planning ----------------------------------------------------------------------------


def _mask_groups(mask: torch.Tensor) -> list[tuple[tuple[int, ...], torch.Tensor]]:
    """Batch rows with identical masks (a shared mask is one group) -> (rows, mask [H, W])."""
    groups: list[tuple[list[int], torch.Tensor]] = []
    for b in range(mask.shape[0]):
        for rows, m in groups:
            if torch.equal(m, mask[b]):
                rows.append(b)
                break
        else:
            groups.append(([b], mask[b]))
    return [(tuple(rows), m) for rows, m in groups]


def crop_cost(size: tuple[int, int], tile_side: int = 0, tile_overlap: int = 0, scale: int = 8) -> int:
    """Latent pixels one sampling step evaluates on a crop of ``size`` (padded to multiples of ``scale``).

    With ``tile_side``, a crop with a longer side runs in overlapping tiles: every tile counts
    (tiles without mask, skipped at run time, are not known yet).
    """
    if tile_side and max(size) > tile_side:
        tiles = [geometry.box_size(t) for t, _ in geometry.tile_boxes(size, tile_side, tile_overlap)]
    else:
        tiles = [tuple(size)]
    return sum((-(-h // scale)) * (-(-w // scale)) for h, w in tiles)


class RegionOwners:
    """Which crop repaints each mask pixel of one mask: a coarse map of crop indices (-1 = none).

    ``owner`` is int32 ``[hc, wc]``; cell ``(i, j)`` covers the pixels from
    ``origin + (i, j) * cell`` (see ``masks.region_labels``). Every mask pixel is owned by
    exactly one crop: the crop of the region it belongs to.
    """

    def __init__(self, owner: np.ndarray, origin: tuple[int, int], cell: int):
        self.owner, self.origin, self.cell = owner, origin, cell

    def shifted(self, offset: tuple[int, int]) -> RegionOwners:
        """The same map for boxes measured from ``-offset`` (e.g. frame-local -> page pixels)."""
        return RegionOwners(self.owner, (self.origin[0] + offset[0], self.origin[1] + offset[1]), self.cell)

    def shared(self, box: Box, region: int) -> bool:
        """Whether mask cells of crops other than ``region`` lie in ``box`` (checked on the coarse map)."""
        y0, x0, y1, x1 = box
        (oy, ox), c = self.origin, self.cell
        cy0, cx0 = max(0, (y0 - oy) // c), max(0, (x0 - ox) // c)
        cy1, cx1 = max(0, -(-(y1 - oy) // c)), max(0, -(-(x1 - ox) // c))
        cells = self.owner[cy0:cy1, cx0:cx1]
        return bool(((cells >= 0) & (cells != region)).any())

    def crop(self, box: Box) -> np.ndarray:
        """Owner index of every pixel of ``box`` ``[h, w]`` (int32; -1 where no crop owns the cell)."""
        y0, x0, y1, x1 = box
        (oy, ox), c = self.origin, self.cell
        hc, wc = self.owner.shape
        out = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
        py0, px0, py1, px1 = max(y0, oy), max(x0, ox), min(y1, oy + hc * c), min(x1, ox + wc * c)
        if py0 >= py1 or px0 >= px1:
            return out
        cy0, cx0 = (py0 - oy) // c, (px0 - ox) // c
        cy1, cx1 = -(-(py1 - oy) // c), -(-(px1 - ox) // c)
        block = np.repeat(np.repeat(self.owner[cy0:cy1, cx0:cx1], c, axis=0), c, axis=1)
        sy, sx = py0 - oy - cy0 * c, px0 - ox - cx0 * c
        out[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] = block[sy : sy + py1 - py0, sx : sx + px1 - px0]
        return out


def _widen_many(boxes: np.ndarray, size: tuple[int, int], side: int) -> np.ndarray:
    """``geometry.expand_box(box, 0, size, side)`` for rows of an int64 ``[k, 4]`` array at once."""
    out = boxes.copy()
    if not side:
        return out
    for lo_i, hi_i, limit in ((0, 2, size[0]), (1, 3, size[1])):
        lo, hi = boxes[:, lo_i].copy(), boxes[:, hi_i].copy()
        extra = np.maximum(min(side, limit) - (hi - lo), 0)
        lo, hi = lo - extra // 2, hi + extra - extra // 2
        under = lo < 0
        hi, lo = np.where(under, hi - lo, hi), np.where(under, 0, lo)
        over = hi > limit
        lo, hi = np.where(over, lo - (hi - limit), lo), np.where(over, limit, hi)
        out[:, lo_i], out[:, hi_i] = np.maximum(0, lo), hi
    return out


def _latent_area(boxes: np.ndarray, scale: int = 8) -> np.ndarray:
    """Latent pixels of crops padded to multiples of ``scale``: what one model step evaluates."""
    return (-(-(boxes[:, 2] - boxes[:, 0]) // scale)) * (-(-(boxes[:, 3] - boxes[:, 1]) // scale))


def _group_regions(boxes: list[Box], size: tuple[int, int], config: SGIMConfig) -> list[tuple[Box, list[int]]]:
    """Group regions into crops where one crop covers no more page than separate ones.

    ``boxes``: per region, its box with context margin. A group's crop is the union of its
    members' boxes widened to ``min_crop_side``. Greedily, the two groups whose merge saves the
    most crop area (latent pixels, padded to /8; ties merge) become one, until no merge saves
    anything (each group keeps its best partner; a group whose partner merged elsewhere looks
    again, so planning stays fast with thousands of specks). So regions side by side share a
    crop, while two regions whose union box would cover much more page than their two crops
    (diagonal neighbours, an L) keep separate, overlapping crops. The objective is area, not
    ``crop_cost``: a merge never grows a crop over the tile side just because tiles are
    cheaper per pixel. Returns ``(crop box, member indices)`` pairs.
    """
    side = config.min_crop_side
    n = len(boxes)
    # per group id (ids grow with each merge): raw box (union of its members), crop, area
    raw = np.zeros((2 * n, 4), dtype=np.int64)
    raw[:n] = boxes
    alive = np.zeros(2 * n, dtype=bool)
    alive[:n] = True
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    crops = _widen_many(raw, size, side)
    areas = _latent_area(crops)
    reach = max(side, 2 * config.context_margin, 64)  # farther groups never get smaller together

    def union(a: int, others: np.ndarray):
        """Raw boxes, crops and areas of ``a`` merged with each of ``others``."""
        r = np.concatenate([np.minimum(raw[others, :2], raw[a, :2]), np.maximum(raw[others, 2:], raw[a, 2:])], axis=1)
        c = _widen_many(r, size, side)
        return r, c, _latent_area(c)

    heap: list[tuple[int, int, int]] = []  # (-saving, group, its best partner) for each live group

    def push_best(a: int) -> None:
        y0, x0, y1, x1 = crops[a]
        c = crops
        hit = alive & (c[:, 0] < y1 + reach) & (y0 < c[:, 2] + reach) & (c[:, 1] < x1 + reach) & (x0 < c[:, 3] + reach)
        hit[a] = False
        others = np.flatnonzero(hit)
        if others.size:
            saving = areas[a] + areas[others] - union(a, others)[2]
            k = int(np.argmax(saving))  # the largest saving; the first (lowest id) of equal ones
            if saving[k] >= 0:
                heapq.heappush(heap, (-int(saving[k]), a, int(others[k])))

    for a in range(n):
        push_best(a)
    next_id = n
    while heap:
        _, a, b = heapq.heappop(heap)
        if not alive[a]:
            continue
        if not alive[b]:  # its partner merged elsewhere meanwhile: find its best partner again
            push_best(a)
            continue
        r, c, ar = union(a, np.array([b]))
        raw[next_id], crops[next_id], areas[next_id] = r[0], c[0], ar[0]
        members[next_id] = members.pop(a) + members.pop(b)
        alive[[a, b]] = False
        alive[next_id] = True
        push_best(next_id)
        next_id += 1
    return sorted((tuple(int(v) for v in crops[g]), sorted(mem)) for g, mem in members.items())


def _merge_overlapping(boxes: list[Box], size: tuple[int, int], config: SGIMConfig) -> list[tuple[Box, list[int]]]:
    """Crops that never overlap: overlapping region boxes merge into their union, the merged boxes
    are widened to ``min_crop_side`` and merged again."""

    def owners_of(merged: list[Box], parts: list[Box]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in merged]
        for i, part in enumerate(parts):  # merged boxes are disjoint: exactly one holds each part
            k = next(k for k, b in enumerate(merged) if geometry.union_box(b, part) == b)
            out[k].append(i)
        return out

    merged = geometry.merge_boxes(boxes)
    members = owners_of(merged, boxes)
    if config.min_crop_side:
        widened = [geometry.expand_box(box, 0, size, config.min_crop_side) for box in merged]
        final = geometry.merge_boxes(widened)
        members = [sum((members[j] for j in mem), []) for mem in owners_of(final, widened)]
        merged = final
    return sorted((box, sorted(mem)) for box, mem in zip(merged, members))


#: above this many mask regions only the overlap-merging plan is tried (planning stays fast)
GROUPING_LIMIT = 1000


def _plan_cost(grouped: list[tuple[Box, list[int]]], tile_side: int = 0, tile_overlap: int = 0) -> int:
    return sum(crop_cost(geometry.box_size(box), tile_side, tile_overlap) for box, _ in grouped)


def _plan_crops(
    mask2d: torch.Tensor, config: SGIMConfig, margin: int, tile_side: int = 0
) -> tuple[list[Box], RegionOwners | None]:
    """Crop boxes for a binary ``[H, W]`` mask and the map of which crop owns each mask pixel."""
    size = tuple(mask2d.shape)
    cell = 8
    labels, origin, comps = masks.region_labels(mask2d, cell=cell)
    if not comps:
        return [], None
    boxes = [geometry.expand_box(comp, margin, size) for comp in comps]
    grouped = _merge_overlapping(boxes, size, config)
    if len(boxes) <= GROUPING_LIMIT:
        grouped_apart = _group_regions(boxes, size, config)
        overlap = config.fri_tile_overlap
        if _plan_cost(grouped_apart, tile_side, overlap) < _plan_cost(grouped, tile_side, overlap):
            grouped = grouped_apart
    lut = np.full(len(comps) + 1, -1, dtype=np.int32)
    for j, (_, members) in enumerate(grouped):
        lut[np.asarray(members) + 1] = j
    return [box for box, _ in grouped], RegionOwners(lut[labels], origin, cell)


def _frames_of(
    m: torch.Tensor, config: SGIMConfig, page_gray: torch.Tensor | np.ndarray | None
) -> list[tuple[Box, torch.Tensor]]:
    """``(frame box, the frame's own mask [h, w] bool)`` pairs for a page mask ``[H, W]``.

    One frame, the page, unless ``limit_to_panel``: then every group of regions lying in the
    same panel(s) gets the box of those panels (grown to hold the regions whole), and regions
    in the gutter stay with the page (so does a dark piece that is mostly mask: text in a
    gutter is no panel). Frames may overlap; each holds only its own regions.
    """
    h, w = m.shape
    page = (0, 0, h, w)
    if not config.limit_to_panel:
        return [(page, m)]
    if page_gray is None:
        raise ValueError("page_gray: limit_to_panel needs the page in grayscale [H, W]")
    cell = 8
    labels, origin, comps = masks.region_labels(m, cell=cell)
    panels = geometry.detect_panels(page_gray)
    m_np = m.numpy()
    # a dark piece made mostly of mask (text or SFX lying in a gutter) is not a panel: it stays with the page
    total = np.bincount(panels.ravel())
    masked = np.bincount(panels[m_np], minlength=total.size)
    fake = np.flatnonzero(masked * 2 >= total)
    fake = fake[fake > 0]
    if fake.size:
        panels = np.where(np.isin(panels, fake), 0, panels)
    slices = ndimage.find_objects(panels)
    members: dict[Box, list[int]] = {}
    for k, comp in enumerate(comps):
        pbox = geometry.panel_box(panels, m_np, comp, slices)
        members.setdefault(page if pbox is None else geometry.union_box(pbox, comp), []).append(k)
    boxes = sorted(members)
    if boxes == [page]:
        log.info("[MDIM] SGIM: limit_to_panel found no panel under the mask (no white gutter between panels?); "
                 "the page is worked on as one frame")
    lut = np.full(len(comps) + 1, -1, dtype=np.int32)
    for f, box in enumerate(boxes):
        lut[np.asarray(members[box]) + 1] = f
    owners = RegionOwners(lut[labels], origin, cell)
    out = []
    for f, box in enumerate(boxes):
        own = m[box[0] : box[2], box[1] : box[3]]
        if owners.shared(box, f):
            own = own & torch.from_numpy(owners.crop(box) == f)
        out.append((box, own))
    return out


def _page_box(box: Box, small: tuple[int, int], size: tuple[int, int], origin: tuple[int, int]) -> Box:
    """A box of a frame's shrunk copy (``small``) as the page pixels it covers (frame ``size`` at ``origin``)."""
    (sh, sw), (h, w), (oy, ox) = small, size, origin
    y0, x0, y1, x1 = box
    return (oy + y0 * h // sh, ox + x0 * w // sw, oy + -(-y1 * h // sh), ox + -(-x1 * w // sw))


def _extent(box: Box, small: tuple[int, int], size: tuple[int, int], origin: tuple[int, int]):
    """The exact page area (fractional page pixels) a box of a frame's shrunk copy shows, or None if whole pixels."""
    (sh, sw), (h, w), (oy, ox) = small, size, origin
    y0, x0, y1, x1 = box
    exact = (oy + y0 * h / sh, ox + x0 * w / sw, oy + y1 * h / sh, ox + x1 * w / sw)
    return None if exact == _page_box(box, small, size, origin) else exact


def _fri_tiles(box: Box, own: torch.Tensor, config: SGIMConfig) -> tuple[tuple[Box, Box], ...]:
    """FRI tiles of a crop larger than ``fri_tile_side``: those whose core holds pixels of ``own`` ``[h, w]``."""
    size = geometry.box_size(box)
    if not config.fri_tile_side or max(size) <= config.fri_tile_side:
        return ()
    own = own.numpy()
    return tuple(
        (t, c)
        for t, c in geometry.tile_boxes(size, config.fri_tile_side, config.fri_tile_overlap)
        if bool(own[c[0] : c[2], c[1] : c[3]].any())
    )


def _plan_frame(
    rows: tuple[int, ...], box: Box, own: torch.Tensor, config: SGIMConfig, seed: int, index: int
) -> Frame:
    """The SGI and full-resolution crops of one frame; crops that run take seeds ``seed``, ``seed + 1``, ..."""
    size = geometry.box_size(box)
    small = geometry.shrink_plan(size, config.sgi_max_side, config.plan)
    shrunk = small != size
    run_fri = config.run_fri == "always" or (config.run_fri == "auto" and shrunk)
    margin = max(config.context_margin, config.feather + 1 if config.feather else 0)  # feathering sees the edge
    origin = box[:2]
    seeds = itertools.count(seed)

    own_small = geometry.shrink_mask(own[None].float(), small)[0] > 0.5 if shrunk else own
    if shrunk:
        boxes, owners = _plan_crops(own_small, config, config.context_margin)
    else:
        boxes, owners = _plan_crops(own, config, margin, config.fri_tile_side if run_fri else 0)
    sgi = tuple(
        Crop("sgi", rows, i, len(boxes), b, _page_box(b, small, size, origin), next(seeds) % SEED_LIMIT, (), owners,
             _extent(b, small, size, origin))
        for i, b in enumerate(boxes)
    )
    if shrunk:
        tile_side = config.fri_tile_side if run_fri else 0
        boxes, owners = _plan_crops(own, config, margin, tile_side)
    page_owners = owners.shifted(origin) if owners is not None else None
    crops = []
    for i, b in enumerate(boxes):
        tiles: tuple = ()
        if run_fri:
            sub = own[b[0] : b[2], b[1] : b[3]]
            if owners.shared(b, i):
                sub = sub & torch.from_numpy(owners.crop(b) == i)
            tiles = _fri_tiles(b, sub, config)
        page_box = _offset(b, origin)
        seed_i = next(seeds) % SEED_LIMIT if run_fri else 0
        crops.append(Crop("fri", rows, i, len(boxes), page_box, page_box, seed_i, tiles, page_owners))
    return Frame(rows, box, small, run_fri, sgi, tuple(crops), own, index, own_small)


def plan_regions(
    mask2d: torch.Tensor,
    config: SGIMConfig,
    page_gray: torch.Tensor | np.ndarray | None = None,
) -> list[Box]:
    """The full-resolution crop boxes for a binary ``[H, W]`` mask, in page pixels, sorted by (y0, x0) per frame.

    Each region's bounding box (8-connected, on an 8x coarser grid) grows by
    ``context_margin`` (at least ``feather + 1`` so feathering sees the mask edge), clamped
    to its frame (the page, or with ``limit_to_panel``, which needs ``page_gray`` ``[H, W]``,
    its panel's box, always keeping the region itself). Regions are grouped into crops where
    a shared crop covers no more page than separate ones (see ``_group_regions``); a group's
    crop is widened to ``min_crop_side`` (within the frame). Crops may overlap: they then run
    one after the other, each repainting only its own regions and seeing what the earlier
    ones painted.
    """
    frames = plan(tuple(mask2d.shape), mask2d[None], config, page_gray=None if page_gray is None else page_gray[None])
    return [c.box for f in frames for c in f.crops]


def plan(
    image_size: tuple[int, int],
    mask: torch.Tensor,
    config: SGIMConfig,
    *,
    seed: int = 0,
    page_gray: torch.Tensor | np.ndarray | None = None,
) -> list[Frame]:
    """All frames and crops for a cleaned binary mask ``[B, H, W]`` on pages of ``image_size``.

    Seeds: the crop that runs ``j``-th uses ``(seed + j) mod 2**64`` (FRI tile ``t`` adds
    ``t * 2**32``). ``page_gray`` ``[B, H, W]`` is needed only with ``limit_to_panel``.
    """
    if tuple(mask.shape[1:]) != tuple(image_size):
        raise ValueError(f"mask: expected size {image_size}, got {tuple(mask.shape[1:])}")
    frames: list[Frame] = []
    ran = 0
    for rows, m in _mask_groups(mask):
        m = m if m.dtype == torch.bool else m > 0.5
        for group, parts in _frame_groups(rows, m, config, page_gray):
            for box, own in parts:
                frame = _plan_frame(group, box, own, config, seed + ran, len(frames))
                frames.append(frame)
                ran += len(frame.jobs)
    return frames


def _frame_groups(
    rows: tuple[int, ...], m: torch.Tensor, config: SGIMConfig, page_gray
) -> list[tuple[tuple[int, ...], list[tuple[Box, torch.Tensor]]]]:
    """The pages sharing mask ``m`` grouped by their frames: with ``limit_to_panel`` each page's
    panels are its own, so pages go together only when their frames (boxes and masks) are equal."""
    if not config.limit_to_panel:
        return [(rows, _frames_of(m, config, None))]
    if page_gray is None:
        raise ValueError("page_gray: limit_to_panel needs the pages in grayscale [B, H, W]")
    groups: list[tuple[list[int], list[tuple[Box, torch.Tensor]]]] = []
    for row in rows:
        parts = _frames_of(m, config, page_gray[row])
        for members, known in groups:
            if [b for b, _ in known] == [b for b, _ in parts] and all(
                torch.equal(a, b) for (_, a), (_, b) in zip(known, parts)
            ):
                members.append(row)
                break
        else:
            groups.append(([row], parts))
    return [(tuple(members), parts) for members, parts in groups]


def _job_masks(job: Crop, mask_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(own, active) bool masks of a crop: the pixels it repaints and pastes back, and
    the pixels the model treats as unknown (its own plus those later crops will repaint;
    pixels that earlier crops repainted are known context now)."""
    if job.owners is None or not job.owners.shared(job.box, job.region):
        return mask_c, mask_c  # the crop holds only its own regions (no page-sized owner map needed)
    owner = torch.from_numpy(job.owners.crop(job.box))[None]
    return mask_c & (owner == job.region), mask_c & (owner >= job.region)


# --- running -----------------------------------------------------------------------------


class _Runner:
    def __init__(self, host, config: SGIMConfig, frames: list[Frame], page_size: tuple[int, int]):
        self.host = host
        self.config = config
        self.page_size = page_size
        self.count = sum(f.passes for f in frames)
        self.total = sum(
            config.steps * len(f.sgi) + (config.fri_steps * sum(c.passes for c in f.crops) if f.run_fri else 0)
            for f in frames
        )
        self.index = 0
        self.done = 0

    def run_pass(
        self,
        job: Crop,
        image: torch.Tensor,
        mask: torch.Tensor,
        tile: tuple[int, int, Box] | None = None,
    ) -> torch.Tensor:
        """Pad, encode, denoise, decode, unpad one pass; returns ``[b, h, w, 3]`` float32 in 0..1.

        ``tile``: (index, count, box inside the crop) for a tiled FRI pass.
        """
        host, cfg, name = self.host, self.config, job.name
        h, w = image.shape[1:3]
        img_p = geometry.pad_image(image, host.latent_scale, cfg.pad_mode).contiguous()
        mask_p = geometry.pad_mask(mask, host.latent_scale).contiguous()
        steps = cfg.steps if name == "sgi" else cfg.fri_steps
        strength = 1.0 if name == "sgi" else float(cfg.fri_strength)
        info = PassInfo(
            name=name,
            index=self.index,
            count=self.count,
            steps_before=self.done,
            total_steps=self.total,
            region=job.region,
            regions=job.regions,
            batch_indices=job.rows,
            box=job.page_box if tile is None else _offset(tile[2], job.page_box),
            size=(h, w),
            padded_size=tuple(img_p.shape[1:3]),
            tile=0 if tile is None else tile[0],
            tiles=1 if tile is None else tile[1],
            page_size=self.page_size,
            extent=job.extent if tile is None else None,
        )
        seed = job.seed if tile is None else (job.seed + (tile[0] << 32)) % SEED_LIMIT
        latent = host.encode(img_p)
        latent = host.denoise(latent, image=img_p, mask=mask_p, strength=strength, steps=steps, seed=seed, info=info)
        out = host.decode(latent, source=img_p, mask=mask_p)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(img_p.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"host.decode returned {got}, expected {tuple(img_p.shape)} for the {name} pass")
        out = out.detach().to("cpu", torch.float32)[:, :h, :w]
        if not all(np.isfinite(float(v)) for v in torch.aminmax(out)):
            raise RuntimeError(f"host returned NaN or infinite pixels in the {name} pass (region {job.region})")
        self.index += 1
        self.done += steps
        host.progress(self.done, self.total)
        return out.clamp(0.0, 1.0)


def _offset(box: Box, origin: tuple[int, ...]) -> Box:
    return box[0] + origin[0], box[1] + origin[1], box[2] + origin[0], box[3] + origin[1]


def _fri(runner: _Runner, job: Crop, guided: torch.Tensor, mask_f: torch.Tensor) -> torch.Tensor:
    """The FRI pass on a crop: whole, or tile by tile (each tile sees the earlier tiles' results)."""
    if not job.tiles:
        return runner.run_pass(job, guided, mask_f)
    work = guided.clone()
    for t, (tb, core) in enumerate(job.tiles):
        y0, x0, y1, x1 = tb
        res = runner.run_pass(job, work[:, y0:y1, x0:x1], mask_f[:, y0:y1, x0:x1], (t, len(job.tiles), tb))
        cy0, cx0, cy1, cx1 = core
        inner = res[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        work[:, cy0:cy1, cx0:cx1] = composite(work[:, cy0:cy1, cx0:cx1], inner, mask_f[:, cy0:cy1, cx0:cx1])
    return work


def _rgb(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.expand(-1, -1, -1, 3) if pixels.shape[-1] == 1 else pixels


def _run_frame(runner: _Runner, frame: Frame, out: torch.Tensor, config: SGIMConfig) -> tuple:
    """SGI on the (shrunk) frame, then the full-resolution crops; writes into ``out`` (the engine's
    own copy) inside the frame's mask only. Returns the preview part of this frame."""
    rows = list(frame.rows)
    fy0, fx0, fy1, fx1 = frame.box
    channels = out.shape[-1]
    mask = frame.mask[None].expand(len(rows), -1, -1)
    # the page as earlier (overlapping) frames left it; a view when the rows are consecutive (no page-sized copy)
    consecutive = rows == list(range(rows[0], rows[-1] + 1))
    region = out[rows[0] : rows[-1] + 1, fy0:fy1, fx0:fx1] if consecutive else out[rows, fy0:fy1, fx0:fx1]
    if frame.shrunk:  # area averaging of the frame as it is: no page-sized float copy for float input
        small = _rgb(geometry.resize_image(region, frame.sgi_size).clamp(0.0, 1.0)).clone()
        small_mask = frame.sgi_mask[None].expand(len(rows), -1, -1)
    else:
        small = _rgb(region.float().clamp(0.0, 1.0)).clone()
        small_mask = mask
    for job in frame.sgi:  # each crop repaints its own regions of the structure image
        y0, x0, y1, x1 = job.box
        current = small[:, y0:y1, x0:x1]
        own, active = _job_masks(job, small_mask[:, y0:y1, x0:x1])
        new = runner.run_pass(job, current, active.float())
        small[:, y0:y1, x0:x1] = composite(current, new, own)
    for job in frame.crops:  # full resolution: the structure pasted into the mask, refined when FRI runs
        y0, x0, y1, x1 = job.box
        local = (y0 - fy0, x0 - fx0, y1 - fy0, x1 - fx0)
        current = out[rows, y0:y1, x0:x1]
        own, active = _job_masks(job, mask[:, local[0] : local[2], local[1] : local[3]])
        crop = _rgb(current.float().clamp(0.0, 1.0))
        guided = composite(crop, geometry.sample_box(small, frame.size, local), active)
        new = _fri(runner, job, guided, active.float()) if frame.run_fri else guided
        weight = masks.feather(own, config.feather) if config.feather else None
        paste_into(out, composite(current, _to_channels(new, channels), own, weight), job.box, rows)
    return rows, frame, small, mask


def inpaint(
    host, image, mask, *, seed: int = 0, config: SGIMConfig | None = None
) -> SGIMResult:
    """Inpaint ``image`` ``[B, H, W, C]`` (C = 1, 3 or 4; float 0..1) inside ``mask`` with SGIM.

    ``mask``: ``[H, W]``, ``[B, H, W]`` or ``[B, H, W, 1]``, 1 = repaint; batch 1 is shared by
    all images; another size is resized (logged). Returns an ``SGIMResult`` whose ``image``
    has the input's batch, size, dtype and device and C = 1 or 3 (RGBA loses its alpha).
    Outside the (cleaned, optionally grown) mask it equals the input bit for bit. An empty
    mask returns the input without any host call. Exceptions raised by the host (e.g.
    cancellation from ``host.progress``) propagate; inputs are never modified.
    """
    host = check_host(host)
    config = config or SGIMConfig()
    seed = _check_seed(seed)
    image = _check_image(image)
    device = image.device
    base = image.detach().cpu()  # the pixels kept outside the mask (input dtype)
    batch, height, width, _ = base.shape
    m = masks.clean(
        mask,
        batch=batch,
        size=(height, width),
        threshold=config.mask_threshold,
        grow_pixels=config.grow_mask,
        dtype=torch.bool,
    )
    if not m.numpy().any():
        log.info("[MDIM] SGIM: the mask is empty, the image is returned unchanged")
        return SGIMResult(image=image, frames=[])

    gray = base.float().mean(dim=-1) if config.limit_to_panel else None
    frames = plan((height, width), m, config, seed=seed, page_gray=gray)
    runner = _Runner(host, config, frames, (height, width))
    log.info(
        "[MDIM] SGIM: %d pass(es), %d steps; %s",
        runner.count,
        runner.total,
        "; ".join(
            f"{f.size[1]}x{f.size[0]} -> {f.sgi_size[1]}x{f.sgi_size[0]}: {len(f.sgi)} structure crop(s), "
            f"{len(f.crops)} {'refined' if f.run_fri else 'pasted'} crop(s)"
            for f in frames[:4]
        )
        + (" ..." if len(frames) > 4 else ""),
    )

    out = base.clone()
    host.progress(0, runner.total)
    parts = [_run_frame(runner, frame, out, config) for frame in frames]
    return SGIMResult(image=out.to(device), frames=frames, base=base, parts=parts, device=device)
