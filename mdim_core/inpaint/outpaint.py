"""Outpainting: extend a page or panel on any side and give the mask of the new area.

The padded image holds the original pixels bit for bit; the new area gets a fill that the
inpainting pass then replaces. What the fill should be depends on what samples it:

- With a standard (4-channel) checkpoint and a noise mask at full denoise, the sampler starts the
  new area from ``latent + sigma_max * noise``. SD1.x's sigma_max is 14.6, so the fill's overall
  tone still shows at SNR 0.0047 and steers what the model draws; a zero-terminal-SNR model
  (sigma_max 4518.8, MDIM checkpoints) ignores it. The VAE encoder also sees the fill next to the
  seam. So the fill should carry the page's tone and no shapes of its own.
- ``paper`` (default) fills with the page's own paper colour (the median colour of its lightest
  tenth): empty paper that matches a yellowed scan, no streaks, no copied content.
- ``white`` is pure paper white; ``grey`` is 0.5 (ComfyUI's Pad Image for Outpainting; with SD1.x
  it tends to leave grey in the new area); ``edge`` repeats the border pixels (continues tones,
  but a panel's border line becomes a black band); ``mirror`` reflects the page at its border
  (keeps texture statistics, but duplicates content: only for a low-strength pass that redraws it).

Images are ``[B, H, W, C]`` float tensors in 0..1 (C = 1 or 3; RGBA alpha is dropped with a log
line), masks ``[B, H, W]`` float32 with 1 = new area. Nothing edits its input.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..imaging import checks, masks

log = logging.getLogger("MDIM")

FILL_MODES = ("paper", "white", "edge", "mirror", "grey")
ANCHORS = (
    "center", "top", "bottom", "left", "right", "top-left", "top-right", "bottom-left", "bottom-right",
)  # fmt: skip
# width : height of the whole result; manga books (A5, B6, B5, tankobon) are all close to 1 : sqrt(2)
ASPECTS = {
    "off": None,
    "1:1": 1.0,
    "1:√2 (manga page)": 1.0 / math.sqrt(2.0),
    "√2:1 (double-page spread)": math.sqrt(2.0),
    "2:3": 2.0 / 3.0,
    "3:2": 3.0 / 2.0,
    "3:4": 3.0 / 4.0,
    "4:3": 4.0 / 3.0,
    "9:16": 9.0 / 16.0,
    "16:9": 16.0 / 9.0,
}
MAX_SIDE = 32768  # per side of the result; larger is almost surely a typo


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of an image of ``size`` after padding."""
        return size[0] + self.top + self.bottom, size[1] + self.left + self.right

    @property
    def empty(self) -> bool:
        return self.top == self.bottom == self.left == self.right == 0


def plan_padding(
    size: tuple[int, int],
    *,
    top: int = 0,
    bottom: int = 0,
    left: int = 0,
    right: int = 0,
    aspect: str | float | None = None,
    target_height: int = 0,
    target_width: int = 0,
    anchor: str = "center",
) -> Padding:
    """The padding of an image of ``size`` (H, W): the given sides, then more to reach an aspect or a size.

    ``aspect`` (a name of :data:`ASPECTS` or width / height) grows the shorter dimension of the side-padded
    image until width / height matches (rounded to whole pixels). ``target_height``/``target_width``
    (0 = free) pad that dimension to exactly that many pixels. The canvas only grows: a target smaller
    than the side-padded image is an error, as is giving both an aspect and a target size. ``anchor``
    says where the side-padded image sits in the extra space (``center`` splits it, the odd pixel going
    to the bottom/right; ``top-left`` puts all of it at the bottom and right; ...).
    """
    h, w = _check_size(size)
    sides = {"top": top, "bottom": bottom, "left": left, "right": right}
    for name, value in sides.items():
        _check_int(name, value, 0)
    if anchor not in ANCHORS:
        raise ValueError(f"anchor: expected one of {', '.join(ANCHORS)}, got {anchor!r}")
    _check_int("target_height", target_height, 0)
    _check_int("target_width", target_width, 0)
    ratio = _aspect_ratio(aspect)
    if ratio is not None and (target_height or target_width):
        raise ValueError(
            "aspect: set either an aspect or target_width/target_height, not both "
            f"(got aspect {aspect!r} and a target of {target_width}x{target_height})"
        )
    h1, w1 = h + top + bottom, w + left + right
    big_h, big_w = h1, w1
    if ratio is not None:
        if w1 < h1 * ratio:
            big_w = max(w1, round(h1 * ratio))
        elif w1 > h1 * ratio:
            big_h = max(h1, round(w1 / ratio))
    for name, target, current in (("target_height", target_height, h1), ("target_width", target_width, w1)):
        if target and target < current:
            raise ValueError(
                f"{name}: the image with its side padding is already {current} px; expected 0 (free) or at "
                f"least {current}"
            )
    big_h, big_w = target_height or big_h, target_width or big_w
    if max(big_h, big_w) > MAX_SIDE:
        raise ValueError(
            f"the padded image would be {big_w}x{big_h} px; at most {MAX_SIDE} px per side is supported "
            "(check top/bottom/left/right and the target size)"
        )
    extra_h, extra_w = big_h - h1, big_w - w1
    above = (
        extra_h // 2
        if anchor in ("center", "left", "right")
        else (0 if anchor.startswith("top") else extra_h)
    )
    before = (
        extra_w // 2 if anchor in ("center", "top", "bottom") else (0 if anchor.endswith("left") else extra_w)
    )
    return Padding(top + above, bottom + extra_h - above, left + before, right + extra_w - before)


