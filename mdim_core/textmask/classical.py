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
    Box,
    check_page,
    expand,
    grow_crop,
    holes_of,
    inner,
    otsu,
    relabel,
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

    @property
    def shape(self) -> tuple[int, int]:
        return self.gray.shape


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
                 taken=np.zeros((h, w), bool))


def _sizes(slices) -> np.ndarray:
    return np.array([max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) for sl in slices], np.float64)


def _bubbles(wk: _Work) -> list[Box]:
    """Speech bubbles: enclosed paper regions holding glyph-sized holes. Adds their text to parts."""
    h, w = wk.shape
    labels, _ = ndimage.label(~wk.ink)  # 4-connected paper: a 1-px diagonal ink line separates
    area = np.bincount(labels.ravel())
    keep = (area >= (3 * wk.gmin) ** 2) & (area <= 0.2 * h * w)
    keep[0] = False
    labels, _ = relabel(labels, keep)
    found = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if y0 == 0 or x0 == 0 or y1 == h or x1 == w:  # reaches the page edge: margins, gutters
            continue
        comp = np.pad(labels[sl] == k, 1)  # a frame of background: nothing at the crop edge is a hole
        hl, nh = holes_of(comp)
        comp, hl = comp[1:-1, 1:-1], hl[1:-1, 1:-1]
        holes = hl > 0
        filled = comp | holes
        n_holes_px = int(holes.sum())
        if n_holes_px == 0 or n_holes_px > 0.5 * filled.sum():
            continue
        hsl = ndimage.find_objects(hl)
        size = _sizes(hsl)
        harea = np.bincount(hl.ravel())[1:]
        glyphish = (size >= wk.gmin) & (size <= wk.gmax)
        big = size > wk.gmax  # a figure in a white panel, an SFX over the bubble: not text
        if glyphish.sum() < 3 or harea[glyphish].sum() < 0.6 * harea[~big].sum():
            continue  # no text, or mostly dots (a screentone-filled shape)
        if harea[big].sum() > 0.5 * filled.sum():
            continue
        if (holes & wk.ink[sl]).sum() - harea[big].sum() > 0.2 * filled.sum():
            continue  # too much ink for text: a panel of screentone or hatching
        # glyphs stand apart; screentone dots and hatching lines have ink right next to them
        ids = np.flatnonzero(glyphish)[:: max(1, int(glyphish.sum()) // 40)]
        apart = 0
        for i in ids:
            hy0, hx0, hy1, hx1 = expand((hsl[i][0].start, hsl[i][1].start, hsl[i][0].stop, hsl[i][1].stop), 4, comp.shape)
            sub = hl[hy0:hy1, hx0:hx1]
            own = sub == i + 1
            apart += _two_dimensional(own) and _ring_is_paper(own, (sub > 0) & ~own | ~filled[hy0:hy1, hx0:hx1])
        if apart < 0.6 * len(ids):
            continue
        big = np.flatnonzero(big) + 1
        text = holes & ~np.isin(hl, big) if big.size else holes
        ty, tx = np.nonzero(text)
        tbox = (int(ty.min()), int(tx.min()), int(ty.max()) + 1, int(tx.max()) + 1)
        if max(tbox[2] - tbox[0], tbox[3] - tbox[1]) < wk.min_block:
            continue
        margin = int(math.ceil(wk.grow)) + 1
        cy0, cx0, cy1, cx1 = expand(tbox, margin, comp.shape)
        t_crop = text[cy0:cy1, cx0:cx1]
        inside = inner(filled, wk.protect)[cy0:cy1, cx0:cx1]
        grown = grow_crop(t_crop, wk.grow) & (inside | t_crop)
        box = (y0 + cy0, x0 + cx0, y0 + cy1, x0 + cx1)
        wk.parts.append((box, grown, TextBlock("bubble", box, int(glyphish.sum()))))
        wk.taken[sl] |= filled
        found.append((y0, x0, y1, x1))
    return found


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


def _halo(glyphs: np.ndarray, paper: np.ndarray, dmax: int) -> tuple[int, np.ndarray]:
    """Width of the paper band around ``glyphs`` (0 when the paper goes on: text on white) and the
    distance map to the glyphs."""
    dist = ndimage.distance_transform_edt(~glyphs)
    halo = 0
    for d in range(1, dmax + 1):
        band = (dist > d - 1) & (dist <= d)
        n = int(band.sum())
        if n == 0 or (paper & band).sum() < 0.9 * n:
            break
        halo = d
    return (0 if halo >= dmax else halo), dist


def _glyphs_in(wk: _Work, box: Box, med: float, radius: float = 3.0) -> tuple[np.ndarray, int]:
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
        if _stroke_like(comp, size) and _ring_is_paper(comp, ink[cy0:cy1, cx0:cx1], radius):
            bodies[cy0:cy1, cx0:cx1] |= comp
            count += 1
    out = bodies.copy()
    other = ink & ~bodies
    r = max(radius, 0.3 * med)
    for k, sl in small:
        cy0, cx0, cy1, cx1 = expand((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), int(r) + 1, ink.shape)
        comp = lab[cy0:cy1, cx0:cx1] == k
        if _ring_is_paper(comp, other[cy0:cy1, cx0:cx1], r):
            out[cy0:cy1, cx0:cx1] |= comp
    return out, count


def _lines(centres: np.ndarray, tol: float) -> int:
    """Number of groups of sorted 1-D positions separated by more than ``tol``."""
    c = np.sort(centres)
    return 1 + int((np.diff(c) > tol).sum()) if len(c) else 0


def _free_text(wk: _Work) -> None:
    h, w = wk.shape
    labels, _ = ndimage.label(wk.ink, EIGHT)
    area = np.bincount(labels.ravel())
    keep = area >= max(6.0, 0.15 * wk.gmin**2)
    keep[0] = False
    labels, _ = relabel(labels, keep)
    cands = []  # (y0, x0, y1, x1, size)
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        size = max(y1 - y0, x1 - x0)
        if size < wk.gmin or size > wk.gmax or wk.taken[(y0 + y1) // 2, (x0 + x1) // 2]:
            continue
        cy0, cx0, cy1, cx1 = expand((y0, x0, y1, x1), 3, (h, w))
        comp = labels[cy0:cy1, cx0:cx1] == k
        if _stroke_like(comp, size) and _two_dimensional(comp) and _ring_is_paper(comp, wk.ink[cy0:cy1, cx0:cx1]):
            cands.append((y0, x0, y1, x1, size))
    if not cands:
        return
    c = np.array(cands, np.float64)
    cell = 4
    canvas = np.zeros((h // cell + 2, w // cell + 2), bool)
    for y0, x0, y1, x1, size in cands:
        m = 0.5 * size
        canvas[int((y0 - m) // cell) + 1 : int((y1 + m) // cell) + 2, int((x0 - m) // cell) + 1 : int((x1 + m) // cell) + 2] = True
    blab, _ = ndimage.label(canvas, EIGHT)
    group = blab[((c[:, 0] + c[:, 2]) / 2 // cell + 1).astype(int), ((c[:, 1] + c[:, 3]) / 2 // cell + 1).astype(int)]
    for gid in np.unique(group):
        members = c[group == gid]
        med = float(np.median(members[:, 4]))
        members = members[(members[:, 4] >= 0.4 * med) & (members[:, 4] <= 2.5 * med)]
        if len(members) < 3:
            continue
        cy = (members[:, 0] + members[:, 2]) / 2
        cx = (members[:, 1] + members[:, 3]) / 2
        per_line = len(members) / min(_lines(cy, 0.5 * med), _lines(cx, 0.5 * med))
        if per_line < 2.0:  # glyphs scattered, not in lines or columns
            continue
        box = (int(members[:, 0].min()), int(members[:, 1].min()), int(members[:, 2].max()), int(members[:, 3].max()))
        if max(box[2] - box[0], box[3] - box[1]) < wk.min_block:
            continue
        _add_block(wk, "free", expand(box, int(0.3 * med) + 2, (h, w)), med, dmax=max(2, int(math.ceil(0.2 * med))))


def _add_block(wk: _Work, kind: str, box: Box, size: float, dmax: int) -> None:
    """Glyphs of ``box``, their halo and growth -> a part of the mask."""
    glyphs, count = _glyphs_in(wk, box, size)
    if count < (1 if kind == "sfx" else 3):
        return
    margin = dmax + int(math.ceil(wk.grow)) + 1
    crop = expand(box, margin, wk.shape)
    y0, x0, y1, x1 = crop
    g = np.zeros((y1 - y0, x1 - x0), bool)
    g[box[0] - y0 : box[2] - y0, box[1] - x0 : box[3] - x0] = glyphs
    halo, dist = _halo(g, ~wk.ink[y0:y1, x0:x1], dmax)
    part = dist <= halo + wk.grow
    wk.parts.append((crop, part, TextBlock(kind, crop, count, halo * wk.f)))


def _sfx(wk: _Work) -> None:
    h, w = wk.shape
    long_side = max(h, w)
    labels, _ = ndimage.label(wk.ink, EIGHT)
    area = np.bincount(labels.ravel())
    keep = area >= wk.gmax**2 * 0.1
    keep[0] = False
    labels, _ = relabel(labels, keep)
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        size = max(y1 - y0, x1 - x0)
        if size <= wk.gmax or size > 0.4 * long_side:
            continue
        r = max(2, int(0.02 * size))
        cy0, cx0, cy1, cx1 = expand((y0, x0, y1, x1), r + 1, (h, w))
        comp = labels[cy0:cy1, cx0:cx1] == k
        if comp.sum() < 0.1 * comp.size or (wk.taken[cy0:cy1, cx0:cx1] & grow_crop(comp, 1)).any():
            continue  # a frame (panel border) or the outline of a bubble
        thick = 2 * ndimage.distance_transform_edt(comp).max()
        if thick > 0.3 * size or not _ring_is_paper(comp, wk.ink[cy0:cy1, cx0:cx1], r, max_ink=0.4):
            continue
        box = (cy0, cx0, cy1, cx1)
        dmax = max(2, int(0.12 * size))
        margin = dmax + int(math.ceil(wk.grow)) + 1
        crop = expand(box, margin, (h, w))
        g = np.zeros((crop[2] - crop[0], crop[3] - crop[1]), bool)
        g[y0 - crop[0] : y1 - crop[0], x0 - crop[1] : x1 - crop[1]] = labels[y0:y1, x0:x1] == k
        halo, dist = _halo(g, ~wk.ink[crop[0] : crop[2], crop[1] : crop[3]], dmax)
        wk.parts.append((crop, dist <= halo + wk.grow, TextBlock("sfx", crop, 1, halo * wk.f)))


def _assemble(wk: _Work, shape: tuple[int, int]) -> tuple[np.ndarray, list[TextBlock]]:
    """Blow the parts back up to page size (only inside their boxes)."""
    hf, wf = shape
    mask = np.zeros(shape, bool)
    blocks = []
    f = wk.f
    for (y0, x0, y1, x1), part, block in wk.parts:
        big = part if f == 1 else np.repeat(np.repeat(part, f, axis=0), f, axis=1)
        py0, px0 = y0 * f, x0 * f
        py1, px1 = min(hf, y1 * f), min(wf, x1 * f)
        mask[py0:py1, px0:px1] |= big[: py1 - py0, : px1 - px0]
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
    bubbles = _bubbles(wk) if settings.bubbles or settings.free_text else []
    if not settings.bubbles:  # bubbles still keep their text out of the free-text pass
        wk.parts = []
    if settings.free_text:
        _free_text(wk)
    if settings.sfx:
        _sfx(wk)
    mask, blocks = _assemble(wk, page.shape[:2])
    f = wk.f
    boxes = [(y0 * f, x0 * f, min(page.shape[0], y1 * f), min(page.shape[1], x1 * f)) for y0, x0, y1, x1 in bubbles]
    return TextMaskResult(mask=mask, blocks=blocks, bubbles=boxes, factor=f, threshold=wk.t / 255.0)
