"""Anti-aliased rasterisation of the synthetic pages: signed distance fields, tones, compositing.

Coordinates are pixels, ``x`` to the right (columns) and ``y`` down (rows); pixel ``(i, j)`` has its
centre at ``(x, y) = (j + 0.5, i + 0.5)``. Shapes are signed distance fields (negative inside, in
pixels); coverage of a pixel is ``clip(0.5 - d, 0, 1)``, the exact area for a straight edge. Every
field is evaluated on a shape's bounding box in row chunks with float32 temporaries, so memory does
not grow with the page size.

A canvas is a float32 ``[H, W]`` page (0 = ink, 1 = paper). Paint is a constant grey or a
:class:`Tone` (a halftone texture evaluated at the pixel centres). Compositing is
``canvas += alpha * (paint - canvas)``: pixels with alpha 0 are left bit-exactly untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_CHUNK_PIXELS = 1 << 20  # elements per temporary when evaluating a field


Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


def clip_box(box: Box, limit: Box) -> Box | None:
    y0, y1 = max(box[0], limit[0]), min(box[1], limit[1])
    x0, x1 = max(box[2], limit[2]), min(box[3], limit[3])
    if y1 <= y0 or x1 <= x0:
        return None
    return (y0, y1, x0, x1)


def row_chunks(box: Box):
    """Yield (r0, r1, ys [h,1], xs [1,w]) pixel-centre coordinates of ``box`` in row chunks."""
    y0, y1, x0, x1 = box
    rows = max(1, _CHUNK_PIXELS // max(1, x1 - x0))
    xs = (np.arange(x0, x1, dtype=np.float32) + np.float32(0.5))[None, :]
    for r0 in range(y0, y1, rows):
        r1 = min(y1, r0 + rows)
        ys = (np.arange(r0, r1, dtype=np.float32) + np.float32(0.5))[:, None]
        yield r0, r1, ys, xs


# ---------------------------------------------------------------------------------------------
# shapes (signed distance fields)


class Shape:
    box: Box  # bounding box of the shape including a margin for outlines

    def sdf(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Ellipse(Shape):
    cx: float
    cy: float
    a: float  # semi-axis along the rotated x
    b: float
    angle: float = 0.0  # radians
    margin: float = 8.0

    def __post_init__(self):
        r = max(self.a, self.b) + self.margin
        self.box = (int(self.cy - r), int(math.ceil(self.cy + r)), int(self.cx - r), int(math.ceil(self.cx + r)))

    def sdf(self, ys, xs):
        c, s = np.float32(math.cos(self.angle)), np.float32(math.sin(self.angle))
        dx, dy = xs - np.float32(self.cx), ys - np.float32(self.cy)
        u = dx * c + dy * s
        v = dy * c - dx * s
        ia2, ib2 = np.float32(1 / self.a**2), np.float32(1 / self.b**2)
        f = u * u * ia2 + v * v * ib2 - 1.0
        # First-order distance: f / |grad f|, accurate near the boundary (where anti-aliasing happens).
        g = 2.0 * np.sqrt(u * u * ia2 * ia2 + v * v * ib2 * ib2) + np.float32(1e-6)
        return f / g


@dataclass
class Capsules(Shape):
    """A polyline with a radius at every vertex (linearly varying along each segment)."""

    points: np.ndarray  # [N, 2] (x, y)
    radii: np.ndarray  # [N]
    margin: float = 8.0

    def __post_init__(self):
        self.points = np.asarray(self.points, np.float32).reshape(-1, 2)
        self.radii = np.broadcast_to(np.asarray(self.radii, np.float32), (len(self.points),)).copy()
        if len(self.points) == 1:
            self.points = np.repeat(self.points, 2, axis=0)
            self.radii = np.repeat(self.radii, 2)
        r = float(self.radii.max()) + self.margin
        lo, hi = self.points.min(0), self.points.max(0)
        self.box = (int(lo[1] - r), int(math.ceil(hi[1] + r)), int(lo[0] - r), int(math.ceil(hi[0] + r)))

    def sdf(self, ys, xs):
        best = None
        p, rad = self.points, self.radii
        for i in range(len(p) - 1):
            ax, ay = p[i]
            bx, by = p[i + 1]
            ra, rb = rad[i], rad[i + 1]
            # Skip segments far from this chunk (cheap bounding test).
            reach = max(ra, rb) + self.margin
            if (min(ay, by) - reach > ys[-1, 0] or max(ay, by) + reach < ys[0, 0]
                    or min(ax, bx) - reach > xs[0, -1] or max(ax, bx) + reach < xs[0, 0]):
                continue
            ex, ey = bx - ax, by - ay
            l2 = ex * ex + ey * ey
            px, py = xs - ax, ys - ay
            if l2 > 1e-12:
                t = np.clip((px * ex + py * ey) * np.float32(1.0 / l2), 0.0, 1.0)
            else:
                t = np.zeros(np.broadcast_shapes(px.shape, py.shape), np.float32)
            qx, qy = px - t * ex, py - t * ey
            d = np.sqrt(qx * qx + qy * qy) - (ra + t * (rb - ra))
            best = d if best is None else np.minimum(best, d, out=best)
        if best is None:
            return np.full((ys.shape[0], xs.shape[1]), 1e6, np.float32)
        return np.broadcast_to(best, (ys.shape[0], xs.shape[1]))


@dataclass
class Union(Shape):
    parts: list

    def __post_init__(self):
        boxes = np.array([p.box for p in self.parts])
        self.box = (int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max()))

    def sdf(self, ys, xs):
        out = None
        for p in self.parts:
            d = p.sdf(ys, xs)
            out = np.array(d, np.float32) if out is None else np.minimum(out, d, out=out)
        return out


# ---------------------------------------------------------------------------------------------
# tones (paint textures)


class Tone:
    """A paint whose grey value varies per pixel (a halftone screen). ``is_screentone`` marks
    periodic dot/line screens for the screentone-region mask."""

    is_screentone = True

    def values(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _rotated(ys, xs, angle, period):
    c, s = np.float32(math.cos(angle) / period), np.float32(math.sin(angle) / period)
    return xs * c + ys * s, ys * c - xs * s


@dataclass
class DotTone(Tone):
    """Round halftone dots on a square grid rotated by ``angle``; ``period`` in px (dpi / lpi).

    Ink coverage goes linearly from ``coverage`` to ``coverage_end`` along ``direction`` over
    ``length`` px from ``origin`` (a dot gradient); equal values give a flat tone. Up to 50 %
    coverage black dots grow at the grid points (area = coverage); above it white dots shrink at the
    cell corners. Dot edges are anti-aliased analytically from the distance to the dot centre.
    """

    period: float
    angle: float
    coverage: float
    coverage_end: float | None = None
    origin: tuple[float, float] = (0.0, 0.0)
    direction: tuple[float, float] = (0.0, 1.0)
    length: float = 1.0

    def coverage_at(self, ys, xs):
        if self.coverage_end is None or self.coverage_end == self.coverage:
            return None
        dx, dy = self.direction
        t = ((xs - np.float32(self.origin[0])) * np.float32(dx) + (ys - np.float32(self.origin[1])) * np.float32(dy))
        t = np.clip(t * np.float32(1.0 / self.length), 0.0, 1.0)
        return np.float32(self.coverage) + t * np.float32(self.coverage_end - self.coverage)

    def values(self, ys, xs):
        p = np.float32(self.period)
        u, v = _rotated(ys, xs, self.angle, self.period)
        cov = self.coverage_at(ys, xs)
        area = np.float32(self.period**2)
        if cov is None:
            c = float(self.coverage)
            if c <= 0.5:
                fu, fv = u - np.round(u), v - np.round(v)
                d = p * np.sqrt(fu * fu + fv * fv)
                r = np.float32(_aa_radius(c * self.period**2))
                return 1.0 - np.clip(r - d + 0.5, 0.0, 1.0)
            fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
            d = p * np.sqrt(fu * fu + fv * fv)
            r = np.float32(_aa_radius((1.0 - c) * self.period**2))
            return np.clip(r - d + 0.5, 0.0, 1.0)
        cov = np.broadcast_to(cov, np.broadcast_shapes(u.shape, cov.shape))
        fu, fv = u - np.round(u), v - np.round(v)
        d_black = p * np.sqrt(fu * fu + fv * fv)
        fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        d_white = p * np.sqrt(fu * fu + fv * fv)
        r_black = _aa_radius(np.minimum(cov, 0.5) * area)
        r_white = _aa_radius(np.minimum(1.0 - cov, 0.5) * area)
        black = 1.0 - np.clip(r_black - d_black + 0.5, 0.0, 1.0)
        white = np.clip(r_white - d_white + 0.5, 0.0, 1.0)
        return np.where(cov <= 0.5, black, white).astype(np.float32, copy=False)


def _aa_radius(area):
    """Radius R whose anti-aliased disk, coverage ``clip(R - d + 0.5, 0, 1)``, has ink ``area`` (px^2).

    The linear ramp adds pi/12 px^2 to a disk of radius R >= 0.5 (area = pi (R^2 + 1/12)); smaller
    dots are a cone of area pi (R + 0.5)^3 / 3. Inverting keeps the mean tone of a screen exact.
    """
    a = np.asarray(area, np.float32) / np.float32(math.pi)
    big = np.sqrt(np.maximum(a - np.float32(1 / 12), 0.0))
    small = np.cbrt(3.0 * a) - np.float32(0.5)
    return np.where(a >= np.float32(1 / 3), big, small).astype(np.float32)


@dataclass
class LineTone(Tone):
    """Parallel lines (period px, angle) whose width is ``coverage * period``; ``cross`` adds a
    second set at ``angle + cross_angle`` (hatching)."""

    period: float
    angle: float
    coverage: float
    cross: bool = False
    cross_angle: float = math.pi / 2

    def _lines(self, ys, xs, angle):
        u, _ = _rotated(ys, xs, angle, self.period)
        d = np.float32(self.period) * np.abs(u - np.round(u))
        half = np.float32(self.coverage * self.period / 2)
        return np.clip(half - d + 0.5, 0.0, 1.0)

    def values(self, ys, xs):
        a = self._lines(ys, xs, self.angle)
        if self.cross:
            b = self._lines(ys, xs, self.angle + self.cross_angle)
            return (1.0 - a) * (1.0 - b)
        return 1.0 - a


@dataclass
class FocusLines(Tone):
    """Radial speed lines converging to (cx, cy): ``n`` black wedges whose width grows from 0 at
    their start radius to ``width`` px at ``radius``; ``background`` grey between the lines."""

    cx: float
    cy: float
    starts: np.ndarray  # [n] start radius of every line (px)
    widths: np.ndarray  # [n] width at ``radius`` (px)
    jitter: np.ndarray  # [n] angular offset in fractions of the spacing
    radius: float
    background: float = 1.0
    ink: float = 0.0
    is_screentone = False

    def values(self, ys, xs):
        n = len(self.starts)
        dx, dy = xs - np.float32(self.cx), ys - np.float32(self.cy)
        r = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dy, dx)
        pos = (theta + np.float32(math.pi)) * np.float32(n / (2 * math.pi))
        k = np.clip(np.floor(pos).astype(np.int32), 0, n - 1)
        centre = k.astype(np.float32) + 0.5 + self.jitter.astype(np.float32)[k]
        dist = np.abs(pos - centre) * np.float32(2 * math.pi / n) * r  # px across the line
        start = self.starts.astype(np.float32)[k]
        grow = np.clip((r - start) / np.float32(max(self.radius, 1.0)), 0.0, 1.0)
        half = 0.5 * self.widths.astype(np.float32)[k] * grow
        a = np.clip(half - dist + 0.5, 0.0, 1.0) * (grow > 0)
        return np.float32(self.background) + a * np.float32(self.ink - self.background)


# ---------------------------------------------------------------------------------------------
# compositing


@dataclass
class Layer:
    """Where drawing happens: the canvas, the region it may touch, optional per-pixel trackers.

    ``tone``: bool [H, W] screentone-region map (set where a screentone is laid with alpha > 0.5,
    cleared where anything else is); ``touched``: bool [H, W] set wherever alpha > 0.
    """

    canvas: np.ndarray
    clip: Box
    tone: np.ndarray | None = None
    touched: np.ndarray | None = None


def fill(layer: Layer, shape: Shape, paint, outline: float = 0.0, outline_paint: float = 0.0,
         width_mod: tuple[float, float, float, float] | None = None) -> Box | None:
    """Fill ``shape`` with ``paint`` (grey or :class:`Tone`), then optionally draw its outline.

    ``outline`` is the outline width in px (centred on the edge); ``width_mod`` = (amp, kx, ky, phase)
    makes it vary as ``outline * (1 + amp * sin(kx*x + ky*y + phase))`` (brush pressure).
    Returns the pixel box that was evaluated.
    """
    box = clip_box(shape.box, layer.clip)
    if box is None:
        return None
    for r0, r1, ys, xs in row_chunks(box):
        d = shape.sdf(ys, xs)
        sl = (slice(r0, r1), slice(box[2], box[3]))
        if paint is not None:
            a = np.clip(0.5 - d, 0.0, 1.0)
            _composite(layer, sl, a, paint, ys, xs)
        if outline > 0:
            w = np.float32(outline / 2)
            if width_mod is not None:
                amp, kx, ky, ph = width_mod
                w = w * (1.0 + np.float32(amp) * np.sin(xs * np.float32(kx) + ys * np.float32(ky) + np.float32(ph)))
            a = np.clip(w - np.abs(d) + 0.5, 0.0, 1.0)
            _composite(layer, sl, a, outline_paint, ys, xs)
    return box


def _composite(layer: Layer, sl, a: np.ndarray, paint, ys, xs) -> None:
    a = np.broadcast_to(a, (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))
    view = layer.canvas[sl]
    if isinstance(paint, Tone):
        p = np.broadcast_to(paint.values(ys, xs), a.shape)
        view += a * (p - view)
        is_tone = paint.is_screentone
    else:
        view += a * (np.float32(paint) - view)
        is_tone = False
    if layer.tone is not None:
        strong = a > 0.5
        if is_tone:
            layer.tone[sl] |= strong
        else:
            layer.tone[sl] &= ~strong
    if layer.touched is not None:
        layer.touched[sl] |= a > 0


def fill_box(layer: Layer, box: Box, paint) -> None:
    """Fill an axis-aligned pixel box exactly (no anti-aliasing needed)."""
    box = clip_box(box, layer.clip)
    if box is None:
        return
    for r0, r1, ys, xs in row_chunks(box):
        sl = (slice(r0, r1), slice(box[2], box[3]))
        if isinstance(paint, Tone):
            layer.canvas[sl] = paint.values(ys, xs)
            is_tone = paint.is_screentone
        else:
            layer.canvas[sl] = paint
            is_tone = False
        if layer.tone is not None:
            layer.tone[sl] = is_tone
        if layer.touched is not None:
            layer.touched[sl] = True


def coverage(shape: Shape, limit: Box) -> tuple[Box, np.ndarray] | None:
    """Anti-aliased coverage (float32) of ``shape`` on its box clipped to ``limit``."""
    box = clip_box(shape.box, limit)
    if box is None:
        return None
    out = np.empty((box[1] - box[0], box[3] - box[2]), np.float32)
    for r0, r1, ys, xs in row_chunks(box):
        out[r0 - box[0] : r1 - box[0]] = np.clip(0.5 - shape.sdf(ys, xs), 0.0, 1.0)
    return box, out


def _segment_coverage(ax, ay, bx, by, ra, rb, ys, xs):
    ex, ey = np.float32(bx - ax), np.float32(by - ay)
    l2 = float(ex * ex + ey * ey)
    px, py = xs - np.float32(ax), ys - np.float32(ay)
    if l2 > 1e-12:
        t = np.clip((px * ex + py * ey) * np.float32(1.0 / l2), 0.0, 1.0)
    else:
        t = np.zeros(np.broadcast_shapes(px.shape, py.shape), np.float32)
    qx, qy = px - t * ex, py - t * ey
    d = np.sqrt(qx * qx + qy * qy) - (np.float32(ra) + t * np.float32(rb - ra))
    return np.clip(0.5 - d, 0.0, 1.0)


def stroke_coverage(points, radii, limit: Box) -> tuple[Box, np.ndarray] | None:
    """Anti-aliased coverage of a variable-width polyline (union of tapered capsules).

    Each segment is evaluated on its own small box only, so long curves stay cheap.
    """
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    rad = np.broadcast_to(np.asarray(radii, np.float32), (len(pts),))
    if len(pts) == 1:
        pts, rad = np.repeat(pts, 2, axis=0), np.repeat(rad, 2)
    r = float(rad.max()) + 2
    lo, hi = pts.min(0), pts.max(0)
    box = clip_box((int(lo[1] - r), int(math.ceil(hi[1] + r)), int(lo[0] - r), int(math.ceil(hi[0] + r))), limit)
    if box is None:
        return None
    out = np.zeros((box[1] - box[0], box[3] - box[2]), np.float32)
    for i in range(len(pts) - 1):
        (ax, ay), (bx, by) = pts[i], pts[i + 1]
        ra, rb = float(rad[i]), float(rad[i + 1])
        rr = max(ra, rb) + 2
        seg = clip_box((int(min(ay, by) - rr), int(math.ceil(max(ay, by) + rr)),
                        int(min(ax, bx) - rr), int(math.ceil(max(ax, bx) + rr))), box)
        if seg is None:
            continue
        for r0, r1, ys, xs in row_chunks(seg):
            a = _segment_coverage(ax, ay, bx, by, ra, rb, ys, xs)
            dst = out[r0 - box[0] : r1 - box[0], seg[2] - box[2] : seg[3] - box[2]]
            np.maximum(dst, a, out=dst)
    return box, out


def paint_coverage(layer: Layer, box: Box, alpha: np.ndarray, paint) -> None:
    """Composite ``paint`` with a precomputed coverage ``alpha`` on ``box``."""
    for r0, r1, ys, xs in row_chunks(box):
        sl = (slice(r0, r1), slice(box[2], box[3]))
        _composite(layer, sl, alpha[r0 - box[0] : r1 - box[0]], paint, ys, xs)


def draw_stroke(layer: Layer, points, radii, paint=0.0) -> tuple[Box, np.ndarray] | None:
    """Draw an anti-aliased variable-width polyline; returns its (box, coverage)."""
    cov = stroke_coverage(points, radii, layer.clip)
    if cov is not None:
        paint_coverage(layer, cov[0], cov[1], paint)
    return cov


def segments_coverage(segments: np.ndarray, radius: float, box: Box) -> np.ndarray:
    """Coverage on ``box`` of constant-width segments ``[n, 4]`` (ax, ay, bx, by), evaluated at once
    (for small boxes such as one glyph)."""
    seg = np.asarray(segments, np.float32).reshape(-1, 4)
    y0, y1, x0, x1 = box
    ys = (np.arange(y0, y1, dtype=np.float32) + np.float32(0.5))[None, :, None]
    xs = (np.arange(x0, x1, dtype=np.float32) + np.float32(0.5))[None, None, :]
    ax, ay, bx, by = (seg[:, i, None, None] for i in range(4))
    ex, ey = bx - ax, by - ay
    l2 = np.maximum(ex * ex + ey * ey, np.float32(1e-12))
    px, py = xs - ax, ys - ay
    t = np.clip((px * ex + py * ey) / l2, 0.0, 1.0)
    qx, qy = px - t * ex, py - t * ey
    d = np.sqrt(qx * qx + qy * qy).min(axis=0) - np.float32(radius)
    return np.clip(0.5 - d, 0.0, 1.0)
