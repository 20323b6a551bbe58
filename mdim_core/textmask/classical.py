"""The classical text detector: no weights, only connected components, thresholds and shape rules.

:func:`detect_text` finds, on a clean page (a digital page, or a scan after Scan Cleanup):

- **text in speech bubbles**. A bubble is a paper region enclosed by ink (4-connected paper
  components that do not reach the page edge) whose holes are mostly glyph-sized: at least three
  of them, the glyph-sized ones at least 60 % of the area of the holes that are not larger than a
  glyph (a figure or an SFX may cover part of the region), the holes at most half of the region,
  at most 20 % ink, and most glyph-sized holes standing apart and spread in two directions (not
  screentone, hatching or the dashes of speed lines). Everything enclosed by the bubble is text (each glyph with its inner white, punctuation,
  specks of dirt); the mask is that grown by ``grow`` page px, but never within ``protect`` px of
  the bubble's own outline, so the outline and its anti-aliased edge stay.
- **free text** (narration on white, text with a white halo over the artwork). Glyph candidates
  are ink components of glyph size (0.4 %..4 % of the page's long side) with paper all around
  them (at most 20 % ink in a 3 px ring: screentone dots and hatching have ink right next to
  them), made of strokes (not blobs) spread in two directions (not the dashes of a broken line). Candidates close to each other form blocks; a block needs three glyphs of similar size
  in lines or columns. Its mask is the glyphs, plus their white halo (measured: the distance up to
  which the ring around the glyphs stays paper), plus ``grow``.
- **SFX** (best effort, off by default): large stroke-like ink components (thinner than 30 % of
  their extent) with a mostly white outline around them, grown by the measured outline.

All the analysis runs on the page min-pooled to a long side of at most 3600 px (see
:mod:`.common`); the mask is blown back up only inside the blocks found.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .common import (
    EIGHT,
    RECT_RADIUS,
    Box,
    check_page,
    expand,
    grow_crop,
    holes_of,
    inner,
    otsu,
    pool_any,
    relabel,
    upsample,
    work_factor,
    work_gray,
)

log = logging.getLogger("MDIM")

KINDS = ("bubble", "free", "sfx")


@dataclass(frozen=True)
class TextMaskSettings:
    """What :func:`detect_text` looks for. Lengths are in page pixels."""

    bubbles: bool = True  # text in speech bubbles
    free_text: bool = True  # free text (on white, or with a white halo over the art)
    sfx: bool = False  # big outlined sound effects (best effort)
    grow: int = 3  # added around the text pixels (anti-aliased edge, scan blur, JPEG ringing)
    min_size: int = 0  # smallest text block kept (its longer side); 0 = 0.8 % of the page's long side
    protect: int = 2  # kept free next to a bubble's outline
    threshold: float = 0.0  # ink/paper grey level in 0..1; 0 = Otsu's threshold of the page (within 0.3..0.7)

    def __post_init__(self):
        for name in ("grow", "min_size", "protect"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 4096):
                raise ValueError(f"{name}: expected a whole number of pixels in 0..4096, got {v!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold < 1.0):
            raise ValueError(f"threshold: expected a grey level in [0, 1) (0 = automatic), got {self.threshold!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TextBlock:
    """A text region found: ``kind`` (bubble/free/sfx), its box in page px, its glyph count and the
    halo measured around it (page px)."""

    kind: str
    box: Box
    glyphs: int
    halo: int = 0


@dataclass
class TextMaskResult:
    """``mask``: bool ``[H, W]``, True = text to remove. ``blocks``: what was found. ``bubbles``: boxes
    of the speech bubbles found (also those without text kept). ``factor``: the working scale."""

    mask: np.ndarray
    blocks: list[TextBlock] = field(default_factory=list)
    bubbles: list[Box] = field(default_factory=list)
    factor: int = 1
    threshold: float = 0.5

    def counts(self) -> dict[str, int]:
        return {k: sum(b.kind == k for b in self.blocks) for k in KINDS}


# ---------------------------------------------------------------------------------------------

#: Longest side of the coarse page on which speech-bubble and white-SFX candidates are looked for
#: (the working page any-pooled; each candidate is then measured exactly at the working scale).
COARSE_SIDE = 1800
#: A glyph-sized component (or hole of a bubble) enclosing more separate paper pieces of at least
#: :data:`COUNTER_PX` px than this is a patch of screentone or hatching, not a glyph (a glyph's
#: counters are a few; crossing anti-aliased strokes leave specks of a pixel or two).
MAX_COUNTERS = 12
COUNTER_PX = 3
#: Least share of a glyph candidate's ink that is one 4-connected piece: anti-aliased strokes are;
#: a cluster of screentone dots touching only at their corners is not.
MIN_SOLID = 0.7
#: A small piece next to glyphs (punctuation, a loose stroke) has at most this many other small
#: pieces around it; a dot of screentone has its lattice.
MAX_NEIGHBOURS = 3
#: Share of each band of a lone glyph's halo that must be paper (the halo of a block: 0.9).
HALO_SHARE = 0.97


@dataclass
class _Work:
    """The page at working scale and what the passes share."""

    gray: np.ndarray  # uint8 [h, w]
    ink: np.ndarray  # bool [h, w]
    t: float  # threshold on gray (0..255)
    f: int
    gmin: float
    gmax: float
    grow: float  # working px
    protect: float
    min_block: float
    taken: np.ndarray  # bool [h, w]: inside bubbles found
    parts: list = field(default_factory=list)  # (box_lo, crop mask lo, TextBlock)
    c: int = 1  # coarse factor (working px per coarse px)
    _paper_c: tuple | None = None
    _ink8: tuple | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.gray.shape

    def coarse_paper(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """``(labels, count, areas, labels at the page edge)`` of the paper (4-connected) of the
        coarse page: the working page any-pooled by :attr:`c` (a block is ink if any of its pixels is)."""
        if self._paper_c is None:
            ink_c = pool_any(self.ink, self.c)
            lab, n = ndimage.label(~ink_c)
            area = np.bincount(lab.ravel(), minlength=n + 1)
            edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
            self._paper_c = (lab, n, area, edge)
        return self._paper_c

    def ink_components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, boxes [n, 4], areas [n + 1])`` of the 8-connected ink components of at least
        :attr:`min_area` px (computed once; smaller ones, screentone dots and specks, are label 0;
        ``boxes[k - 1]`` is component k's box)."""
        if self._ink8 is None:
            lab, n = ndimage.label(self.ink, EIGHT)
            area = np.bincount(lab.ravel(), minlength=n + 1)
            keep = area >= self.min_area
            keep[0] = False
            lab, ids = relabel(lab, keep)
            self._ink8 = (lab, _boxes(ndimage.find_objects(lab)), np.concatenate([[0], area[ids]]))
        return self._ink8

    @property
    def min_area(self) -> float:
        """Fewest pixels of an ink component that may be a glyph."""
        return max(6.0, 0.15 * self.gmin**2)


