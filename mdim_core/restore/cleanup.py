"""Classical cleanup of old manga scans: from a yellowed, stained colour scan to a clean grey page.

The steps, in order (each a function of its own, :func:`clean_page` chains them):

1. :func:`to_gray` — grayscale that keeps the most ink/paper contrast under a yellow tint. Yellowing
   and stains darken the blue channel most, so the ``"auto"`` method weights each channel by its
   ink/paper contrast over its paper noise (a matched filter), measured on the page itself.
2. :func:`estimate_background` / :func:`divide_background` — the paper's brightness (uneven light,
   vignetting, stains, tint) is estimated on a grid of cells and divided out, so paper becomes 1.0.
   Only cells that look like paper count; screentone panels and black areas are bridged from the
   paper around them (gutters, bubbles), so their tone is kept.
3. :func:`sharpen` — an unsharp mask undoes the scanner's blur, so screentone dots are dots again
   when the levels cut (a blurred light tone would otherwise vanish into white); its amount follows
   the blur measured on the page's sharpest edges (:func:`estimate_blur`).
4. optional :func:`deskew` — the skew angle is found at low resolution from the sharpness of the ink's
   projection profiles (panel borders and text lines), the page is turned back with bicubic resampling.
5. :func:`apply_levels` — the MDIM thesis' levels by default (auto-contrast, then 90..190 -> 0..255,
   from :mod:`.levels`), or explicit black/white points.
6. optional :func:`suppress_bleed_through` — faint marks far from any real ink become paper.
7. optional :func:`despeckle` — small dark specks with no other ink around them become paper;
   screentone dots always have neighbours, so they stay.

Nothing here blurs the page: screentone dots survive. Large pages are handled in float32 with
vectorised operations, and everything that needs a wide neighbourhood (background, blur estimate,
skew) runs on a reduced copy, so a 600-dpi A4 page (4961x7016) takes about a second.

Pages are numpy arrays: in, float32 ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` in 0..1 (or uint8);
out, float32 ``[H, W]`` in 0..1 (0 = ink, 1 = paper). Inputs are never modified.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..imaging import checks
from . import levels

log = logging.getLogger("MDIM")

__all__ = [
    "CleanupSettings",
    "GRAY_METHODS",
    "LEVELS_MODES",
    "to_gray",
    "channel_weights",
    "estimate_background",
    "divide_background",
    "divide_background_lowres",
    "sharpen",
    "estimate_blur",
    "blur_amount",
    "apply_levels",
    "estimate_skew",
    "rotate_page",
    "deskew",
    "suppress_bleed_through",
    "despeckle",
    "clean_page",
    "memory_bytes",
]

#: Grayscale conversions: "auto" (contrast/noise matched weights), "luma" (BT.601), "red", "green",
#: "max" (the brightest channel), "mean".
GRAY_METHODS = ("auto", "luma", "red", "green", "max", "mean")
#: Levels: "thesis" (auto-contrast then black..white point -> 0..1), "points" (black..white point
#: -> 0..1 directly), "off" (the background-divided page as is).
LEVELS_MODES = ("thesis", "points", "off")

_ROWS = 1024  # rows processed at once in full-resolution passes (bounds float temporaries)


@dataclass(frozen=True)
class CleanupSettings:
    """Options of :func:`clean_page`. Lengths are in pixels of the input page; 0 means "automatic"."""

    gray: str = "auto"  # one of GRAY_METHODS
    background: bool = True  # divide out the paper background
    cell: int = 0  # background grid cell (px); 0 = long side / 440, at least 4
    ink_size: int = 0  # reach of the paper interpolation across ink and screentone (px); 0 = long side / 3
    sharpen: float = 3.0  # unsharp-mask amount undoing scanner blur before levels; 0 = off
    adaptive_sharpen: bool = True  # scale the amount by the blur measured on the page (sharp scans get less)
    sharpen_radius: float = 0.0  # its gaussian sigma (px); 0 = dpi / 300, or long side / 2480 without dpi
    dpi: float = 0.0  # the scan's resolution when known (sets automatic lengths); 0 = unknown
    levels: str = "thesis"  # one of LEVELS_MODES
    black_point: float = 90.0  # 0..255
    white_point: float = 190.0  # 0..255
    bleed_through: float = 0.0  # 0 = off .. 1 = strongest
    despeckle: int = 0  # largest speck removed (area in px); 0 = off
    deskew: bool = False
    max_skew: float = 3.0  # degrees searched either way by deskew

    def __post_init__(self):
        if self.gray not in GRAY_METHODS:
            raise ValueError(f"gray must be one of {GRAY_METHODS}, got {self.gray!r}")
        if self.levels not in LEVELS_MODES:
            raise ValueError(f"levels must be one of {LEVELS_MODES}, got {self.levels!r}")
        if not 0.0 <= self.black_point < self.white_point <= 255.0:
            raise ValueError(
                "black_point and white_point must satisfy 0 <= black_point < white_point <= 255, "
                f"got {self.black_point} and {self.white_point}"
            )
        if not 0.0 <= self.bleed_through <= 1.0:
            raise ValueError(f"bleed_through must be in 0..1, got {self.bleed_through}")
        if not 0.0 <= self.sharpen <= 10.0:
            raise ValueError(f"sharpen must be in 0..10, got {self.sharpen}")
        if self.dpi < 0:
            raise ValueError(f"dpi must be >= 0 (0 = unknown), got {self.dpi}")
        if self.sharpen_radius < 0:
            raise ValueError(f"sharpen_radius must be >= 0 (0 = automatic), got {self.sharpen_radius}")
        for name in ("cell", "ink_size", "despeckle"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = automatic/off), got {getattr(self, name)}")
        if not 0.0 < self.max_skew <= 15.0:
            raise ValueError(f"max_skew must be in (0, 15] degrees, got {self.max_skew}")

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# input checks


def _gray2d(gray: np.ndarray, name: str = "gray") -> np.ndarray:
    page = checks.page_array(gray, name)
    if page.shape[2] != 1:
        raise ValueError(f"{name}: expected a grayscale page [H, W] or [H, W, 1], got shape {gray.shape}")
    return page[:, :, 0]


def _subsample(img: np.ndarray, target: int = 1_000_000) -> np.ndarray:
    step = max(1, int(math.sqrt(img.shape[0] * img.shape[1] / target)))
    return img[::step, ::step]


# ---------------------------------------------------------------------------------------------
# 1. grayscale


def channel_weights(image: np.ndarray) -> np.ndarray:
    """Weights (summing to 1) of the R, G, B channels that maximise ink/paper contrast over noise.

    For each channel: contrast = paper level (99.5th percentile) - ink level (0.5th percentile),
    noise = robust spread of the paper's fine texture (median absolute difference of neighbouring
    pixels in the brightest half). Weight ~ contrast / noise^2, the matched filter for independent
    noise. Yellowed paper has little contrast and more stain texture in blue, so blue gets the least.
    """
    page = checks.page_array(image, keep_uint8=True)
    if page.shape[2] == 1:
        return np.ones(1, np.float32)
    sample = checks.float_pixels(np.ascontiguousarray(_subsample(page[:, :, :3], 250_000)))
    flat = sample.reshape(-1, 3)
    lo = np.percentile(flat, 0.5, axis=0)
    hi = np.percentile(flat, 99.5, axis=0)
    contrast = np.maximum(hi - lo, 1e-3)
    luma = flat @ np.asarray(levels.LUMA_WEIGHTS, np.float32)
    bright = (luma >= np.median(luma)).reshape(sample.shape[:2])
    diff = np.abs(np.diff(sample, axis=1))  # horizontal neighbour differences
    mask = bright[:, 1:] & bright[:, :-1]
    if mask.sum() < 100:
        noise = np.full(3, 1.0, np.float32)
    else:
        noise = np.median(diff[mask], axis=0) + 2.0 / 255  # floor: quantisation of 8-bit scans
    w = contrast / noise**2
    return (w / w.sum()).astype(np.float32)


def to_gray(image: np.ndarray, method: str = "auto") -> np.ndarray:
    """A grayscale page float32 ``[H, W]`` in 0..1 from a gray/RGB/RGBA page (alpha ignored).

    ``method``: one of :data:`GRAY_METHODS`. A grayscale input is returned as a copy whatever the method.
    """
    if method not in GRAY_METHODS:
        raise ValueError(f"method must be one of {GRAY_METHODS}, got {method!r}")
    page = checks.page_array(image, keep_uint8=True)
    if page.shape[2] == 1:
        return np.array(checks.float_pixels(page[:, :, 0]), dtype=np.float32, copy=True)
    rgb = page[:, :, :3]  # uint8 pages are converted row chunk by row chunk, never whole
    out = np.empty(rgb.shape[:2], np.float32)
    if method == "max":
        for y0 in range(0, rgb.shape[0], _ROWS):
            out[y0 : y0 + _ROWS] = checks.float_pixels(np.max(rgb[y0 : y0 + _ROWS], axis=2))
        return out
    if method == "auto":
        w = channel_weights(rgb)
    else:
        w = {
            "luma": levels.LUMA_WEIGHTS,
            "red": (1.0, 0.0, 0.0),
            "green": (0.0, 1.0, 0.0),
            "mean": (1 / 3, 1 / 3, 1 / 3),
        }[method]
    w = np.asarray(w, np.float32)
    for y0 in range(0, rgb.shape[0], _ROWS):
        np.matmul(checks.float_pixels(rgb[y0 : y0 + _ROWS]), w, out=out[y0 : y0 + _ROWS])
    return out


# ---------------------------------------------------------------------------------------------
# 2. background


def _auto_cell(shape: tuple[int, int], cell: int) -> int:
    return int(cell) if cell else max(4, int(round(max(shape) / 440)))


def _block_reduce(img: np.ndarray, size: int, op) -> np.ndarray:
    """``op.reduce`` (np.maximum, np.minimum, np.add) over ``size``x``size`` blocks; the blocks of
    the last row and column may be smaller. Reshapes, no copy of the page."""
    h_full, w_full = img.shape[0] // size, img.shape[1] // size
    h_rem, w_rem = img.shape[0] - h_full * size, img.shape[1] - w_full * size
    out = np.empty((h_full + (h_rem > 0), w_full + (w_rem > 0)), np.float32)
    # strided slices: vectorised over the page, unlike numpy's reduce over a short axis
    body = img[: h_full * size, : w_full * size]
    rows = np.array(body[0::size], dtype=np.float32)
    for i in range(1, size):
        op(rows, body[i::size], out=rows)
    main = out[:h_full, :w_full]
    main[...] = rows[:, 0::size]
    for j in range(1, size):
        op(main, rows[:, j::size], out=main)
    if w_rem:
        right = img[: h_full * size, w_full * size :].reshape(h_full, size, w_rem)
        out[:h_full, w_full] = op.reduce(right, axis=(1, 2))
    if h_rem:
        bottom = img[h_full * size :, : w_full * size].reshape(h_rem, w_full, size)
        out[h_full, :w_full] = op.reduce(bottom, axis=(0, 2))
    if h_rem and w_rem:
        out[h_full, w_full] = op.reduce(img[h_full * size :, w_full * size :], axis=None)
    return out


def _block_mean(img: np.ndarray, size: int) -> np.ndarray:
    sums = _block_reduce(img, size, np.add)
    h = np.minimum(size, img.shape[0] - np.arange(0, img.shape[0], size)).astype(np.float32)
    w = np.minimum(size, img.shape[1] - np.arange(0, img.shape[1], size)).astype(np.float32)
    return sums / (h[:, None] * w[None, :])


def _normalized_blur(values: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    num = ndimage.gaussian_filter(values * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    return num / np.maximum(den, 1e-6), den


def _paper_surface(low: np.ndarray, degree: int = 4, iterations: int = 6) -> np.ndarray | None:
    """A smooth polynomial surface through the paper cells of a cell grid (robust, iterated).

    Start from the cells near the brightest of their neighbourhood (a sixth of the page); fit a 2-D polynomial of ``degree`` by weighted least
    squares; keep the cells within 7 % below the fit (paper), refit. Uneven light and vignetting are
    smooth, so the surface follows them up to the page's edges (where a morphological closing would
    be biased towards the brighter inside). None when less than 2 % of the cells look like paper.
    """
    h, w = low.shape
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float64)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float64)
    step = max(1, int(math.sqrt(h * w / 40_000)))  # fit on at most ~40k cells
    yy, xx = np.meshgrid(ys[::step], xs[::step], indexing="ij")
    vals = low[::step, ::step].astype(np.float64).ravel()
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    design = np.stack([(yy.ravel() ** i) * (xx.ravel() ** j) for i, j in terms], axis=1)
    # start from cells near their neighbourhood's brightest (paper in dark corners included)
    local_max = ndimage.maximum_filter(low, size=max(3, min(h, w) // 6), mode="nearest")[::step, ::step].ravel()
    keep = vals >= 0.92 * local_max
    if keep.mean() < 0.02 or vals.max() <= 1e-4:
        return None
    coef = None
    for _ in range(iterations):
        if keep.sum() < max(len(terms) * 4, 0.02 * vals.size):
            break
        coef, *_ = np.linalg.lstsq(design[keep], vals[keep], rcond=None)
        fit = design @ coef
        keep = vals >= 0.93 * fit
    if coef is None:
        return None
    full_y, full_x = np.meshgrid(ys, xs, indexing="ij")
    surface = sum(c * (full_y**i) * (full_x**j) for c, (i, j) in zip(coef, terms))
    return np.clip(surface, 1e-3, None).astype(np.float32)


def estimate_background_lowres(gray: np.ndarray, cell: int = 0, ink_size: int = 0) -> tuple[np.ndarray, int]:
    """The paper's brightness on a grid of ``cell``-pixel cells: (float32 ``[h, w]``, cell).

    1. Each cell takes the mean of its pixels (paper cells: the paper level, grain averaged out).
    2. A smooth polynomial surface fitted robustly through the paper cells (:func:`_paper_surface`)
       gives the paper level everywhere, also under panels full of screentone or black.
    3. Cells whose mean is close to that level are paper (weight 1 above 96 %, 0 below 90 %); the
       background is their normalised Gaussian interpolation (sigma ``ink_size`` / 8, by default a
       24th of the long side), judged twice (the second time against the first estimate), so it
       follows uneven light, vignetting and stains where paper is seen and bridges screen regions
       and black areas (leaning on the surface where no paper is near), whose tone is kept.
    """
    g = _gray2d(gray)
    cell = _auto_cell(g.shape, cell)
    ink_size = int(ink_size) if ink_size else max(16, int(round(max(g.shape) / 3)))
    low = _block_mean(g, cell)
    k = max(3, 2 * int(math.ceil(ink_size / cell / 2)) + 1)
    envelope = _paper_surface(low)
    if envelope is None:  # hardly any paper (an all-black page): nothing to divide
        return np.ones_like(low), cell
    sigma = max(1.0, k / 8)
    bg = envelope
    for _ in range(2):  # the second pass judges paper against the first, local estimate
        rel = low / np.maximum(bg, 1e-4)
        weight = np.clip((rel - 0.90) / 0.06, 0.0, 1.0).astype(np.float32)
        near, den = _normalized_blur(low, weight, sigma)
        # where little paper is near (inside a big screentone or black panel), lean on the surface
        bg = (den * near + 0.05 * envelope) / (den + 0.05)
    bg = ndimage.gaussian_filter(bg, 1.0, mode="nearest")
    return np.clip(bg, 1e-3, None).astype(np.float32), cell


def _upscale(low: np.ndarray, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Bilinear upscale of a grid whose pixels cover ``cell`` output pixels each, to ``shape``,
    with the grid's pixel centres at their true positions.

    The output may reach past the grid's last cell: a half-resolution output of an odd page whose
    side is a whole number of cells covers one page pixel more than the grid (4961 px = 451 cells
    of 11 px, at half resolution 2481 px of 5.5 = 451.09 cells). The grid's edge is continued
    there, so the box stays inside it whatever the rounding.
    """
    h, w = shape
    gh, gw = low.shape
    bh, bw = h / cell, w / cell  # the output's extent in grid cells
    extra_h, extra_w = max(0, math.ceil(bh) - gh), max(0, math.ceil(bw) - gw)
    if extra_h or extra_w:
        low = np.pad(low, ((0, extra_h), (0, extra_w)), mode="edge")
    img = Image.fromarray(np.ascontiguousarray(low, dtype=np.float32))
    out = img.resize((w, h), resample=Image.Resampling.BILINEAR, box=(0.0, 0.0, bw, bh))
    return np.array(out, dtype=np.float32)  # a writable copy


