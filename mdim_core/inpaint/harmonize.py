"""Paste & harmonise: put a foreground (typeset translated SFX, a patch) on a page, then redraw it in
the page's style with a low-strength masked diffusion pass (PHDiffusion-style painterly harmonisation).

1. :func:`paste`: the foreground (an image with alpha, or an image and a coverage mask) is scaled
   with antialiased resampling (premultiplied alpha: no dark or light fringes) and alpha-composited
   onto the page with its top-left corner at ``(x, y)``; parts beyond the page are cut off.
2. :func:`pass_mask`: the pasted area (every pixel the foreground covers at all) grown by a ring of
   ``ring`` pixels, so the pass can also blend the edge into the page around it.
3. :func:`harmonize`: the SGIM engine's refine-only pass (``structure_pass=False``) over that mask,
   at ``strength`` (~0.3: the layout stays, strokes pick up the page's ink, line weight and
   screentone), on crops around the pasted area at full resolution, decoded by the host (with the
   Symmetric VAE when the host has one). The result blends into the page over ``feather`` pixels
   inside the ring (half the ring by default).

Pixels outside the ring come back bit for bit. Images are float ``[B, H, W, C]`` in 0..1 (C = 1, 3
or 4), masks ``[B, H, W]``; nothing is edited in place.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass

import torch

from ..imaging import checks, geometry, masks
from .config import SGIMConfig
from .sgim import inpaint

log = logging.getLogger("MDIM")

Box = tuple[int, int, int, int]


@dataclass
class Pasted:
    """The page with the foreground pasted on it.

    ``image``: ``[B, H, W, C]`` like the page (RGBA -> RGB); ``coverage``: float ``[B, H, W]``, the
    foreground's alpha on the page (0 where the page is untouched); ``box``: the page area the scaled
    foreground covers, ``(y0, x0, y1, x1)`` clipped to the page; ``size``: ``(h, w)`` of the scaled
    foreground before clipping.
    """

    image: torch.Tensor
    coverage: torch.Tensor
    box: Box
    size: tuple[int, int]


@dataclass
class HarmonizeResult:
    """``image``: the harmonised page; ``mask``: float ``[B, H, W]`` 0/1, the area the pass repainted
    (pasted area + ring); ``pasted``: the :class:`Pasted` page before the pass; ``passes``: model passes run."""

    image: torch.Tensor
    mask: torch.Tensor
    pasted: Pasted
    passes: int


def _number(value, name: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if integer:
        ok = ok and float(value) == int(value)
    if ok and lo is not None:
        ok = float(value) >= lo
    if ok and hi is not None:
        ok = float(value) <= hi
    if not ok:
        rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise ValueError(f"{name}: expected {'an integer' if integer else 'a number'}{rng}, got {value!r}")
    return int(value) if integer else float(value)


def _alpha(foreground: torch.Tensor, alpha, name: str) -> torch.Tensor:
    """The foreground's coverage ``[Bf, h, w]`` in 0..1: ``alpha`` if given, else its 4th channel, else opaque."""
    bf, h, w, c = foreground.shape
    if alpha is not None:
        if c == 4:
            log.info("[MDIM] %s: a mask was given, the foreground's own alpha channel is not used", name)
        return masks.normalize_mask(alpha, batch=bf, size=(h, w), name=f"{name}_mask").float()
    if c == 4:
        a = foreground[..., 3].float()
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"{name}: alpha values must lie in 0..1, got {lo:g}..{hi:g}")
        return a.clamp(0.0, 1.0)
    log.info("[MDIM] %s: no alpha channel and no mask: pasted as an opaque rectangle", name)
    return torch.ones(bf, h, w)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(h, w)`` of a foreground of ``size`` at ``scale`` (rounded, at least 1 px)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def paste(page, foreground, *, x: int, y: int, scale: float = 1.0, alpha=None) -> Pasted:
    """Alpha-composite ``foreground`` onto ``page`` with its top-left corner at ``(x, y)``, scaled by ``scale``.

    ``page``: ``[B, H, W, C]``; ``foreground``: ``[Bf, h, w, C']`` with Bf = 1 or B (C' = 4 carries
    alpha); ``alpha``: optional coverage ``[h, w]`` / ``[Bf, h, w]`` (1 = foreground), which wins over an
    alpha channel; without either the foreground is opaque. Colour is resampled premultiplied by alpha
    (area averaging when shrinking, bicubic when enlarging: antialiased, never nearest-neighbour). A
    colour foreground on a one-channel page is converted to grey (channel mean). ``x``, ``y`` may be
    negative or reach beyond the page (the part outside is cut off); a foreground that misses the page
    entirely is an error.
    """
    page = checks.image_batch(page, "page")
    fg = _check_foreground(foreground)
    x = _number(x, "x", integer=True)
    y = _number(y, "y", integer=True)
    scale = _number(scale, "scale", lo=1e-3, hi=64.0)
    b, h, w, c = page.shape
    if fg.shape[0] not in (1, b):
        raise ValueError(f"foreground: batch of {fg.shape[0]} for {b} page(s); expected 1 (shared) or {b}")
    a = _alpha(fg, alpha, "foreground")
    rgb = fg[..., :3].float() if fg.shape[-1] >= 3 else fg[..., :1].float()
    sh, sw = scaled_size(tuple(fg.shape[1:3]), scale)
    if sh * sw > 4 * h * w + 4096:
        raise ValueError(f"scale: the foreground at scale {scale:g} would be {sw}x{sh} px, far larger than the "
                         f"{w}x{h} page; expected a scale that fits the page")
    box = (max(0, y), max(0, x), min(h, y + sh), min(w, x + sw))  # clipped to the page
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError(f"x, y: the foreground ({sw}x{sh} px at x={x}, y={y}) lies outside the {w}x{h} page")
    premul = geometry.resize_image(rgb.clamp(0.0, 1.0) * a[..., None], (sh, sw))
    cov = geometry.resize_image(a[..., None], (sh, sw))[..., 0].clamp(0.0, 1.0)
    premul = torch.minimum(premul.clamp(min=0.0), cov[..., None])  # bicubic overshoot: colour never exceeds coverage
    if c == 1 and premul.shape[-1] == 3:
        premul = premul.mean(dim=-1, keepdim=True)
    elif c == 3 and premul.shape[-1] == 1:
        premul = premul.expand(-1, -1, -1, 3)
    y0, x0, y1, x1 = box
    local = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    cov = cov[:, local[0], local[1]].expand(b, -1, -1)
    premul = premul[:, local[0], local[1]].expand(b, -1, -1, -1)
    out = page.detach().cpu().clone()
    region = out[:, y0:y1, x0:x1]
    blended = (region.float() * (1.0 - cov[..., None]) + premul).clamp(0.0, 1.0).to(out.dtype)
    out[:, y0:y1, x0:x1] = torch.where(cov[..., None] > 0, blended, region)  # untouched where alpha is 0
    coverage = torch.zeros(b, h, w)
    coverage[:, y0:y1, x0:x1] = cov
    return Pasted(image=out.to(page.device), coverage=coverage, box=box, size=(sh, sw))


