"""SGIM planning: which frames (the page, or panels) and which crops each pass runs on.

Pure geometry on masks, no model: :func:`plan` turns a cleaned page mask into :class:`Frame` s, each
with the crops of its structure pass (on the frame shrunk to ``sgi_max_side``) and of its
full-resolution pass. The engine (:mod:`.sgim`) runs them.

Crops: distant regions get separate crops, neighbours share a crop when it covers no more of the
page than separate crops; overlapping crops run one after the other, each repainting only its own
regions (:class:`RegionOwners` says which crop owns each mask pixel) and seeing what the earlier ones
painted.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from ..imaging import geometry, masks
from ..imaging.geometry import Box, offset_box
from .config import SEED_LIMIT, SGIMConfig
from .host import PassName

log = logging.getLogger("MDIM")

#: above this many mask regions only the overlap-merging plan is tried (planning stays fast)
GROUPING_LIMIT = 1000
#: side of the coarse grid cells on which mask regions are labelled (pixels)
REGION_CELL = 8


@dataclass(frozen=True)
class FRITile:
    """One tile of a crop's full-resolution pass: ``box`` inside the crop, and its ``core`` (the part
    of the crop taken from this tile; the cores of a crop's tiles partition it)."""

    box: Box
    core: Box


@dataclass(frozen=True, kw_only=True)
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
    #: the tiles of its FRI pass when it runs in tiles (only tiles whose core holds mask pixels);
    #: empty when FRI runs on the whole crop
    tiles: tuple[FRITile, ...] = ()
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

    def masks(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(own, active) bool masks of this crop from the frame's mask cut to ``box`` ``[b, h, w]``: the
        pixels it repaints and pastes back, and the pixels the model treats as unknown (its own plus those
        later crops will repaint; pixels that earlier crops repainted are known context now)."""
        if self.owners is None or not self.owners.shared(self.box, self.region):
            return mask, mask  # the crop holds only its own regions (no page-sized owner map needed)
        owner = torch.from_numpy(self.owners.crop(self.box))[None]
        return mask & (owner == self.region), mask & (owner >= self.region)


@dataclass(frozen=True, kw_only=True)
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
    for lo_i, hi_i, limit in ((0, 2, size[0]), (1, 3, size[1])):
        out[:, lo_i], out[:, hi_i] = geometry.widen_spans(boxes[:, lo_i], boxes[:, hi_i], side, 0, limit)
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


def _plan_cost(grouped: list[tuple[Box, list[int]]], tile_side: int = 0, tile_overlap: int = 0) -> int:
    return sum(crop_cost(geometry.box_size(box), tile_side, tile_overlap) for box, _ in grouped)


def _plan_crops(
    mask2d: torch.Tensor, config: SGIMConfig, margin: int, tile_side: int = 0
) -> tuple[list[Box], RegionOwners | None]:
    """Crop boxes for a binary ``[H, W]`` mask and the map of which crop owns each mask pixel."""
    size = tuple(mask2d.shape)
    cell = REGION_CELL
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
    cell = REGION_CELL
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


def _fri_tiles(box: Box, own: torch.Tensor, config: SGIMConfig) -> tuple[FRITile, ...]:
    """FRI tiles of a crop larger than ``fri_tile_side``: those whose core holds pixels of ``own`` ``[h, w]``."""
    size = geometry.box_size(box)
    if not config.fri_tile_side or max(size) <= config.fri_tile_side:
        return ()
    own = own.numpy()
    return tuple(
        FRITile(box=t, core=c)
        for t, c in geometry.tile_boxes(size, config.fri_tile_side, config.fri_tile_overlap)
        if bool(own[c[0] : c[2], c[1] : c[3]].any())
    )


def _plan_frame(rows: tuple[int, ...], box: Box, own: torch.Tensor, config: SGIMConfig, seed: int) -> Frame:
    """The SGI and full-resolution crops of one frame; crops that run take seeds ``seed``, ``seed + 1``, ..."""
    size = geometry.box_size(box)
    structure = config.structure_pass
    small = geometry.shrink_plan(size, config.sgi_max_side, config.plan) if structure else size
    shrunk = small != size
    run_fri = not structure or config.run_fri == "always" or (config.run_fri == "auto" and shrunk)
    margin = max(config.context_margin, config.feather + 1 if config.feather else 0)  # feathering sees the edge
    origin = box[:2]
    seeds = itertools.count(seed)

    own_small = geometry.shrink_mask(own[None].float(), small)[0] > 0.5 if shrunk else own
    if shrunk:
        boxes, owners = _plan_crops(own_small, config, config.context_margin)
    else:
        boxes, owners = _plan_crops(own, config, margin, config.fri_tile_side if run_fri else 0)
    sgi = tuple(
        Crop(
            name="sgi", rows=rows, region=i, regions=len(boxes), box=b, page_box=_page_box(b, small, size, origin),
            seed=next(seeds) % SEED_LIMIT, owners=owners, extent=_extent(b, small, size, origin),
        )
        for i, b in enumerate(boxes if structure else ())
    )
    if shrunk:
        boxes, owners = _plan_crops(own, config, margin, config.fri_tile_side if run_fri else 0)
    page_owners = owners.shifted(origin) if owners is not None else None
    crops = []
    for i, b in enumerate(boxes):
        tiles: tuple[FRITile, ...] = ()
        if run_fri:
            sub = own[b[0] : b[2], b[1] : b[3]]
            if owners.shared(b, i):
                sub = sub & torch.from_numpy(owners.crop(b) == i)
            tiles = _fri_tiles(b, sub, config)
        page_box = offset_box(b, origin)
        crops.append(Crop(
            name="fri", rows=rows, region=i, regions=len(boxes), box=page_box, page_box=page_box,
            seed=next(seeds) % SEED_LIMIT if run_fri else 0, tiles=tiles, owners=page_owners,
        ))  # fmt: skip
    return Frame(
        rows=rows, box=box, sgi_size=small, run_fri=run_fri, sgi=sgi, crops=tuple(crops), mask=own, sgi_mask=own_small
    )


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
                frame = _plan_frame(group, box, own, config, seed + ran)
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