def estimate_background(gray: np.ndarray, cell: int = 0, ink_size: int = 0) -> np.ndarray:
    """The paper's brightness at full resolution, float32 ``[H, W]`` (smooth, bilinear from the grid)."""
    g = _gray2d(gray)
    low, cell = estimate_background_lowres(g, cell=cell, ink_size=ink_size)
    return _upscale(low, g.shape, cell)


def divide_background(gray: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``gray / background`` clipped to 0..1: paper becomes 1, ink keeps its contrast to the paper."""
    g = _gray2d(gray)
    b = _gray2d(background, "background")
    if b.shape != g.shape:
        raise ValueError(f"background must have the page's size {g.shape}, got {b.shape}")
    out = np.empty(g.shape, np.float32)
    for y0 in range(0, g.shape[0], _ROWS):
        rows = out[y0 : y0 + _ROWS]
        np.divide(g[y0 : y0 + _ROWS], np.maximum(b[y0 : y0 + _ROWS], 1e-3), out=rows)
        np.clip(rows, 0.0, 1.0, out=rows)
    return out


def divide_background_lowres(gray: np.ndarray, low: np.ndarray, cell: int) -> np.ndarray:
    """:func:`divide_background` by a cell grid from :func:`estimate_background_lowres`, without a
    full-resolution background: the grid is interpolated bilinearly to half resolution and each
    value serves a 2x2 block (the background is smooth over many cells: the steps are far below one
    grey level). About twice as fast on 600-dpi pages."""
    g = _gray2d(gray)
    h, w = g.shape
    half = _upscale(np.maximum(low, 1e-3), ((h + 1) // 2, (w + 1) // 2), cell / 2)
    np.reciprocal(half, out=half)
    out = np.empty(g.shape, np.float32)
    step = _ROWS  # even
    for y0 in range(0, h, step):
        rows = out[y0 : y0 + step]
        inv = half[y0 // 2 : (y0 + step + 1) // 2]
        inv = np.repeat(np.repeat(inv, 2, axis=0)[: rows.shape[0]], 2, axis=1)[:, :w]
        np.multiply(g[y0 : y0 + step], inv, out=rows)
        np.clip(rows, 0.0, 1.0, out=rows)
    return out


# ---------------------------------------------------------------------------------------------
# 3. sharpening (scanner blur)


def estimate_blur(gray: np.ndarray) -> float:
    """The Gaussian sigma (px) of the page's sharpest edges, from the centre of the page (half its
    size, at most 1536 px square).

    A step of height ``h`` blurred by ``sigma`` has a largest gradient of ``h / (sqrt(2 pi) sigma)``:
    ``h`` is the 1st..99th percentile range, the gradient the 99.9th percentile of the central
    differences; the pixel's own width (1/12 px^2) is taken out. Crisp anti-aliased artwork measures
    about 0.45 px, a hard axis-aligned step 0.74 px (central differences spread it over two pixels);
    above 1 px the measure follows the true blur.
    """
    g = _gray2d(gray)
    h, w = g.shape
    ch, cw = min(max(3, h // 2), 1536), min(max(3, w // 2), 1536)  # at most 1536 px square: fast on 600 dpi
    c = g[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    if c.shape[0] < 3 or c.shape[1] < 3:
        return 0.0
    gx = (c[1:-1, 2:] - c[1:-1, :-2]) * np.float32(0.5)  # central differences
    gy = (c[2:, 1:-1] - c[:-2, 1:-1]) * np.float32(0.5)
    grad = np.hypot(gx, gy)
    lo, hi = np.percentile(_subsample(c, 250_000), [1, 99])
    peak = float(np.percentile(grad, 99.9))
    if peak <= 1e-6 or hi - lo <= 1e-3:
        return 0.0
    sigma_eff = (hi - lo) / (math.sqrt(2 * math.pi) * peak)
    return float(math.sqrt(max(sigma_eff**2 - 1 / 12, 0.0)))


def blur_amount(gray: np.ndarray, amount: float, radius: float) -> float:
    """The unsharp amount for a page: ``amount`` on a blurry scan, less on a sharp one.

    The blur beyond what crisp artwork measures (0.45 px at the ``radius`` scale, i.e. in pixels
    of a 300-dpi scan when radius = dpi / 300) sets the share: none below 0.2, all from 0.7 up
    (tuned on aged generated pages: blur 0.3..1.2 px at 300 dpi).
    """
    scale = max(float(radius), 1e-3)
    sigma = estimate_blur(gray) / scale
    extra = math.sqrt(max(sigma**2 - 0.45**2, 0.0))
    return float(amount) * min(1.0, max(0.0, (extra - 0.2) / 0.5))


def sharpen(gray: np.ndarray, amount: float = 2.0, radius: float = 0.0) -> np.ndarray:
    """Unsharp mask ``g + amount * (g - blur(g))`` clipped to 0..1, undoing a scanner's blur so that
    the levels see screentone dots as dots again (blurred dots would lose their light tones).

    ``radius`` is the Gaussian sigma in px (0 = long side / 2480: 1 px on a 300-dpi A5 page, 2.8 px
    on a 600-dpi A4 page). Sigmas above 1.5 px blur a block-averaged copy (sigma <= 1.5 px there) and interpolate it back,
    which keeps a 600-dpi page fast.
    """
    g = _gray2d(gray)
    if amount == 0:
        return np.array(g, dtype=np.float32, copy=True)
    radius = float(radius) if radius else max(0.5, max(g.shape) / 2480)
    factor = max(1, int(math.ceil(radius / 1.5)))
    if factor > 1:
        small = ndimage.gaussian_filter(_block_mean(g, factor), radius / factor, mode="nearest")
        blurred = _upscale(small, g.shape, factor)
    else:
        blurred = ndimage.gaussian_filter(g, radius, mode="nearest")
    out = blurred  # reuse the buffer: out = g + amount * (g - blurred)
    for y0 in range(0, g.shape[0], _ROWS):
        rows = out[y0 : y0 + _ROWS]
        np.subtract(g[y0 : y0 + _ROWS], rows, out=rows)
        rows *= np.float32(amount)
        rows += g[y0 : y0 + _ROWS]
        np.clip(rows, 0.0, 1.0, out=rows)
    return out


# ---------------------------------------------------------------------------------------------
# 4. levels


def apply_levels(gray: np.ndarray, mode: str = "thesis", black_point: float = 90.0,
                 white_point: float = 190.0) -> np.ndarray:
    """Tone levels (values on the 0..255 scale).

    ``"thesis"``: the MDIM thesis recipe, auto-contrast (darkest -> 0, brightest -> 1) then
    ``black_point..white_point`` -> 0..1 (:func:`levels.prepare_ground_truth`); ``"points"``:
    ``black_point..white_point`` -> 0..1 directly (:func:`levels.level_map`); ``"off"``: a copy.
    """
    g = _gray2d(gray)
    if mode == "thesis":
        lo, hi = float(g.min()), float(g.max())
        if hi - lo <= levels.FLAT_SPAN:  # a flat page (a blank sheet): nothing to stretch
            return levels.prepare_ground_truth(g, lo=black_point, hi=white_point)
        # auto-contrast followed by the level map is one affine map with clipping: apply it in one
        # pass (equal to levels.prepare_ground_truth up to float rounding, tested)
        span = hi - lo
        return levels.level_map(g, lo=255.0 * lo + span * black_point, hi=255.0 * lo + span * white_point)
    if mode == "points":
        return levels.level_map(g, lo=black_point, hi=white_point)
    if mode == "off":
        return np.array(g, dtype=np.float32, copy=True)
    raise ValueError(f"levels mode must be one of {LEVELS_MODES}, got {mode!r}")


# ---------------------------------------------------------------------------------------------
# 5. deskew


def _ink_points(gray: np.ndarray, target_side: int = 1200) -> tuple[np.ndarray, np.ndarray, float]:
    """Coordinates of ink pixels on a reduced page: (y, x, scale factor)."""
    factor = max(1, int(math.ceil(max(gray.shape) / target_side)))
    small = _block_mean(gray, factor) if factor > 1 else gray
    thr = min(0.5, float(np.percentile(small, 50)) * 0.6)
    ys, xs = np.nonzero(small < thr)
    return ys.astype(np.float32), xs.astype(np.float32), float(factor)


def _profile_sharpness(ys: np.ndarray, xs: np.ndarray, angle_deg: float) -> float:
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    score = 0.0
    for coord in (ys * c - xs * s, xs * c + ys * s):  # rows and columns of the turned page
        idx = np.floor(coord - coord.min()).astype(np.int64)
        hist = np.bincount(idx).astype(np.float64)
        score += float(np.sum(hist**2))
    return score


def estimate_skew(gray: np.ndarray, max_angle: float = 3.0) -> float:
    """The turn in degrees that straightens the page (counter-clockwise positive, as PIL's
    ``rotate`` and :func:`rotate_page`): a page scanned turned by +1.5 degrees gives -1.5.

    Ink pixels of a reduced page are projected onto rows and columns for each candidate angle; the
    angle whose profiles are sharpest (largest sum of squared bin counts: panel borders and text
    lines line up) wins. Coarse search in 0.25 degree steps, then 0.02 degree steps around the best.
    Returns 0.0 when the page has too little ink to tell.
    """
    g = _gray2d(gray)
    ys, xs, _ = _ink_points(g)
    if ys.size < 200:
        return 0.0
    if ys.size > 400_000:  # plenty: a fixed subsample keeps the search fast
        keep = np.random.default_rng(0).choice(ys.size, 400_000, replace=False)
        ys, xs = ys[keep], xs[keep]

    def best(angles):
        scores = [_profile_sharpness(ys, xs, a) for a in angles]
        return float(angles[int(np.argmax(scores))])

    coarse = best(np.arange(-max_angle, max_angle + 1e-9, 0.25))
    fine = best(np.arange(coarse - 0.25, coarse + 0.25 + 1e-9, 0.02))
    # the sharpest profiles come at the turn that straightens the page (image rows point down,
    # so this is already PIL's counter-clockwise angle)
    return round(fine, 3)


def rotate_page(gray: np.ndarray, angle: float, fill: float = 1.0) -> np.ndarray:
    """Rotate a grayscale page by ``angle`` degrees counter-clockwise about its centre (bicubic,
    same size, corners filled with ``fill``). Returns float32 ``[H, W]`` in 0..1."""
    g = _gray2d(gray)
    if angle == 0:
        return np.array(g, dtype=np.float32, copy=True)
    img = Image.fromarray(np.ascontiguousarray(g, dtype=np.float32))
    out = img.rotate(float(angle), resample=Image.Resampling.BICUBIC, fillcolor=float(fill))
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def deskew(gray: np.ndarray, max_angle: float = 3.0) -> tuple[np.ndarray, float]:
    """Straighten a page: (rotated float32 ``[H, W]``, the correction angle applied in degrees)."""
    g = _gray2d(gray)
    angle = estimate_skew(g, max_angle)
    if abs(angle) < 0.02:
        return np.array(g, dtype=np.float32, copy=True), 0.0
    return rotate_page(g, angle), angle


# ---------------------------------------------------------------------------------------------
# 6. bleed-through, 7. specks


def suppress_bleed_through(gray: np.ndarray, strength: float = 0.5, radius: int = 0) -> np.ndarray:
    """Whiten faint marks (bleed-through from the back page, stain rims) that have no real ink near them.

    Where the darkest pixel within about ``radius`` px (blocks of ``radius`` px and their 8
    neighbours) is lighter than ``t = 1 - 0.45 * strength``, the neighbourhood holds no real ink, only
    faint marks: it fades to paper, fully once that darkest value is above ``t + 0.1 * strength`` (a
    knee, not a hard threshold; the fade is interpolated smoothly between blocks). Near real ink
    (lines, screentone dots and their anti-aliased edges) nothing changes.
    """
    g = _gray2d(gray)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in 0..1, got {strength}")
    if strength == 0:
        return np.array(g, dtype=np.float32, copy=True)
    radius = int(radius) if radius else max(2, int(round(max(g.shape) / 1000)))
    t = np.float32(1.0 - 0.45 * strength)
    knee = np.float32(0.1 * strength)
    darkest = ndimage.minimum_filter(_block_reduce(g, radius, np.minimum), size=3, mode="nearest")
    # 0 where real ink is near, 1 where the neighbourhood's darkest value is faint (above t + knee)
    fade_low = np.clip((darkest - t) / knee, 0.0, 1.0)
    # a block next to ink has fade 0, so interpolation never reaches a pixel within radius of ink
    fade = _upscale(fade_low, g.shape, radius)
    out = np.empty(g.shape, np.float32)
    for y0 in range(0, g.shape[0], _ROWS):
        rows = out[y0 : y0 + _ROWS]
        np.subtract(1.0, g[y0 : y0 + _ROWS], out=rows)
        rows *= fade[y0 : y0 + _ROWS]
        rows += g[y0 : y0 + _ROWS]
    return out


def despeckle(gray: np.ndarray, max_area: int = 16, radius: int = 0, threshold: float = 0.5) -> np.ndarray:
    """Remove isolated dark specks (dust, dirt) of at most ``max_area`` px.

    The page is divided into blocks of ``radius`` px (default: long side / 350, and always more than
    ``max_area``). A block whose 3x3 block neighbourhood holds at most ``max_area`` dark pixels
    (``< threshold``) in total has nothing there but a speck; a dark 8-connected component lying only
    in such blocks is painted with paper (1.0), with its one-pixel anti-aliased fringe. Screentone
    dots are never alone in a neighbourhood (dozens of dots per block neighbourhood), lines and text
    are bigger than ``max_area``: they stay. Returns a new array.
    """
    g = _gray2d(gray)
    out = np.array(g, dtype=np.float32, copy=True)
    if max_area <= 0:
        return out
    radius = max(int(radius) if radius else int(round(max(g.shape) / 350)), int(max_area) + 1, 4)
    dark = g < np.float32(threshold)
    counts = _block_reduce(dark.astype(np.float32), radius, np.add)
    around = ndimage.uniform_filter(counts, size=3, mode="constant") * 9.0
    quiet = (counts > 0) & (around <= max_area + 0.5)
    if not quiet.any():
        return out
    h, w = g.shape
    # blocks worth labelling: the quiet ones and their neighbours (a speck may reach into those)
    near = ndimage.binary_dilation(quiet, structure=np.ones((3, 3), bool))
    quiet_px = np.repeat(np.repeat(quiet, radius, axis=0), radius, axis=1)[:h, :w]
    near_px = np.repeat(np.repeat(near, radius, axis=0), radius, axis=1)[:h, :w]
    candidates = dark & near_px
    labels, n = ndimage.label(candidates, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels[candidates], minlength=n + 1)
    outside = np.bincount(labels[candidates & ~quiet_px], minlength=n + 1)
    speck = (sizes <= max_area) & (outside == 0)
    speck[0] = False
    if not speck.any():
        return out
    mask = ndimage.binary_dilation(speck[labels], structure=np.ones((3, 3), bool))
    out[mask] = 1.0
    return out


# ---------------------------------------------------------------------------------------------
# the whole cleanup


def memory_bytes(size: tuple[int, int], settings: CleanupSettings) -> int:
    """Memory :func:`clean_page` needs beyond its input for a page of ``size`` (H, W): a few float32
    pages at once (measured peaks: 10.3 bytes/px with the defaults, 17.3 with deskew, bleed-through
    and despeckle on a 600-dpi A4 page), with some margin."""
    extra = settings.deskew or settings.despeckle > 0 or settings.bleed_through > 0
    return size[0] * size[1] * (20 if extra else 12)


def clean_page(image: np.ndarray, settings: CleanupSettings | None = None, *, name: str = "image",
               **options) -> np.ndarray:
    """Clean one page: float32 ``[H, W]`` in 0..1 from a gray/RGB/RGBA page (see the module docstring).

    Give a :class:`CleanupSettings` or its fields as keyword arguments. ``name`` is the input's
    name used in error messages (a node input or a file name). A page too large for the memory
    free now raises ``MemoryError`` (with its size and the limit) before any work.
    """
    if settings is None:
        settings = CleanupSettings(**options)
    elif options:
        raise TypeError("clean_page: give either settings or keyword options, not both")
    page = checks.page_array(image, name, keep_uint8=True, finite=True)
    h, w = page.shape[:2]
    checks.require_memory(memory_bytes((h, w), settings), f"cleanup of {name} ({w}x{h} px)")
    gray = to_gray(page, settings.gray)
    if settings.background:
        low, cell = estimate_background_lowres(gray, cell=settings.cell, ink_size=settings.ink_size)
        gray = divide_background_lowres(gray, low, cell)
    if settings.sharpen > 0:
        radius = settings.sharpen_radius or (settings.dpi / 300.0 if settings.dpi else 0.0)
        radius = radius or max(0.5, max(gray.shape) / 2480)
        amount = blur_amount(gray, settings.sharpen, radius) if settings.adaptive_sharpen else settings.sharpen
        if amount > 0:
            gray = sharpen(gray, amount, radius)
    if settings.deskew:
        gray, angle = deskew(gray, settings.max_skew)
        if angle:
            log.info("[MDIM] deskew: turned the page by %.2f degrees", angle)
    out = apply_levels(gray, settings.levels, settings.black_point, settings.white_point)
    if settings.bleed_through > 0:
        out = suppress_bleed_through(out, settings.bleed_through)
    if settings.despeckle > 0:
        out = despeckle(out, settings.despeckle)
    return out
