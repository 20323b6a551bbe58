"""Aging simulator: turns a clean manga page into a plausible old scan.

Used to train and measure restoration (the Symmetric VAE learns to undo it, as in the MDIM thesis).
Effects, each a field of :class:`AgingParams` with a random range in :func:`sample_params`:

* yellow/sepia paper tint and faded (brownish, not pure black) ink,
* faint bleed-through of another page (mirrored, blurred, offset),
* slight scanner blur,
* low-frequency uneven light and vignetting,
* stains (irregular blobs with a darker rim, like dried water or coffee),
* paper grain (fine correlated noise),
* optional small rotation,
* JPEG artifacts (PIL encoder).

Input: a clean page, float32 ``[H, W]`` grayscale in 0..1 (0 = ink, 1 = paper), or ``[H, W, 3]``
(converted to grayscale), or ``uint8``. Output: an aged RGB page, float32 ``[H, W, 3]`` in 0..1
(or ``uint8`` with ``as_uint8=True``), same size. Everything is deterministic for a given seed and
rendered in horizontal strips, so a 600-dpi A4 page (4961x7016) needs little more memory than
its output. The result does not depend on the strip size.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..restore.levels import _gray_view

__all__ = ["AgingParams", "sample_params", "age_page", "age_page_with_params", "rotate_like"]

_STRIP = 512  # rows rendered at once
_GRAIN_BLOCK = 256  # rows per independently seeded grain block (fixed: results never depend on _STRIP)


@dataclass(frozen=True)
class AgingParams:
    """Strength of every aging effect. Lengths are in pixels at 300 dpi and scale with ``dpi``."""

    paper_rgb: tuple[float, float, float] = (0.94, 0.88, 0.72)  # paper colour where the page is white
    tint: float = 0.6  # 0 = white paper, 1 = full ``paper_rgb``
    ink_rgb: tuple[float, float, float] = (0.13, 0.11, 0.10)  # faded ink colour where the page is black
    bleed: float = 0.08  # opacity of the mirrored back page showing through
    bleed_blur: float = 2.0  # blur of the back page (px at 300 dpi)
    blur: float = 0.6  # gaussian sigma of the scanner blur (px at 300 dpi); 0 = off
    light: float = 0.12  # amplitude of low-frequency uneven light (fraction of brightness)
    vignette: float = 0.15  # darkening at the corners (fraction of brightness)
    stains: int = 2  # number of stains
    stain_strength: float = 0.25  # darkening inside a stain (its rim is darker)
    grain: float = 0.025  # standard deviation of paper grain
    rotation: float = 0.0  # degrees, counter-clockwise; the border is filled with paper colour
    jpeg_quality: int = 70  # 1..95; 0 or None = no JPEG round trip

    def __post_init__(self):
        for name in ("tint", "bleed", "light", "vignette", "stain_strength"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {v}")
        for name in ("bleed_blur", "blur", "grain"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("paper_rgb", "ink_rgb"):
            v = getattr(self, name)
            if len(v) != 3 or not all(0.0 <= c <= 1.0 for c in v):
                raise ValueError(f"{name} must be three values in 0..1, got {v}")
        if self.stains < 0:
            raise ValueError(f"stains must be >= 0, got {self.stains}")
        if self.jpeg_quality and not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95 (or 0 for none), got {self.jpeg_quality}")
        if abs(self.rotation) > 45:
            raise ValueError(f"rotation must be a small angle in degrees (|rotation| <= 45), got {self.rotation}")


def sample_params(seed: int | np.random.Generator, **overrides) -> AgingParams:
    """Random aging strengths from sensible ranges; ``overrides`` fix chosen fields.

    ``rotation`` may be a number of degrees, ``True`` (random small rotation) or ``False`` (none).

    Ranges: tint 0.3..1, paper hue from pale cream to brown sepia, ink 0.05..0.25 grey with a brown
    cast, bleed 0..0.15, blur 0.3..1.2 px, light 0..0.2, vignette 0..0.25, 0..4 stains of 0.1..0.4,
    grain 0.005..0.04, JPEG quality 40..95 (a quarter of the pages without JPEG), rotation
    within +-1 degree only when ``rotation=True`` (a rotated scan no longer aligns with its target).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rotation = overrides.pop("rotation", False)
    yellow = rng.uniform(0.0, 1.0)  # 0 = cream, 1 = brown
    paper = (
        rng.uniform(0.93, 0.99) - 0.05 * yellow,
        rng.uniform(0.86, 0.95) - 0.08 * yellow,
        rng.uniform(0.62, 0.85) - 0.12 * yellow,
    )
    ink_level = rng.uniform(0.05, 0.25)
    ink = (ink_level + 0.03, ink_level + 0.015, ink_level)
    values = dict(
        paper_rgb=tuple(float(np.clip(c, 0, 1)) for c in paper),
        tint=float(rng.uniform(0.3, 1.0)),
        ink_rgb=tuple(float(np.clip(c, 0, 1)) for c in ink),
        bleed=float(rng.uniform(0.0, 0.15)),
        bleed_blur=float(rng.uniform(1.0, 3.0)),
        blur=float(rng.uniform(0.3, 1.2)),
        light=float(rng.uniform(0.0, 0.2)),
        vignette=float(rng.uniform(0.0, 0.25)),
        stains=int(rng.integers(0, 5)),
        stain_strength=float(rng.uniform(0.1, 0.4)),
        grain=float(rng.uniform(0.005, 0.04)),
        rotation=float(rng.uniform(-1.0, 1.0)),
        jpeg_quality=int(rng.integers(40, 96)) if rng.uniform() > 0.25 else 0,
    )
    unknown = set(overrides) - {f.name for f in dataclasses.fields(AgingParams)}
    if unknown:
        raise ValueError(f"unknown aging parameter(s) {sorted(unknown)}; known: "
                         f"{[f.name for f in dataclasses.fields(AgingParams)]}")
    values.update(overrides)
    if isinstance(rotation, bool):
        values["rotation"] = values["rotation"] if rotation else 0.0
    else:
        values["rotation"] = float(rotation)
    return AgingParams(**values)