def _work(page: np.ndarray, s: TextMaskSettings) -> _Work:
    f = work_factor(page.shape[:2])
    gray = work_gray(page, f)
    h, w = gray.shape
    if s.threshold:
        t = s.threshold * 255.0
    else:
        step = max(1, int(math.sqrt(h * w / 1_000_000)))
        t = float(np.clip(otsu(gray[::step, ::step]), 0.3 * 255, 0.7 * 255))
    long_side = max(h, w)
    gmin = max(3.0, 0.004 * long_side)
    min_block = s.min_size / f if s.min_size else 0.008 * long_side
    return _Work(gray=gray, ink=gray < t, t=t, f=f, gmin=gmin, gmax=0.04 * long_side, grow=s.grow / f,
                 protect=max(1.0, math.ceil(s.protect / f)) if s.protect else 0.0, min_block=min_block,
                 taken=np.zeros((h, w), bool), c=max(1, math.ceil(long_side / COARSE_SIDE)))


def _boxes(slices) -> np.ndarray:
    """``[n, 4]`` int64 (y0, x0, y1, x1) of ``find_objects`` slices (zeros for missing labels)."""
    out = np.zeros((len(slices), 4), np.int64)
    for i, sl in enumerate(slices):
        if sl is not None:
            out[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return out


def _sizes(slices) -> np.ndarray:
    return np.array([max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) for sl in slices], np.float64)


