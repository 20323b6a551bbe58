"""Procedural manga pages with exact ground truth for text/SFX removal.

:func:`generate_page` draws a page from a seed: a panel grid (black borders, white gutters), panel
backgrounds (white, black, dot screentones with several line frequencies, angles and tones, dot
gradients, line tones, cross-hatching, radial focus lines), parallel speed lines, figure-like shapes
filled with tone and outlined with ink of varying width, free ink strokes, speech bubbles (white,
outlined, with a tail) holding glyph-like pseudo-text, free text over the artwork (white-outlined),
and big SFX letters over the artwork.

The page is rendered twice: ``clean`` without the removable elements (bubble text and SFX) and
``page`` with them. ``clean`` is the exact result of a perfect removal: ``page == clean`` wherever
the removable masks are 0.

Physical sizes (line widths, screen rulings, glyph sizes) scale with ``dpi``; the layout scales
with the page size. The same seed gives the same page at every dpi in layout; pixels differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import glyphs
from .maskgen import box_mask, small_mask, wide_mask
from .raster import (
    Capsules,
    DotTone,
    Ellipse,
    FocusLines,
    Layer,
    LineTone,
    Shape,
    Union,
    clip_box,
    coverage,
    draw_stroke,
    fill,
    fill_box,
    paint_coverage,
    segments_coverage,
    stroke_coverage,
)

__all__ = ["SynthPage", "generate_page", "page_size", "PAPER_SIZES_MM", "MASK_KINDS", "TEXT_STYLES",
           "FREE_TEXT_MODES", "TRUTH_KINDS"]

#: Paper sizes (width, height) in millimetres.
PAPER_SIZES_MM = {"A4": (210.0, 297.0), "B5": (182.0, 257.0), "A5": (148.0, 210.0), "B6": (128.0, 182.0)}

#: Names of the masks in :attr:`SynthPage.masks`.
MASK_KINDS = ("text", "sfx", "wide", "box", "small")
#: ``generate_page(text=...)`` and ``free_text=...`` options.
TEXT_STYLES = ("cjk", "latin")
FREE_TEXT_MODES = ("auto", "tone", "none")
TRUTH_KINDS = ("bubble", "bubble_text", "free_text", "sfx", "bubble_text_mask", "free_text_mask")

_MAX_PIXELS = 80_000_000


@dataclass
class SynthPage:
    """A generated page and its ground truth.

    ``page`` / ``clean``: float32 ``[H, W]`` grayscale in 0..1 (0 = ink, 1 = paper), with and without
    the removable elements (bubble text and SFX).
    ``masks``: bool ``[H, W]`` arrays, True = to repaint: ``"text"`` (bubble text, dilated),
    ``"sfx"`` (SFX letters with their outline, dilated), and random inpainting masks independent of
    the artwork: ``"wide"`` (LaMa-style thick strokes), ``"box"`` (rectangles), ``"small"`` (small
    blobs). ``page == clean`` wherever ``text | sfx`` is False.
    ``panels``: panel boxes ``(x0, y0, x1, y1)`` (outer edge of the border, exclusive end).
    ``screentone``: bool ``[H, W]``, True where the clean page shows a dot or line screen.
    ``tones``: one dict per screen laid (kind, lpi, angle in degrees, coverage(s), box).
    """

    page: np.ndarray
    clean: np.ndarray
    masks: dict[str, np.ndarray]
    panels: list[tuple[int, int, int, int]]
    screentone: np.ndarray
    dpi: float
    seed: int
    tones: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    #: With ``generate_page(truth=True)``, bool ``[H, W]`` maps: ``"bubble"`` bubble interiors (white,
    #: inside the outline and its anti-aliased edge); ``"bubble_text"`` / ``"free_text"`` / ``"sfx"``
    #: the pixels each kind changes (glyph ink with its anti-aliased edge; free text and SFX with their
    #: white halo or outline); ``"bubble_text_mask"`` / ``"free_text_mask"`` the dilated masks of
    #: bubble and free text (their union is ``masks["text"]``). Empty otherwise.
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def removable(self) -> np.ndarray:
        """Where the page differs from the clean page: ``text | sfx``."""
        return self.masks["text"] | self.masks["sfx"]


def page_size(size: str | tuple[int, int], dpi: float) -> tuple[int, int]:
    """``(H, W)`` in pixels of a paper size name (``"A5"``, ``"A4"`` ...) at ``dpi``, or ``size`` itself."""
    if isinstance(size, str):
        key = size.upper()
        if key not in PAPER_SIZES_MM:
            raise ValueError(f"size must be one of {sorted(PAPER_SIZES_MM)} or (H, W) in pixels, got {size!r}")
        w_mm, h_mm = PAPER_SIZES_MM[key]
        return int(round(h_mm / 25.4 * dpi)), int(round(w_mm / 25.4 * dpi))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a paper size name or (H, W) in pixels, got {size!r}") from None
    return h, w


def generate_page(
    seed: int,
    size: str | tuple[int, int] = "A5",
    dpi: float = 300.0,
    masks: bool = True,
    *,
    text: str = "cjk",
    free_text: str = "auto",
    halo: bool = True,
    truth: bool = False,
) -> SynthPage:
    """Generate a manga page from ``seed``; ``size`` is a paper size name or ``(H, W)`` pixels.

    ``masks=False`` skips the random inpainting masks (``wide``, ``box``, ``small`` are then empty).

    Options for text detection benchmarks (the defaults give the pages every earlier version gave):

    - ``text``: ``"cjk"`` kanji-like pseudo-glyphs, vertical or horizontal; ``"latin"`` capital
      letters in words, centred horizontal lines (as English scanlations letter them);
    - ``free_text``: ``"auto"`` free text over the artwork in some panels; ``"tone"`` free text in
      every panel with a screentone background (text over screentone); ``"none"`` no free text;
    - ``halo``: free text has a white outline (halo); ``False`` draws it straight over the art;
    - ``truth``: fill :attr:`SynthPage.truth` with per-kind ground truth (see there).
    """
    if text not in TEXT_STYLES:
        raise ValueError(f"text must be one of {TEXT_STYLES}, got {text!r}")
    if free_text not in FREE_TEXT_MODES:
        raise ValueError(f"free_text must be one of {FREE_TEXT_MODES}, got {free_text!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (isinstance(dpi, (int, float)) and 36 <= dpi <= 1200):
        raise ValueError(f"dpi must be a number in 36..1200, got {dpi}")
    h, w = page_size(size, dpi)
    if not (64 <= h and 64 <= w and h * w <= _MAX_PIXELS):
        raise ValueError(f"size must be at least 64x64 px and at most {_MAX_PIXELS} px in all, got {h}x{w}")
    seq = np.random.SeedSequence(int(seed) & 0xFFFFFFFFFFFFFFFF)
    layout_seq, mask_seq = seq.spawn(2)
    rng = np.random.default_rng(layout_seq)
    r = _Renderer(h, w, float(dpi), rng, text=text, free_text=free_text, halo=bool(halo), truth=bool(truth))
    r.draw()
    m = {"text": r.text_mask, "sfx": r.sfx_mask}
    if masks:
        mrng = np.random.default_rng(mask_seq)
        scale = dpi / 300.0
        m["wide"] = wide_mask(mrng, (h, w))
        m["box"] = box_mask(mrng, (h, w))
        m["small"] = small_mask(mrng, (h, w), scale)
    else:
        for k in ("wide", "box", "small"):
            m[k] = np.zeros((h, w), bool)
    meta = dict(seed=int(seed), size=[h, w], dpi=float(dpi), scenes=r.scenes, bubbles=r.n_bubbles,
                free_text=r.n_free_text, sfx=r.n_sfx,
                bubble_ellipses=[[round(b[k], 2) for k in ("cx", "cy", "a", "b")] for b in r.bubbles])
    if (text, free_text, halo) != ("cjk", "auto", True):
        meta.update(text=text, free_text_mode=free_text, halo=bool(halo))
    return SynthPage(page=r.page, clean=r.clean, masks=m, panels=r.panels, screentone=r.tone, dpi=float(dpi),
                     seed=int(seed), tones=r.tones, metadata=meta, truth=r.truth)


class _Inset(Shape):
    """A shape shrunk by ``inset`` px (its signed distance moved outward)."""

    def __init__(self, shape: Shape, inset: float):
        self.shape, self.inset, self.box = shape, float(inset), shape.box

    def sdf(self, ys, xs):
        return self.shape.sdf(ys, xs) + np.float32(self.inset)


class _Renderer:
    def __init__(self, h: int, w: int, dpi: float, rng: np.random.Generator, text: str = "cjk",
                 free_text: str = "auto", halo: bool = True, truth: bool = False):
        self.h, self.w, self.dpi, self.rng = h, w, dpi, rng
        self.text_style, self.free_mode, self.halo = text, free_text, halo
        self.truth = {k: np.zeros((h, w), bool) for k in TRUTH_KINDS} if truth else {}
        self.s = dpi / 300.0  # physical scale
        self.clean = np.ones((h, w), np.float32)
        self.tone = np.zeros((h, w), bool)
        self.text_mask = np.zeros((h, w), bool)
        self.sfx_mask = np.zeros((h, w), bool)
        self.page_box = (0, h, 0, w)
        self.panels: list[tuple[int, int, int, int]] = []
        self.scenes: list[dict] = []
        self.tones: list[dict] = []
        self.bubbles: list[dict] = []
        self.n_bubbles = 0
        self.n_sfx = 0

    # -- helpers --------------------------------------------------------------------------------
    def layer(self, clip, tone=True) -> Layer:
        return Layer(self.clean, clip, self.tone if tone else None)

    def random_screen(self, box, gradient=False):
        rng = self.rng
        lpi = float(rng.choice([50, 55, 60, 65, 70, 75, 80, 85]))
        period = self.dpi / lpi
        angle = math.radians(float(rng.choice([45, 45, 45, 0, 15, 30, 60, 75])))
        cov = float(rng.choice([0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6]))
        y0, y1, x0, x1 = box
        if gradient:
            end = float(np.clip(cov + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5), 0.05, 0.7))
            ang = rng.uniform(0, 2 * math.pi)
            d = (math.cos(ang), math.sin(ang))
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            half = 0.5 * (abs(d[0]) * (x1 - x0) + abs(d[1]) * (y1 - y0))
            tone = DotTone(period, angle, cov, end, origin=(cx - d[0] * half, cy - d[1] * half), direction=d,
                           length=max(2 * half, 1.0))
        else:
            end = None
            tone = DotTone(period, angle, cov)
        self.tones.append(dict(kind="dots", lpi=lpi, period=period, angle=math.degrees(angle), coverage=cov,
                               coverage_end=end, box=[int(x0), int(y0), int(x1), int(y1)]))
        return tone

    def random_linetone(self, box, cross=False):
        rng = self.rng
        lpi = float(rng.uniform(25, 60)) if cross else float(rng.choice([40, 50, 60, 65]))
        angle = math.radians(float(rng.uniform(0, 180)))
        cov = float(rng.uniform(0.1, 0.3) if cross else rng.uniform(0.15, 0.5))
        self.tones.append(dict(kind="hatch" if cross else "lines", lpi=lpi, period=self.dpi / lpi,
                               angle=math.degrees(angle), coverage=cov,
                               box=[int(box[2]), int(box[0]), int(box[3]), int(box[1])]))
        return LineTone(self.dpi / lpi, angle, cov, cross=cross, cross_angle=math.radians(rng.uniform(60, 120)))

    def taper(self, n, width):
        t = np.linspace(0, 1, n)
        return 0.5 * width * (0.25 + 0.75 * np.sin(math.pi * t)) + 0.3

    # -- page -----------------------------------------------------------------------------------
    def draw(self):
        h, w, rng = self.h, self.w, self.rng
        mx, my = 0.07 * w, 0.06 * h
        gx, gy = max(2.0, 0.015 * w), max(3.0, 0.022 * h)
        n_rows = int(rng.integers(2, 5))
        heights = rng.uniform(0.6, 1.4, n_rows)
        heights = heights / heights.sum() * (h - 2 * my - gy * (n_rows - 1))
        y = my
        for rh in heights:
            n_cols = int(rng.choice([1, 2, 2, 3]))
            widths = rng.uniform(0.6, 1.4, n_cols)
            widths = widths / widths.sum() * (w - 2 * mx - gx * (n_cols - 1))
            x = mx
            for cw in widths:
                self.panels.append((int(round(x)), int(round(y)), int(round(x + cw)), int(round(y + rh))))
                x += cw + gx
            y += rh + gy
        for p in self.panels:
            self.draw_panel(p)
        for p in self.panels:
            if rng.uniform() < 0.6:
                self.add_bubbles(p)
        # Free text over the artwork (thoughts, narration, hand lettering), outlined in white.
        free = []
        for (x0, y0, x1, y1), scene in zip(self.panels, self.scenes):
            pw, ph = x1 - x0, y1 - y0
            g = rng.uniform(20, 30) * self.s
            if self.free_mode == "auto":
                chance = 0.3
            else:  # "tone": every screentone panel; "none": never (the draw keeps the layout of the page)
                chance = 1.0 if self.free_mode == "tone" and scene["background"] in ("dots", "gradient", "lines") else 0.0
            if rng.uniform() < chance and min(pw, ph) > 6 * g:
                vertical = bool(rng.uniform() < 0.6)
                lines, per = int(rng.integers(1, 3)), int(rng.integers(3, 7))
                hw = (lines * g * 1.15 if vertical else per * g * 1.05) / 2
                hh = (per * g * 1.05 if vertical else lines * g * 1.15) / 2
                if 2 * hw < pw * 0.9 and 2 * hh < ph * 0.9:
                    cx = x0 + rng.uniform(hw + 0.05 * pw, pw - hw - 0.05 * pw)
                    cy = y0 + rng.uniform(hh + 0.05 * ph, ph - hh - 0.05 * ph)
                    free.append(dict(cx=cx, cy=cy, hw=hw, hh=hh, glyph=g, vertical=vertical,
                                     seed=int(rng.integers(0, 2**31)), halo=rng.uniform(1.5, 3.0) * self.s))
                    if not self.halo:
                        free[-1]["halo"] = 0.0
        self.n_free_text = len(free)
        self.page = self.clean.copy()
        for b in self.bubbles + free:
            self.draw_text(b)
        n_sfx = int(rng.choice([0, 1, 1, 2, 2, 3]))
        for _ in range(n_sfx):
            self.draw_sfx()
        self.n_sfx = n_sfx

    def draw_panel(self, p):
        rng, s = self.rng, self.s
        x0, y0, x1, y1 = p
        box = (y0, y1, x0, x1)
        pw, ph = x1 - x0, y1 - y0
        lay = self.layer(box)
        kind = str(rng.choice(["white", "dots", "gradient", "lines", "black", "focus", "hatch"],
                              p=[0.22, 0.25, 0.15, 0.1, 0.08, 0.12, 0.08]))
        scene = dict(box=list(p), background=kind)
        if kind == "dots":
            fill_box(lay, box, self.random_screen(box))
        elif kind == "gradient":
            fill_box(lay, box, self.random_screen(box, gradient=True))
        elif kind == "lines":
            fill_box(lay, box, self.random_linetone(box))
        elif kind == "hatch":
            fill(lay, Ellipse(x0 + pw * rng.uniform(0.2, 0.8), y0 + ph * rng.uniform(0.2, 0.8), pw * rng.uniform(0.3, 0.6),
                              ph * rng.uniform(0.2, 0.5), rng.uniform(0, math.pi)), self.random_linetone(box, cross=True))
        elif kind == "black":
            fill_box(lay, box, 0.0)
        elif kind == "focus":
            n = int(rng.integers(60, 160))
            radius = math.hypot(pw, ph)
            fl = FocusLines(x0 + pw * rng.uniform(0.3, 0.7), y0 + ph * rng.uniform(0.3, 0.7),
                            starts=rng.uniform(0.15, 0.45, n) * min(pw, ph), widths=rng.uniform(2, 9, n) * s,
                            jitter=rng.uniform(-0.3, 0.3, n), radius=radius)
            fill_box(lay, box, fl)
        # parallel speed lines
        if kind in ("white", "dots", "black") and rng.uniform() < 0.35:
            ink = 1.0 if kind == "black" else 0.0
            ang = rng.uniform(-0.3, 0.3) + (0 if rng.uniform() < 0.7 else math.pi / 2)
            c, si = math.cos(ang), math.sin(ang)
            for _ in range(int(rng.integers(12, 40))):
                length = rng.uniform(0.3, 0.9) * pw
                cx, cy = x0 + rng.uniform(0, pw), y0 + rng.uniform(0, ph)
                pts = np.array([[cx - c * length / 2, cy - si * length / 2], [cx, cy],
                                [cx + c * length / 2, cy + si * length / 2]])
                width = rng.uniform(1.0, 4.0) * s
                draw_stroke(lay, pts, [0.3, width / 2, 0.3], ink)
            scene["speed_lines"] = True
        # figures
        heads = []
        for _ in range(int(rng.integers(0, 3))):
            heads.append(self.draw_figure(lay, p))
        # free ink strokes
        for _ in range(int(rng.integers(2, 9))):
            pts = glyphs.bezier(*(np.array([x0, y0]) + rng.uniform(0, 1, (4, 2)) * [pw, ph]), n=16)
            draw_stroke(lay, pts, self.taper(16, rng.uniform(1.0, 6.0) * s), 1.0 if kind == "black" else 0.0)
        # border (exact pixels, over the artwork)
        bw = max(1, int(round(rng.uniform(2, 4) * s)))
        border = self.layer(self.page_box)
        fill_box(border, (y0, y0 + bw, x0, x1), 0.0)
        fill_box(border, (y1 - bw, y1, x0, x1), 0.0)
        fill_box(border, (y0, y1, x0, x0 + bw), 0.0)
        fill_box(border, (y0, y1, x1 - bw, x1), 0.0)
        scene["figures"] = len(heads)
        scene["heads"] = heads
        self.scenes.append(scene)

    def draw_figure(self, lay, p):
        rng, s = self.rng, self.s
        x0, y0, x1, y1 = p
        pw, ph = x1 - x0, y1 - y0
        size = min(pw, ph) * rng.uniform(0.25, 0.5)
        cx, cy = x0 + pw * rng.uniform(0.2, 0.8), y0 + ph * rng.uniform(0.45, 0.9)
        body = Ellipse(cx, cy, size * rng.uniform(0.25, 0.4), size * rng.uniform(0.45, 0.7), rng.uniform(-0.3, 0.3))
        hr = size * rng.uniform(0.18, 0.26)
        hx, hy = cx + rng.uniform(-0.1, 0.1) * size, cy - body.b - hr * 0.8
        head = Ellipse(hx, hy, hr, hr * rng.uniform(1.0, 1.2))
        parts = [body, head]
        for _ in range(int(rng.integers(1, 5))):
            a = rng.uniform(0, 2 * math.pi)
            start = (cx + math.cos(a) * body.a * 0.6, cy + math.sin(a) * body.b * 0.6)
            end = (start[0] + math.cos(a) * size * rng.uniform(0.3, 0.6), start[1] + math.sin(a) * size * rng.uniform(0.3, 0.6))
            rad = size * rng.uniform(0.05, 0.09)
            parts.append(Capsules(np.array([start, end]), [rad, rad * 0.8]))
        shape = Union(parts)
        kind = rng.choice(["white", "dots", "black"], p=[0.4, 0.45, 0.15])
        box = (y0, y1, x0, x1)
        paint = {"white": 1.0, "black": 0.0}.get(str(kind)) if kind != "dots" else self.random_screen(box)
        ow = rng.uniform(1.5, 5.0) * s
        fill(lay, shape, paint, outline=ow, outline_paint=0.0 if kind != "black" else 1.0,
             width_mod=(rng.uniform(0.2, 0.6), rng.uniform(0.01, 0.05) / s, rng.uniform(0.01, 0.05) / s, rng.uniform(0, 6.3)))
        # hair and eyes
        fill(lay, Ellipse(hx, hy - hr * 0.35, hr * 1.05, hr * 0.7), 0.0)
        for ex in (-0.35, 0.35):
            fill(lay, Ellipse(hx + ex * hr, hy + 0.15 * hr, max(1.0, hr * 0.1), max(1.5, hr * 0.16)), 0.0)
        return [float(hx), float(hy), float(hr)]

    # -- bubbles and text -------------------------------------------------------------------------
    def add_bubbles(self, p):
        rng, s = self.rng, self.s
        x0, y0, x1, y1 = p
        pw, ph = x1 - x0, y1 - y0
        glyph = rng.uniform(26, 36) * s
        for _ in range(int(rng.integers(1, 3))):
            a = min(pw * rng.uniform(0.18, 0.32), 0.2 * self.w)
            b = min(ph * rng.uniform(0.22, 0.4), 0.16 * self.h)
            if min(a, b) < 2.2 * glyph:
                glyph = max(4.0, min(a, b) / 2.2)
            if min(a, b) < 12:
                continue
            cx = x0 + rng.uniform(0.15, 0.85) * pw
            cy = y0 + rng.uniform(0.1, 0.5) * ph
            # Keep bubbles on the page and apart from each other (their text would collide).
            cx = min(max(cx, a + 0.02 * self.w), self.w * 0.98 - a)
            cy = min(max(cy, b + 0.02 * self.h), self.h * 0.98 - b)
            if any(abs(cx - o["cx"]) < a + o["a"] + 4 * s and abs(cy - o["cy"]) < b + o["b"] + 4 * s for o in self.bubbles):
                continue
            ell = Ellipse(cx, cy, a, b, margin=6 * s + 4)
            ta = rng.uniform(0.3, 2.8)  # tail downwards-ish
            base = (cx + math.cos(ta) * a * 0.7, cy + math.sin(ta) * b * 0.7)
            tip = (cx + math.cos(ta) * (a + 0.5 * b), cy + math.sin(ta) * b * 1.5)
            tail = Capsules(np.array([base, tip]), [0.22 * min(a, b), 0.5], margin=6 * s + 4)
            shape = Union([ell, tail])
            lw = rng.uniform(1.5, 3.0) * s
            lay = Layer(self.clean, self.page_box, self.tone)
            fill(lay, shape, 1.0, outline=lw, outline_paint=0.0)
            if self.truth:  # the interior: white fill, no outline and none of its anti-aliased edge
                cov = coverage(_Inset(shape, lw / 2 + 0.5), self.page_box)
                if cov is not None:
                    (by0, by1, bx0, bx1), inside = cov
                    self.truth["bubble"][by0:by1, bx0:bx1] |= inside >= 0.5
            self.bubbles.append(dict(cx=cx, cy=cy, a=a, b=b, glyph=glyph, vertical=bool(rng.uniform() < 0.6),
                                     seed=int(rng.integers(0, 2**31))))
            self.n_bubbles += 1

    def draw_text(self, b):
        rng = np.random.default_rng(b["seed"])
        g = b["glyph"]
        if "hw" in b:
            hw, hh = b["hw"], b["hh"]
        else:  # inside the bubble's inscribed rectangle
            hw, hh = b["a"] * 0.62, b["b"] * 0.62
        halo = float(b.get("halo", 0.0))
        stroke_r = max(0.5, g * rng.uniform(0.035, 0.05))
        lay = Layer(self.page, self.page_box, None)
        mg = g + halo + 2
        cov_box = (int(b["cy"] - hh - mg), int(b["cy"] + hh + mg), int(b["cx"] - hw - mg), int(b["cx"] + hw + mg))
        cov_box = clip_box(cov_box, self.page_box)
        if cov_box is None:
            return
        if self.text_style == "latin":
            placed = self._latin_glyphs(rng, b, g, hw, hh)
        else:
            placed = self._cjk_glyphs(rng, b, g, hw, hh)
        alpha = np.zeros((cov_box[1] - cov_box[0], cov_box[3] - cov_box[2]), np.float32)
        outer = np.zeros_like(alpha) if halo > 0 else None
        for segs, gx, gy, gw, gh in placed:
            m = stroke_r + halo + 2
            gbox = clip_box((int(gy - m), int(math.ceil(gy + gh + m)), int(gx - m), int(math.ceil(gx + gw + m))), cov_box)
            if gbox is None:
                continue
            sub = (slice(gbox[0] - cov_box[0], gbox[1] - cov_box[0]), slice(gbox[2] - cov_box[2], gbox[3] - cov_box[2]))
            np.maximum(alpha[sub], segments_coverage(segs, stroke_r, gbox), out=alpha[sub])
            if outer is not None:
                np.maximum(outer[sub], segments_coverage(segs, stroke_r + halo, gbox), out=outer[sub])
        if outer is not None:
            paint_coverage(lay, cov_box, outer, 1.0)
        paint_coverage(lay, cov_box, alpha, 0.0)
        hit = (outer if outer is not None else alpha) > 0
        radius = max(1, int(round(3 * self.s)))
        self._mark(self.text_mask, cov_box, hit, radius)
        if self.truth:
            kind = "free_text" if "hw" in b else "bubble_text"
            y0, y1, x0, x1 = cov_box
            self.truth[kind][y0:y1, x0:x1] |= hit
            self._mark(self.truth[kind + "_mask"], cov_box, hit, radius)

    def _cjk_glyphs(self, rng, b, g, hw, hh):
        """Kanji-like glyphs in columns (right to left) or rows: [(segments, x, y, width, height)]."""
        placed = []
        pitch = g * 1.15
        n_lines = max(1, int(2 * (hw if b["vertical"] else hh) // pitch))
        per_line = max(1, int(2 * (hh if b["vertical"] else hw) // (g * 1.05)))
        for li in range(n_lines):
            count = per_line - int(rng.integers(0, max(1, per_line // 2 + 1)))
            for gi in range(max(1, count)):
                if b["vertical"]:  # columns right to left, glyphs top to bottom
                    gx = b["cx"] + hw - (li + 1) * pitch + (pitch - g) / 2
                    gy = b["cy"] - hh + gi * g * 1.05
                else:
                    gx = b["cx"] - hw + gi * g * 1.05
                    gy = b["cy"] - hh + li * pitch
                segs = np.concatenate([np.concatenate([st[:-1], st[1:]], 1) for st in glyphs.text_glyph(rng)])
                placed.append((segs * g + [gx, gy, gx, gy], gx, gy, g, g))
        return placed

    def _latin_glyphs(self, rng, b, g, hw, hh):
        """Capital letters in words on centred horizontal lines: [(segments, x, y, width, height)]."""
        cap = 0.78 * g
        gap, space, pitch = 0.2 * cap, 0.6 * cap, 1.35 * cap
        n_lines = max(1, int(2 * hh // pitch))
        lines = []
        for _ in range(n_lines):
            words, width = [], 0.0
            for _ in range(12):
                word = glyphs.latin_word(rng)
                ww = sum(glyphs.LATIN[ch][0] * cap for ch in word) + gap * (len(word) - 1)
                extra = ww + (space if words else 0.0)
                if width + extra > 2 * hw:
                    break
                words.append(word)
                width += extra
            if not words:  # a short word always fits
                words, width = ["!"], glyphs.LATIN["!"][0] * cap
            lines.append((words, width))
        placed = []
        top = b["cy"] - len(lines) * pitch / 2 + (pitch - cap) / 2
        for li, (words, width) in enumerate(lines):
            x = b["cx"] - width / 2
            y = top + li * pitch
            for wi, word in enumerate(words):
                if wi:
                    x += space
                for ci, ch in enumerate(word):
                    if ci:
                        x += gap
                    cw, strokes = glyphs.latin_strokes(ch)
                    segs = np.concatenate([np.concatenate([st[:-1], st[1:]], 1) for st in strokes])
                    segs = segs * [cw * cap, cap, cw * cap, cap] + [x, y, x, y]
                    placed.append((segs, x, y, cw * cap, cap))
                    x += cw * cap
        return placed

    def _mark(self, mask, box, hit, radius):
        """OR a dilated hit map into ``mask`` on ``box`` grown by ``radius``."""
        grown = clip_box((box[0] - radius, box[1] + radius, box[2] - radius, box[3] + radius), self.page_box)
        local = np.zeros((grown[1] - grown[0], grown[3] - grown[2]), bool)
        local[box[0] - grown[0] : box[1] - grown[0], box[2] - grown[2] : box[3] - grown[2]] = hit
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = yy * yy + xx * xx <= radius * radius
        local = ndimage.binary_dilation(local, structure=disk)
        mask[grown[0] : grown[1], grown[2] : grown[3]] |= local

    # -- SFX --------------------------------------------------------------------------------------
    def draw_sfx(self):
        rng, s = self.rng, self.s
        h, w = self.h, self.w
        size = min(h, w) * rng.uniform(0.08, 0.15)
        n = int(rng.integers(2, 5))
        ang = rng.uniform(-0.6, 0.6)
        c, si = math.cos(ang), math.sin(ang)
        sx, sy = rng.uniform(0.1, 0.9 - 0.1 * n) * w, rng.uniform(0.1, 0.85) * h
        radius = size * rng.uniform(0.07, 0.11)
        outline = max(1.5 * s, radius * rng.uniform(0.35, 0.6))
        black_fill = rng.uniform() < 0.7
        strokes = []
        for i in range(n):
            ox = sx + c * i * size * 1.05
            oy = sy + si * i * size * 1.05 + rng.uniform(-0.1, 0.1) * size
            for st in glyphs.sfx_letter(rng):
                local = (st - 0.5) * size
                rot = np.stack([local[:, 0] * c - local[:, 1] * si, local[:, 0] * si + local[:, 1] * c], 1)
                strokes.append(rot + [ox, oy])
        pts = np.concatenate(strokes)
        m = radius + outline + 2
        box = clip_box((int(pts[:, 1].min() - m), int(pts[:, 1].max() + m) + 1, int(pts[:, 0].min() - m),
                        int(pts[:, 0].max() + m) + 1), self.page_box)
        if box is None:
            return
        outer = np.zeros((box[1] - box[0], box[3] - box[2]), np.float32)
        inner = np.zeros_like(outer)
        for st in strokes:
            for buf, rad in ((outer, radius + outline), (inner, radius)):
                cov = stroke_coverage(st, rad, box)
                if cov is None:
                    continue
                (y0, y1, x0, x1), a = cov
                dst = buf[y0 - box[0] : y1 - box[0], x0 - box[2] : x1 - box[2]]
                np.maximum(dst, a, out=dst)
        lay = Layer(self.page, self.page_box, None)
        paint_coverage(lay, box, outer, 1.0 if black_fill else 0.0)
        paint_coverage(lay, box, inner, 0.0 if black_fill else 1.0)
        self._mark(self.sfx_mask, box, outer > 0, max(2, int(round(4 * s))))
        if self.truth:
            self.truth["sfx"][box[0] : box[1], box[2] : box[3]] |= outer > 0