def new_area_mask(size: tuple[int, int], padding: Padding, batch: int = 1, feather: int = 0) -> torch.Tensor:
    """``[batch, H, W]`` float32: 1 on the new area, 0 on the original pixels.

    ``feather`` > 0 ramps the first ``feather`` pixels of the new area from the original outward
    (``masks.feather``: weight ``d / (feather + 1)`` at distance ``d`` from the original), never
    touching the original pixels, which stay exactly 0.
    """
    h, w = _check_size(size)
    _check_int("feather", feather, 0)
    big_h, big_w = padding.size((h, w))
    mask = torch.ones(1, big_h, big_w, dtype=torch.float32)
    mask[:, padding.top : padding.top + h, padding.left : padding.left + w] = 0.0
    if feather:
        mask = masks.feather(mask, feather)
    return mask.expand(batch, -1, -1).contiguous()


def paper_colour(image: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: the median colour of each image's lightest tenth of pixels (its paper).

    Large pages are sampled on a regular grid of at most a million pixels, so scans stay fast.
    """
    b, h, w, c = image.shape
    step = max(1, math.ceil(math.sqrt(h * w / 1_000_000)))
    out = torch.empty(b, c, dtype=image.dtype)
    for i in range(b):
        pixels = image[i, ::step, ::step].reshape(-1, c).float()
        luma = pixels.mean(-1)
        light = pixels[luma >= torch.quantile(luma, 0.9)]
        out[i] = light.median(dim=0).values.to(image.dtype)
    return out


def pad_image(image: torch.Tensor, padding: Padding, fill: str = "paper") -> torch.Tensor:
    """``image`` on a larger canvas: the original pixels copied bit for bit, the new area filled."""
    image = check_image(image)
    if fill not in FILL_MODES:
        raise ValueError(f"fill: expected one of {', '.join(FILL_MODES)}, got {fill!r}")
    if padding.empty:
        return image
    b, h, w, c = image.shape
    big_h, big_w = padding.size((h, w))
    pads = ((0, 0), (padding.top, padding.bottom), (padding.left, padding.right), (0, 0))
    if fill in ("edge", "mirror"):
        array = image.detach().cpu().numpy()
        return torch.from_numpy(np.pad(array, pads, mode="edge" if fill == "edge" else "symmetric"))
    if fill == "paper":
        colour = paper_colour(image)[:, None, None, :]
    else:
        colour = torch.full((b, 1, 1, c), 1.0 if fill == "white" else 0.5, dtype=image.dtype)
    out = colour.expand(b, big_h, big_w, c).clone()
    out[:, padding.top : padding.top + h, padding.left : padding.left + w] = image.cpu()
    return out


def outpaint_pad(
    image: torch.Tensor, padding: Padding, fill: str = "paper", feather: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded image and the ``[B, H, W]`` mask of its new area (see :func:`new_area_mask`).

    Raises ``MemoryError`` before allocating when the result would not fit in the memory free."""
    image = check_image(image)
    b, h, w, c = image.shape
    big_h, big_w = padding.size((h, w))
    # the image and mask, a copy of each on their way to the next node, and the feather's distance maps
    need = 2 * 4 * b * big_h * big_w * (c + 1) + (24 if feather else 4) * big_h * big_w
    checks.require_memory(need, f"outpainting to a {big_w}x{big_h} px canvas (check top/bottom/left/right "
                                f"and the target size)")
    padded = pad_image(image, padding, fill)
    b, h, w = padded.shape[0], image.shape[1], image.shape[2]
    return padded, new_area_mask((h, w), padding, b, feather)


def check_image(image) -> torch.Tensor:
    """``[B, H, W, C]`` float tensor with C = 1 or 3 (4: alpha dropped with a log line); ``[H, W, C]`` is a
    batch of 1; NaN or infinite pixels are refused (:func:`~mdim_core.imaging.checks.image_batch`)."""
    return checks.image_batch(image, "image", single=True)


def _aspect_ratio(aspect) -> float | None:
    if aspect is None or aspect == "off":
        return None
    if isinstance(aspect, str):
        if aspect not in ASPECTS:
            raise ValueError(f"aspect: expected one of {', '.join(ASPECTS)}, got {aspect!r}")
        return ASPECTS[aspect]
    if isinstance(aspect, bool) or not isinstance(aspect, numbers.Real) or not 0.01 <= float(aspect) <= 100:
        raise ValueError(f"aspect: expected width / height between 0.01 and 100, got {aspect!r}")
    return float(aspect)


def _check_size(size) -> tuple[int, int]:
    if len(size) != 2:
        raise ValueError(f"size: expected (height, width), got {size!r}")
    _check_int("height", size[0], 1)
    _check_int("width", size[1], 1)
    return int(size[0]), int(size[1])


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