def age_page(
    page: np.ndarray,
    seed: int,
    dpi: float = 300.0,
    back_page: np.ndarray | None = None,
    as_uint8: bool = False,
    **params,
) -> np.ndarray:
    """Age a clean page: random strengths drawn from ``seed`` (see :func:`sample_params`).

    ``params`` fix individual :class:`AgingParams` fields (e.g. ``jpeg_quality=0``) or pass
    ``rotation=True`` to allow a random small rotation. Returns RGB ``[H, W, 3]`` float32 in 0..1
    (``uint8`` when ``as_uint8``).
    """
    aged, _ = age_page_with_params(page, seed, dpi=dpi, back_page=back_page, as_uint8=as_uint8, **params)
    return aged


def age_page_with_params(
    page: np.ndarray,
    seed: int,
    dpi: float = 300.0,
    back_page: np.ndarray | None = None,
    as_uint8: bool = False,
    params: AgingParams | None = None,
    **overrides,
) -> tuple[np.ndarray, AgingParams]:
    """Like :func:`age_page` and also returns the :class:`AgingParams` used.

    Give ``params`` to use exact strengths (then ``seed`` only drives the random textures).
    ``back_page`` is the page printed on the other side (same size); by default the page itself,
    mirrored and offset, shows through.
    """
    gray = _gray_view(page, "page")
    if not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (isinstance(dpi, (int, float)) and 25 <= dpi <= 2400):
        raise ValueError(f"dpi must be a number in 25..2400, got {dpi}")
    ss = np.random.SeedSequence(int(seed) & 0xFFFFFFFFFFFFFFFF)
    param_seq, texture_seq = ss.spawn(2)
    if params is None:
        params = sample_params(np.random.default_rng(param_seq), **overrides)
    elif overrides:
        params = dataclasses.replace(params, **overrides)
    if back_page is None:
        back = gray[:, ::-1]
    else:
        back = _gray_view(back_page, "back_page")
        if back.shape != gray.shape:
            raise ValueError(f"back_page must have the page's size {gray.shape}, got {back.shape}")
        back = back[:, ::-1]
    rgb = _render(gray, back, params, dpi, texture_seq)
    if params.rotation:
        fill = tuple(int(round(255 * c)) for c in _paper_colour(params))
        img = Image.fromarray(rgb).rotate(params.rotation, resample=Image.Resampling.BICUBIC, fillcolor=fill)
        rgb = np.asarray(img)
    if params.jpeg_quality:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=int(params.jpeg_quality))
        buf.seek(0)
        rgb = np.asarray(Image.open(buf).convert("RGB"))
    if as_uint8:
        return np.ascontiguousarray(rgb), params
    out = np.empty(rgb.shape, np.float32)
    for y0 in range(0, rgb.shape[0], _STRIP):
        np.multiply(rgb[y0 : y0 + _STRIP], np.float32(1 / 255), out=out[y0 : y0 + _STRIP], casting="unsafe")
    return out, params