def _check_foreground(foreground) -> torch.Tensor:
    """Like ``checks.image_batch`` but keeps the alpha channel (it is the foreground's shape)."""
    if isinstance(foreground, torch.Tensor) and foreground.ndim == 4 and foreground.shape[-1] == 4:
        checks.image_batch(foreground[..., :3], "foreground")
        if not bool(torch.isfinite(foreground[..., 3]).all()):
            raise ValueError("foreground: its alpha channel contains NaN or infinite values")
        return foreground
    return checks.image_batch(foreground, "foreground")


def pass_mask(coverage: torch.Tensor, ring: int) -> torch.Tensor:
    """The pixels the harmonising pass repaints: every pixel the foreground covers (alpha > 0), grown by
    ``ring`` pixels (a disk). Float ``[B, H, W]`` 0/1."""
    ring = _number(ring, "ring", lo=0, hi=4096, integer=True)
    return masks.grow((coverage > 0).float(), ring)


def harmonize(
    host,
    page,
    foreground,
    *,
    x: int,
    y: int,
    scale: float = 1.0,
    alpha=None,
    strength: float = 0.3,
    steps: int = 10,
    ring: int = 8,
    feather: int | None = None,
    seed: int = 0,
    config: SGIMConfig | None = None,
) -> HarmonizeResult:
    """Paste ``foreground`` on ``page`` (see :func:`paste`) and redraw the pasted area plus a ``ring`` in the
    page's style: one full-resolution pass at ``strength`` (ComfyUI's denoise: the last ``steps`` steps
    of a schedule of ``int(steps / strength)``) through ``host`` (an ``SGIMHost``), on crops around the
    mask, blended into the page over ``feather`` pixels inside the ring (default ``ring // 2``).

    ``config`` sets the engine's crop settings (``context_margin``, ``min_crop_side``, tiles, ...); its
    pass settings are replaced by these arguments. Pixels outside the ring are the page's, bit for bit.
    """
    strength = _number(strength, "strength", lo=0.0, hi=1.0)
    if strength <= 0.0:
        raise ValueError(f"strength: expected a number in (0, 1], got {strength!r}")
    steps = _number(steps, "steps", lo=1, hi=10000, integer=True)
    ring = _number(ring, "ring", lo=0, hi=4096, integer=True)
    feather = ring // 2 if feather is None else _number(feather, "feather", lo=0, hi=4096, integer=True)
    pasted = paste(page, foreground, x=x, y=y, scale=scale, alpha=alpha)
    mask = pass_mask(pasted.coverage, ring)
    cfg = dataclasses.replace(
        config or SGIMConfig(),
        structure_pass=False, fri_strength=strength, fri_steps=steps, feather=feather, grow_mask=0, flat_fill="off",
    )  # fmt: skip
    result = inpaint(host, pasted.image, mask, seed=seed, config=cfg)
    log.info("[MDIM] Paste & Harmonize: %dx%d px pasted at x=%d, y=%d; %d pass(es) at strength %g",
             pasted.size[1], pasted.size[0], x, y, result.passes, strength)
    return HarmonizeResult(image=result.image, mask=mask, pasted=pasted, passes=result.passes)