def _touches_edge(m: np.ndarray) -> bool:
    return bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def _exact_region(wk: _Work, comp_c: np.ndarray, box_c: Box, seen: np.ndarray,
                  max_area: float) -> tuple[Box, np.ndarray] | None:
    """The working-scale paper region (4-connected) a coarse paper component belongs to: ``(crop box,
    bool crop)`` on the region's box plus a margin. The coarse page may have cut a region in parts
    (a gap of a pixel or two closes when pooled): the crop grows until the region lies inside it.
    None when the region reaches the page edge, is larger than ``max_area`` px, or was handed out
    before (``seen``)."""
    c = wk.c
    h, w = wk.shape
    y0, x0 = box_c[0] * c, box_c[1] * c
    y1, x1 = min(h, box_c[2] * c), min(w, box_c[3] * c)
    seed_box = (y0, x0, y1, x1)
    seed = upsample(comp_c, c, (y1 - y0, x1 - x0))
    crop = expand(seed_box, c + 1, (h, w))
    while True:
        cy0, cx0, cy1, cx1 = crop
        paper = ~wk.ink[cy0:cy1, cx0:cx1]
        seeds = np.zeros_like(paper)
        seeds[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = seed
        seeds &= paper
        lab, _ = ndimage.label(paper)
        ids = np.unique(lab[seeds])
        ids = ids[ids > 0]
        if ids.size == 0:
            return None
        comp = lab == ids[0] if ids.size == 1 else np.isin(lab, ids)
        if int(np.count_nonzero(comp)) > max_area:
            return None
        edges = (comp[0].any(), comp[:, 0].any(), comp[-1].any(), comp[:, -1].any())
        if (edges[0] and cy0 == 0) or (edges[1] and cx0 == 0) or (edges[2] and cy1 == h) or (edges[3] and cx1 == w):
            return None  # reaches the page edge: margins, gutters
        if not any(edges):
            break
        # runs out of the crop: look further on the sides it reaches
        sy, sx = max(32, (cy1 - cy0) // 2), max(32, (cx1 - cx0) // 2)
        crop = (max(0, cy0 - sy) if edges[0] else cy0, max(0, cx0 - sx) if edges[1] else cx0,
                min(h, cy1 + sy) if edges[2] else cy1, min(w, cx1 + sx) if edges[3] else cx1)
    view = seen[cy0:cy1, cx0:cx1]
    if (view & comp).any():
        return None
    view |= comp
    return crop, comp


#: How many times small pieces (dots, short strokes) are taken from pieces already taken: the dots of an
#: ellipsis after a glyph, a glyph drawn in dots. Each hop reaches half a glyph further.
PIECE_HOPS = 3


def _bubbles(wk: _Work) -> list[Box]:
    """Speech bubbles: enclosed paper regions holding glyph-sized holes. Adds their text to parts.

    Candidates are the paper components of the coarse page; each is measured at the working scale."""
    h, w = wk.shape
    lab, n, area, edge = wk.coarse_paper()
    c2 = wk.c * wk.c
    keep = (area * c2 >= (3 * wk.gmin) ** 2) & (area * c2 <= 0.2 * h * w)
    keep[0] = False
    keep[edge] = False
    ids = np.flatnonzero(keep)
    if ids.size == 0:
        return []
    lab, _ = relabel(lab, keep)
    seen = np.zeros((h, w), bool)
    found = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        comp_c = lab[sl] == k
        hl_c = holes_of(np.pad(comp_c, 1))[0][1:-1, 1:-1]
        n_holes_c = int(np.count_nonzero(hl_c))
        if n_holes_c == 0 or n_holes_c > 0.6 * (n_holes_c + int(comp_c.sum())):
            continue  # encloses nothing, or mostly art (the coarse page's ink is a little fatter)
        region = _exact_region(wk, comp_c, (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), seen, 0.2 * h * w)
        if region is None:
            continue
        box = _bubble_text(wk, *region)
        if box is not None:
            found.append(box)
    return found


def _bubble_text(wk: _Work, crop: Box, comp: np.ndarray) -> Box | None:
    """Accept the paper region ``comp`` (on ``crop``) as a speech bubble: adds its text to the parts
    and returns the bubble's box, or None."""
    cy0, cx0, cy1, cx1 = crop
    hl, nh = holes_of(np.pad(comp, 1))  # a frame of background: nothing at the crop edge is a hole
    hl = hl[1:-1, 1:-1]
    if nh == 0:
        return None
    holes = hl > 0
    filled = comp | holes
    n_holes_px = int(holes.sum())
    n_filled = int(filled.sum())
    if n_holes_px > 0.5 * n_filled:
        return None
    ink = wk.ink[cy0:cy1, cx0:cx1]
    hsl = ndimage.find_objects(hl)
    size = _sizes(hsl)
    harea = np.bincount(hl.ravel(), minlength=nh + 1)[1:]
    hink = np.bincount(hl[ink & holes], minlength=nh + 1)[1:]
    # paper pieces inside each hole: a glyph has a few counters, a patch of screentone many
    inner_paper = holes & ~ink
    pl, n_pieces = ndimage.label(inner_paper)
    owner = np.zeros(n_pieces + 1, np.int64)
    owner[pl[inner_paper]] = hl[inner_paper]
    big_piece = np.bincount(pl.ravel(), minlength=n_pieces + 1)[1:] >= COUNTER_PX
    pieces = np.bincount(owner[1:][big_piece], minlength=nh + 1)[1:]
    textured = pieces > MAX_COUNTERS
    glyphish = (size >= wk.gmin) & (size <= wk.gmax) & ~textured
    big = (size > wk.gmax) | textured  # a figure in a white panel, an SFX over the bubble, screentone: not text
    if glyphish.sum() < 3 or harea[glyphish].sum() < 0.6 * harea[~big].sum():
        return None  # no text, or mostly dots (a screentone-filled shape)
    if harea[big].sum() > 0.5 * n_filled:
        return None
    if hink[~big].sum() > 0.2 * n_filled:
        return None  # too much ink for text: a panel of screentone or hatching
    # glyphs stand apart; screentone dots and hatching lines have ink right next to them
    ids = np.flatnonzero(glyphish)[:: max(1, int(glyphish.sum()) // 24)]
    apart = 0
    for i in ids:
        hy0, hx0, hy1, hx1 = expand((hsl[i][0].start, hsl[i][1].start, hsl[i][0].stop, hsl[i][1].stop), 4, comp.shape)
        sub = hl[hy0:hy1, hx0:hx1]
        own = sub == i + 1
        apart += _two_dimensional(own) and _ring_is_paper(own, (sub > 0) & ~own | ~filled[hy0:hy1, hx0:hx1])
    if apart < 0.6 * len(ids):
        return None
    # the text: the glyphs, and the small holes next to them (punctuation, a glyph's loose strokes,
    # specks); small holes away from the glyphs are screentone dots in a region the bubble reaches
    kind = np.zeros(nh + 1, np.uint8)  # 1 glyph, 2 small
    kind[1:][glyphish] = 1
    kind[1:][(size < wk.gmin) & ~big] = 2
    hk = kind[hl]
    text = hk == 1
    if (hk == 2).any():
        r = int(math.ceil(0.5 * float(np.median(size[glyphish]))))
        gy, gx = np.nonzero(text.any(axis=1))[0], np.nonzero(text.any(axis=0))[0]
        ny0, nx0, ny1, nx1 = expand((int(gy[0]), int(gx[0]), int(gy[-1]) + 1, int(gx[-1]) + 1), r, text.shape)
        near = ndimage.maximum_filter1d(text[ny0:ny1, nx0:nx1].view(np.uint8), 2 * r + 1, axis=0, mode="constant")
        near = ndimage.maximum_filter1d(near, 2 * r + 1, axis=1, mode="constant").view(bool)  # within r (a square)
        sub = hl[ny0:ny1, nx0:nx1]
        small = hk[ny0:ny1, nx0:nx1] == 2
        close = np.zeros(nh + 1, bool)
        close[sub[near & small]] = True
        # a glyph drawn in small pieces only (dots and short strokes), an ellipsis: pieces close to a piece
        # already taken, within half a glyph, hop by hop (screentone dots beyond reach stay out)
        q = r
        for _ in range(PIECE_HOPS):
            took = close[sub] & small
            reach = ndimage.maximum_filter1d(took.view(np.uint8), 2 * q + 1, axis=0, mode="constant")
            reach = ndimage.maximum_filter1d(reach, 2 * q + 1, axis=1, mode="constant").view(bool)
            new = np.unique(sub[reach & small & ~took])
            if new.size == 0:
                break
            close[new] = True
        text |= close[hl]
    ty, tx = np.nonzero(text)
    tbox = (int(ty.min()), int(tx.min()), int(ty.max()) + 1, int(tx.max()) + 1)
    if max(tbox[2] - tbox[0], tbox[3] - tbox[1]) < wk.min_block:
        return None
    margin = int(math.ceil(wk.grow)) + 1
    ty0, tx0, ty1, tx1 = expand(tbox, margin, comp.shape)
    t_crop = text[ty0:ty1, tx0:tx1]
    inside = inner(filled[ty0:ty1, tx0:tx1], wk.protect)
    grown = grow_crop(t_crop, wk.grow) & (inside | t_crop)
    box = (cy0 + ty0, cx0 + tx0, cy0 + ty1, cx0 + tx1)
    wk.parts.append((box, grown, TextBlock("bubble", box, int(glyphish.sum()))))
    wk.taken[cy0:cy1, cx0:cx1] |= filled
    fy, fx = np.nonzero(filled.any(axis=1))[0], np.nonzero(filled.any(axis=0))[0]
    return (cy0 + int(fy[0]), cx0 + int(fx[0]), cy0 + int(fy[-1]) + 1, cx0 + int(fx[-1]) + 1)


def _solid(comp: np.ndarray, limit: float = MIN_SOLID) -> bool:
    """True when at least ``limit`` of the component is one 4-connected piece (see :data:`MIN_SOLID`)."""
    lab, n = ndimage.label(comp)
    if n <= 1:
        return True
    return float(np.bincount(lab.ravel())[1:].max()) >= limit * float(np.count_nonzero(comp))


def _stroke_like(comp: np.ndarray, size: float, limit: float = 0.35) -> bool:
    """True when the component is made of strokes (twice its deepest point is thin against its size):
    glyphs are; blobs (merged screentone dots, a black eye or hair) are not."""
    return 2.0 * float(ndimage.distance_transform_edt(comp).max()) <= limit * size


def _two_dimensional(comp: np.ndarray, limit: float = 0.15) -> bool:
    """True when the component spreads in two directions (the spread across its main axis is at
    least ``limit`` of the spread along it): glyphs do; a dash of a broken speed line does not."""
    ys, xs = np.nonzero(comp)
    if len(ys) < 3:
        return False
    ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(np.float64)))
    return ev[1] > 0 and math.sqrt(max(ev[0], 0.0) / ev[1]) >= limit


def _ring_is_paper(comp: np.ndarray, ink: np.ndarray, radius: float = 3.0, max_ink: float = 0.2) -> bool:
    ring = grow_crop(comp, radius) & ~comp
    n = int(ring.sum())
    return n > 0 and int((ring & ink).sum()) <= max_ink * n


def _isolated(comp: np.ndarray, ink: np.ndarray) -> bool:
    """Paper around a glyph: at most 20 % ink within 3 px, or at most 5 % within 2 px (a thin white halo
    over screentone; screentone dots and hatching have ink right next to them)."""
    return _ring_is_paper(comp, ink) or _ring_is_paper(comp, ink, radius=2.0, max_ink=0.05)


def _halo(glyphs: np.ndarray, paper: np.ndarray, dmax: int, share: float = 0.9) -> tuple[int, np.ndarray]:
    """Width of the paper band around ``glyphs`` (0 when the paper goes on: text on white) and the
    distance map to the glyphs."""
    dist = ndimage.distance_transform_edt(~glyphs)
    return _band(dist, paper, dmax, share, open_ended=0), dist


def _band(dist: np.ndarray, sel: np.ndarray, dmax: int, share: float, open_ended: int) -> int:
    """The largest d <= ``dmax`` such that every band ``(k - 1, k]`` of ``dist`` for k <= d is at least
    ``share`` ``sel``; ``open_ended`` when the bands go on to ``dmax``."""
    width = 0
    for d in range(1, dmax + 1):
        band = (dist > d - 1) & (dist <= d)
        n = int(band.sum())
        if n == 0 or (sel & band).sum() < share * n:
            break
        width = d
    return open_ended if width >= dmax else width


def _glyphs_in(wk: _Work, box: Box, med: float, radius: float = 3.0, need_solid: bool = False) -> tuple[np.ndarray, int]:
    """The glyph pixels of a block's box: ink components inside it with paper around them.

    Glyph-sized components need a paper ring of ``radius`` px; small ones (punctuation, a glyph's
    separate strokes) a ring of 0.3 glyph sizes free of any ink but the glyphs' own, so the dots
    of a screentone next to the text stay out.
    """
    y0, x0, y1, x1 = box
    ink = wk.ink[y0:y1, x0:x1]
    lab, _ = ndimage.label(ink, EIGHT)
    bodies = np.zeros_like(ink)
    small = []
    count = 0
    hh, ww = ink.shape
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == hh or sl[1].stop == ww:
            continue  # runs out of the block: art
        size = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        if size > wk.gmax:
            continue
        if size < 0.5 * med:
            small.append((k, sl))
            continue
        cy0, cx0, cy1, cx1 = expand((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), int(radius) + 1, ink.shape)
        comp = lab[cy0:cy1, cx0:cx1] == k
        if ((not need_solid or (_solid(comp) and _few_counters(comp))) and _stroke_like(comp, size)
                and _ring_is_paper(comp, ink[cy0:cy1, cx0:cx1], radius)):
            bodies[cy0:cy1, cx0:cx1] |= comp
            count += 1
    out = bodies.copy()
    if not small or not count:
        return out, count
    other = ink & ~bodies
    r = max(radius, 0.3 * med)
    near = grow_crop(bodies, min(RECT_RADIUS, 0.35 * med))
    for k, sl in small:
        if not near[sl].any():
            continue  # away from every glyph: a dot of screentone, dust
        cy0, cx0, cy1, cx1 = expand((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), int(r) + 1, ink.shape)
        sub = lab[cy0:cy1, cx0:cx1]
        comp = sub == k
        if not _ring_is_paper(comp, other[cy0:cy1, cx0:cx1], r):
            continue
        ring = grow_crop(comp, r) & ~comp & other[cy0:cy1, cx0:cx1]
        if len(np.unique(sub[ring])) <= MAX_NEIGHBOURS:  # a glyph's loose strokes have a few neighbours,
            out[cy0:cy1, cx0:cx1] |= comp  # a dot of screentone a whole lattice of them
    return out, count


def _lines(centres: np.ndarray, tol: float) -> int:
    """Number of groups of sorted 1-D positions separated by more than ``tol``."""
    c = np.sort(centres)
    return 1 + int((np.diff(c) > tol).sum()) if len(c) else 0


def _few_counters(comp: np.ndarray) -> bool:
    """True when the component encloses at most :data:`MAX_COUNTERS` paper pieces (a glyph's
    counters); a patch of dense screentone encloses the paper between all its dots."""
    hl, n = holes_of(np.pad(comp, 1))
    if n <= MAX_COUNTERS:
        return True
    return int((np.bincount(hl.ravel())[1:] >= COUNTER_PX).sum()) <= MAX_COUNTERS


def _free_candidates(wk: _Work) -> np.ndarray:
    """Glyph candidates for free text: ``[n, 5]`` (y0, x0, y1, x1, size) of the ink components of glyph
    size outside the bubbles found that are one solid piece of strokes spread in two directions,
    with few counters and paper around them."""
    h, w = wk.shape
    lab, boxes, area = wk.ink_components()
    ok = area[1:] <= wk.gmax**2
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ok &= (size >= wk.gmin) & (size <= wk.gmax)
    ok &= ~wk.taken[(boxes[:, 0] + boxes[:, 2]) // 2, (boxes[:, 1] + boxes[:, 3]) // 2]
    cands = []
    for i in np.flatnonzero(ok):
        y0, x0, y1, x1 = (int(v) for v in boxes[i])
        cy0, cx0, cy1, cx1 = expand((y0, x0, y1, x1), 3, (h, w))
        comp = lab[cy0:cy1, cx0:cx1] == i + 1
        if (_solid(comp) and _stroke_like(comp, size[i]) and _two_dimensional(comp)
                and _isolated(comp, wk.ink[cy0:cy1, cx0:cx1]) and _few_counters(comp)):
            cands.append((y0, x0, y1, x1, int(size[i])))
    return np.array(cands, np.float64).reshape(-1, 5)


def _groups(c: np.ndarray, shape: tuple[int, int], cell: int = 4) -> np.ndarray:
    """Group ids of candidates whose boxes, grown by half their size, touch (on a grid of ``cell`` px)."""
    h, w = shape
    canvas = np.zeros((h // cell + 2, w // cell + 2), bool)
    for y0, x0, y1, x1, size in c:
        m = 0.5 * size
        canvas[int((y0 - m) // cell) + 1 : int((y1 + m) // cell) + 2, int((x0 - m) // cell) + 1 : int((x1 + m) // cell) + 2] = True
    blab, _ = ndimage.label(canvas, EIGHT)
    return blab[((c[:, 0] + c[:, 2]) / 2 // cell + 1).astype(int), ((c[:, 1] + c[:, 3]) / 2 // cell + 1).astype(int)]


def _free_text(wk: _Work) -> None:
    """Blocks of free text: three glyphs or more in lines or columns, on paper or with a white
    halo; one or two glyphs only with a clean white halo over the art."""
    h, w = wk.shape
    c = _free_candidates(wk)
    if not len(c):
        return
    group = _groups(c, (h, w))
    for gid in np.unique(group):
        members = c[group == gid]
        med = float(np.median(members[:, 4]))
        members = members[(members[:, 4] >= 0.4 * med) & (members[:, 4] <= 2.5 * med)]
        if len(members) >= 3:
            cy = (members[:, 0] + members[:, 2]) / 2
            cx = (members[:, 1] + members[:, 3]) / 2
            per_line = len(members) / min(_lines(cy, 0.5 * med), _lines(cx, 0.5 * med))
            if per_line < 2.0:  # glyphs scattered, not in lines or columns
                continue
        box = (int(members[:, 0].min()), int(members[:, 1].min()), int(members[:, 2].max()), int(members[:, 3].max()))
        if max(box[2] - box[0], box[3] - box[1]) < wk.min_block:
            continue
        _add_block(wk, "free", expand(box, int(0.3 * med) + 2, (h, w)), med, dmax=max(2, int(math.ceil(0.2 * med))),
                   need_halo=len(members) < 3)


def _surrounded(dist: np.ndarray, ink: np.ndarray, halo: int, width: int = 3, sectors: int = 8,
                need: int = 6) -> bool:
    """True when ink lies right behind the halo (within ``width`` px of its outer edge) in at least
    ``need`` of ``sectors`` directions around the glyphs: a white halo over the art. A stroke of the
    art in a white gap has paper going on to one side."""
    band = (dist > halo) & (dist <= halo + width)
    ys, xs = np.nonzero(band)
    if ys.size == 0:
        return False
    cy, cx = np.nonzero(dist == 0)
    ang = np.arctan2(ys - cy.mean(), xs - cx.mean())
    sector = ((ang + math.pi) / (2 * math.pi) * sectors).astype(int) % sectors
    hit = np.zeros(sectors, bool)
    hit[sector[ink[ys, xs]]] = True
    return int(hit.sum()) >= need


def _add_block(wk: _Work, kind: str, box: Box, size: float, dmax: int, need_halo: bool = False) -> bool:
    """Glyphs of ``box``, their halo and growth -> a part of the mask (True when added). ``need_halo``:
    only with a clean white halo over the art (a band of paper around the glyphs with ink right
    behind it)."""
    glyphs, count = _glyphs_in(wk, box, size, need_solid=need_halo)
    if count < (1 if need_halo else 3):
        return False
    margin = dmax + int(math.ceil(wk.grow)) + 1
    crop = expand(box, margin, wk.shape)
    y0, x0, y1, x1 = crop
    g = np.zeros((y1 - y0, x1 - x0), bool)
    g[box[0] - y0 : box[2] - y0, box[1] - x0 : box[3] - x0] = glyphs
    halo, dist = _halo(g, ~wk.ink[y0:y1, x0:x1], dmax, share=HALO_SHARE if need_halo else 0.9)
    if need_halo and (halo < 1 or not _surrounded(dist, wk.ink[y0:y1, x0:x1], halo)):
        return False
    part = dist <= halo + wk.grow
    wk.parts.append((crop, part, TextBlock(kind, crop, count, halo * wk.f)))
    return True


# --------------------------------------------------------------------------------------------- SFX

#: SFX letters: strokes at least this many smallest-glyph sizes thick (the generator's are 2-6).
SFX_MIN_THICK = 1.5
#: ... and at most this share of the letter's size (bold strokes, not a blob).
SFX_MAX_THICK = 0.35
#: Share of the band around a letter that must be of the outline's colour.
SFX_OUTLINE = 0.85
#: Letters are strokes of one width: the spread of the ridge's depth (interquartile range over the
#: median), the share of the body deeper than 1.5 stroke radii, and the share of the box the
#: letters fill stay under these.
SFX_MAX_SPREAD = 0.9
#: White letters are looked for among all enclosed paper shapes, which include the wedges between
#: focus lines and the limbs of white figures: their strokes must be more even.
SFX_MAX_SPREAD_WHITE = 0.35
#: ... and strokes at least this share of their size thick (a letter or two, not a long wedge).
SFX_MIN_THICK_WHITE = 0.1
SFX_MAX_DEEP = 0.15
SFX_MAX_FILL = 0.75


def _strokes(body: np.ndarray) -> tuple[float, float, float]:
    """``(r, spread, deep)`` of a body: ``r`` the median depth of its medial ridge (half the stroke
    width), ``spread`` the interquartile range of the ridge's depth over ``r`` (small for strokes of
    one width), ``deep`` the share of the body deeper than 1.5 ``r`` (a blob has a deep core)."""
    inside = ndimage.distance_transform_edt(body)
    ridge = (inside >= ndimage.maximum_filter(inside, size=3)) & (inside >= 2)
    if not ridge.any():
        return 0.0, 0.0, 1.0
    q1, r, q3 = np.percentile(inside[ridge], [25, 50, 75])
    return float(r), float(q3 - q1) / float(r), float(np.count_nonzero(inside > 1.5 * r)) / float(np.count_nonzero(body))


def _sfx_letter(wk: _Work, crop: Box, body: np.ndarray, size: float, outline_is_ink: bool) -> None:
    """Accept ``body`` (bool on ``crop``: black letters, or the white inside of outlined letters) as
    SFX when its strokes are bold and of one width and a band of the other colour runs around it;
    adds it with its outline (measured) and ``grow`` to the parts."""
    if body.mean() > SFX_MAX_FILL:
        return  # a filled box: a black panel, a frame
    k = max(1, int(SFX_MIN_THICK * wk.gmin / 6))  # the strokes measured on every k-th pixel (still >= 6 px thick)
    r, spread, deep = _strokes(body[::k, ::k])
    r *= k
    if 2 * r < SFX_MIN_THICK * wk.gmin or 2 * r > SFX_MAX_THICK * size:
        return
    if outline_is_ink and 2 * r < SFX_MIN_THICK_WHITE * size:
        return  # long thin paper shapes: the wedges between focus lines
    if spread > (SFX_MAX_SPREAD_WHITE if outline_is_ink else SFX_MAX_SPREAD) or deep > SFX_MAX_DEEP:
        return  # strokes of many widths, a blob with a deep core: art
    y0, x0, y1, x1 = crop
    cap = max(2, int(math.ceil(0.8 * r)))
    margin = cap + int(math.ceil(wk.grow)) + 1
    big = expand(crop, margin, wk.shape)
    by0, bx0, by1, bx1 = big
    g = np.zeros((by1 - by0, bx1 - bx0), bool)
    g[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = body
    other = wk.ink[by0:by1, bx0:bx1]
    if not outline_is_ink:
        other = ~other
    dist = ndimage.distance_transform_edt(~g)
    need = max(2, int(math.ceil(0.3 * r)))
    band = (dist > 0) & (dist <= need)
    if (other & band).sum() < SFX_OUTLINE * band.sum():
        return
    # the outline as measured; over paper of its own colour (a white outline on white paper) it cannot
    # be seen and does not matter: 0.4 stroke radii then
    outline = _band(dist, other, cap, SFX_OUTLINE, open_ended=max(need, int(math.ceil(0.4 * r))))
    part = dist <= outline + wk.grow
    wk.parts.append((big, part, TextBlock("sfx", big, 1, outline * wk.f)))


def _sfx(wk: _Work) -> None:
    """SFX: black letters with a white outline (ink components) and white letters with a black
    outline (paper components of the coarse page, measured exactly)."""
    h, w = wk.shape
    long_side = max(h, w)
    lab, boxes, area = wk.ink_components()
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ok = (size > wk.gmax) & (size <= 0.5 * long_side) & (area[1:] >= 0.05 * size.astype(np.float64) ** 2)
    for i in np.flatnonzero(ok):
        y0, x0, y1, x1 = (int(v) for v in boxes[i])
        body = lab[y0:y1, x0:x1] == i + 1
        _sfx_letter(wk, (y0, x0, y1, x1), body, float(size[i]), outline_is_ink=False)
    plab, n, parea, edge = wk.coarse_paper()
    c = wk.c
    psize_ok = (parea * c * c >= 0.05 * wk.gmax**2) & (parea * c * c <= 0.02 * h * w)
    psize_ok[0] = False
    psize_ok[edge] = False
    if not psize_ok.any():
        return
    plab, _ = relabel(plab, psize_ok)
    seen = wk.taken.copy()
    for k, sl in enumerate(ndimage.find_objects(plab), start=1):
        if sl is None:
            continue
        if max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) * c <= wk.gmax:
            continue
        comp_c = plab[sl] == k
        region = _exact_region(wk, comp_c, (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), seen, 0.02 * h * w)
        if region is None:
            continue
        crop, body = region
        ys, xs = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
        tight = (crop[0] + int(ys[0]), crop[1] + int(xs[0]), crop[0] + int(ys[-1]) + 1, crop[1] + int(xs[-1]) + 1)
        body = body[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
        sz = max(body.shape)
        if sz <= wk.gmax or sz > 0.5 * long_side:
            continue
        _sfx_letter(wk, tight, body, float(sz), outline_is_ink=True)


def _assemble(wk: _Work, shape: tuple[int, int]) -> tuple[np.ndarray, list[TextBlock]]:
    """Blow the parts back up to page size (only inside their boxes)."""
    hf, wf = shape
    mask = np.zeros(shape, bool)
    blocks = []
    f = wk.f
    for (y0, x0, y1, x1), part, block in wk.parts:
        py0, px0 = y0 * f, x0 * f
        py1, px1 = min(hf, y1 * f), min(wf, x1 * f)
        mask[py0:py1, px0:px1] |= upsample(part, f, (py1 - py0, px1 - px0))
        blocks.append(TextBlock(block.kind, (py0, px0, py1, px1), block.glyphs, block.halo))
    return mask, blocks


def detect_text(image, settings: TextMaskSettings | None = None, **options) -> TextMaskResult:
    """Find the text of a page (see the module docstring). ``image``: numpy ``[H, W]`` or ``[H, W, C]``,
    float 0..1 or uint8. Give :class:`TextMaskSettings` or its fields as keywords."""
    if settings is None:
        settings = TextMaskSettings(**options)
    elif options:
        raise TypeError("detect_text: give either settings or keyword options, not both")
    page = check_page(image)
    wk = _work(page, settings)
    bubbles = _bubbles(wk) if settings.bubbles or settings.free_text or settings.sfx else []
    if not settings.bubbles:  # bubbles still keep their text out of the free-text and SFX passes
        wk.parts = []
    if settings.free_text:
        _free_text(wk)
    if settings.sfx:
        _sfx(wk)
    mask, blocks = _assemble(wk, page.shape[:2])
    f = wk.f
    boxes = [(y0 * f, x0 * f, min(page.shape[0], y1 * f), min(page.shape[1], x1 * f)) for y0, x0, y1, x1 in bubbles]
    return TextMaskResult(mask=mask, blocks=blocks, bubbles=boxes, factor=f, threshold=wk.t / 255.0)