def rotate_like(clean: np.ndarray, params: AgingParams) -> np.ndarray:
    """Rotate a clean grayscale page exactly as the aging rotated its scan (white border)."""
    gray = _gray_view(clean, "clean")
    if not params.rotation:
        return gray.copy()
    img = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32)).rotate(params.rotation, resample=Image.Resampling.BICUBIC, fillcolor=1.0)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# rendering


def _paper_colour(p: AgingParams) -> np.ndarray:
    return 1.0 - p.tint * (1.0 - np.asarray(p.paper_rgb, np.float32))


def _smooth_weights(n_out: int, n_grid: int, start: int, stop: int) -> np.ndarray:
    """Cubic (Catmull-Rom) interpolation weights [stop-start, n_grid] of a coarse grid across n_out px."""
    pos = (np.arange(start, stop, dtype=np.float64) + 0.5) / n_out * (n_grid - 1)
    i0 = np.floor(pos).astype(np.int64)
    t = pos - i0
    w = np.zeros((stop - start, n_grid), np.float64)
    # Catmull-Rom basis on points i0-1 .. i0+2, clamped at the edges.
    basis = (
        ((-t + 2) * t - 1) * t / 2,
        (((3 * t - 5) * t) * t + 2) / 2,
        ((-3 * t + 4) * t + 1) * t / 2,
        ((t - 1) * t * t) / 2,
    )
    rows = np.arange(stop - start)
    for k, b in enumerate(basis):
        idx = np.clip(i0 - 1 + k, 0, n_grid - 1)
        np.add.at(w, (rows, idx), b)
    return w.astype(np.float32)


def _grain_rows(texture_seq: np.random.SeedSequence, y0: int, y1: int, width: int,
                cache: dict | None = None) -> np.ndarray:
    """White noise rows y0..y1 (clipped to >= 0), each fixed block seeded independently.

    ``cache`` keeps generated blocks between consecutive strips (blocks above the strip are dropped).
    """
    out = np.empty((y1 - y0, width), np.float32)
    b0, b1 = y0 // _GRAIN_BLOCK, (y1 - 1) // _GRAIN_BLOCK
    if cache is not None:
        for old in [k for k in cache if k < b0]:
            del cache[old]
    for b in range(b0, b1 + 1):
        block = cache.get(b) if cache is not None else None
        if block is None:
            rng = np.random.default_rng([*texture_seq.generate_state(4).tolist(), 7, b])
            block = rng.standard_normal((_GRAIN_BLOCK, width), dtype=np.float32)
            if cache is not None:
                cache[b] = block
        lo = max(y0, b * _GRAIN_BLOCK)
        hi = min(y1, (b + 1) * _GRAIN_BLOCK)
        out[lo - y0 : hi - y0] = block[lo - b * _GRAIN_BLOCK : hi - b * _GRAIN_BLOCK]
    return out


def _render(gray: np.ndarray, back: np.ndarray, p: AgingParams, dpi: float, seq) -> np.ndarray:
    h, w = gray.shape
    scale = dpi / 300.0
    rng = np.random.default_rng(seq)
    # Low-frequency light: a coarse random grid smoothly interpolated; vignette from the distance to
    # the centre. Both computed per strip from small matrices.
    gh, gw = 5, 4
    light_grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32) * p.light
    wx = _smooth_weights(w, gw, 0, w)  # [W, gw]
    light_cols = light_grid @ wx.T  # [gh, W]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5) * 2.0
    # Bleed-through offset (the back page never aligns exactly).
    off_y = int(rng.integers(-20, 21) * scale)
    off_x = int(rng.integers(-20, 21) * scale)
    # Stains: centre, radii, rotation, contour wobble harmonics, strength.
    stains = []
    for _ in range(p.stains):
        r = rng.uniform(0.03, 0.15) * min(h, w)
        stains.append(
            dict(
                cy=rng.uniform(0, h), cx=rng.uniform(0, w), ry=r * rng.uniform(0.6, 1.4), rx=r * rng.uniform(0.6, 1.4),
                ang=rng.uniform(0, math.pi), amps=rng.uniform(0.0, 0.12, size=4), phases=rng.uniform(0, 2 * math.pi, size=4),
                strength=p.stain_strength * rng.uniform(0.5, 1.0),
                colour=np.array([0.15, 0.35, 0.8], np.float32) * rng.uniform(0.7, 1.3),
            )
        )
    paper = _paper_colour(p)
    ink = np.asarray(p.ink_rgb, np.float32)
    blur = p.blur * scale
    bleed_blur = p.bleed_blur * scale
    grain_sigma = 0.7 * scale
    halo = int(math.ceil(4 * max(blur, bleed_blur, grain_sigma, 0.5))) + 1
    out = np.empty((h, w, 3), np.uint8)
    grain_cache: dict = {}
    for y0 in range(0, h, _STRIP):
        y1 = min(h, y0 + _STRIP)
        a0, a1 = max(0, y0 - halo), min(h, y1 + halo)
        g = np.array(gray[a0:a1], dtype=np.float32)
        if p.bleed > 0:
            b = _shifted_rows(back, a0, a1, off_y, off_x)
            if bleed_blur > 0:
                b = ndimage.gaussian_filter(b, bleed_blur, mode="nearest")
            g *= 1.0 - p.bleed * (1.0 - b)
        if blur > 0:
            g = ndimage.gaussian_filter(g, blur, mode="nearest")
        g = g[y0 - a0 : y1 - a0]
        # Colourise: ink where 0, paper where 1.
        rgb = ink + g[..., None] * (paper - ink)
        # Illumination.
        wy = _smooth_weights(h, gh, y0, y1)  # [rows, gh]
        illum = 1.0 + wy @ light_cols  # [rows, W]
        if p.vignette > 0:
            ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / h - 0.5) * 2.0
            r2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / 2.0
            illum -= p.vignette * r2 * r2
        rgb *= illum[..., None]
        for s in stains:
            _apply_stain(rgb, s, y0, y1)
        if p.grain > 0:
            n = _grain_rows(seq, max(0, y0 - halo), y1 + halo, w, grain_cache)
            n = ndimage.gaussian_filter(n, grain_sigma, mode="nearest")
            n = n[y0 - max(0, y0 - halo) : y0 - max(0, y0 - halo) + (y1 - y0)]
            # Blurring white noise lowers its std: renormalise to the requested strength.
            n *= p.grain / _blurred_noise_std(grain_sigma)
            rgb += n[..., None]
        np.clip(rgb, 0.0, 1.0, out=rgb)
        rgb *= 255.0
        rgb += 0.5
        np.copyto(out[y0:y1], rgb, casting="unsafe")  # truncation of x + 0.5: rounding
    return out


def _blurred_noise_std(sigma: float) -> float:
    if sigma <= 0:
        return 1.0
    # Std of unit white noise after a discrete gaussian filter = l2 norm of the 2-D kernel.
    radius = int(4 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return float(np.sum(k**2))  # (sum k^2)^(1/2) per axis, squared over two axes


def _shifted_rows(arr: np.ndarray, a0: int, a1: int, dy: int, dx: int) -> np.ndarray:
    """Rows a0..a1 of ``arr`` shifted by (dy, dx) with white (1.0) where nothing comes in."""
    h, w = arr.shape
    out = np.ones((a1 - a0, w), np.float32)
    s0, s1 = max(0, a0 - dy), min(h, a1 - dy)
    if s1 <= s0 or abs(dx) >= w:
        return out
    src = arr[s0:s1]
    d0 = s0 + dy - a0
    if dx >= 0:
        out[d0 : d0 + (s1 - s0), dx:] = src[:, : w - dx]
    else:
        out[d0 : d0 + (s1 - s0), : w + dx] = src[:, -dx:]
    return out


def _apply_stain(rgb: np.ndarray, s: dict, y0: int, y1: int) -> None:
    """Darken ``rgb`` rows y0..y1 in place with one stain (soft blob, darker rim)."""
    h_rows, w = rgb.shape[:2]
    reach = 1.5 * max(s["ry"], s["rx"])
    r0, r1 = max(y0, int(s["cy"] - reach)), min(y1, int(s["cy"] + reach) + 1)
    c0, c1 = max(0, int(s["cx"] - reach)), min(w, int(s["cx"] + reach) + 1)
    if r1 <= r0 or c1 <= c0:
        return
    yy = (np.arange(r0, r1, dtype=np.float32) + 0.5 - s["cy"])[:, None]
    xx = (np.arange(c0, c1, dtype=np.float32) + 0.5 - s["cx"])[None, :]
    ca, sa = math.cos(s["ang"]), math.sin(s["ang"])
    u = (xx * ca + yy * sa) / s["rx"]
    v = (-xx * sa + yy * ca) / s["ry"]
    rad = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    wobble = np.ones_like(rad)
    for k in range(4):
        wobble += s["amps"][k] * np.cos((k + 2) * theta + s["phases"][k])
    d = rad / wobble  # < 1 inside
    inside = np.clip((1.0 - d) / 0.08, 0.0, 1.0)  # soft edge
    rim = np.exp(-(((d - 0.97) / 0.05) ** 2))
    alpha = s["strength"] * (0.45 * inside + 0.55 * rim)
    absorb = 1.0 - alpha[..., None] * s["colour"]
    rgb[r0 - y0 : r1 - y0, c0:c1] *= absorb
