"""Training masks: the whole image with probability ``full_mask_prob``, otherwise shapes like what users remove.

The shapes come from the pack's own generators (:mod:`mdim_core.synth`), never re-drawn here:

- ``bubble``: speech bubbles filled whole (the inside of the ellipses of generated pages);
- ``text``:   lines of bubble text and free text over the artwork (a generated page's ``text`` mask);
- ``sfx``:    big sound-effect letters with their outline (a generated page's ``sfx`` mask);
- ``wide``:   LaMa-style thick brush strokes (:func:`mdim_core.synth.maskgen.wide_mask`);
- ``box``:    LaMa-style rectangles (:func:`mdim_core.synth.maskgen.box_mask`).

Bubbles, text and SFX depend on a page layout, so they are cut from a bank of generated pages at the
scale training crops come at (pages whose longest side is the structure-pass size, e.g. 1024 px); each
bank page is generated on first use from its index, so a mask depends only on the random generator
passed in (training resumes exactly). Strokes and boxes are drawn on the crop itself.
"""

from __future__ import annotations

import math

import numpy as np

from ..synth import generate_page
from ..synth.maskgen import box_mask, wide_mask
from ..synth.raster import Ellipse, coverage

MASK_KINDS = ("bubble", "text", "sfx", "wide", "box")
#: A5 height in inches: bank pages are A5-shaped, at the dpi that gives them the structure-pass size.
_A5_HEIGHT_IN = 210.0 / 25.4
_BANK_SEED = 7_000_000
_TRIES = 8


def bubble_mask(page, inset: float = 0.92) -> np.ndarray:
    """Bool ``[H, W]``: the insides of the speech bubbles of a generated page (:class:`mdim_core.synth.SynthPage`),
    their ellipses shrunk by ``inset`` so the mask stays inside the outline (what a user masks to empty a bubble)."""
    h, w = page.page.shape
    out = np.zeros((h, w), bool)
    for cx, cy, a, b in page.metadata["bubble_ellipses"]:
        cov = coverage(Ellipse(cx, cy, inset * a, inset * b, margin=2), (0, h, 0, w))
        if cov is not None:
            (y0, y1, x0, x1), c = cov
            out[y0:y1, x0:x1] |= c >= 0.5
    return out


def check_kinds(kinds) -> tuple[str, ...]:
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in MASK_KINDS]
    if not kinds or bad:
        raise ValueError(f"mask kinds: expected a non-empty selection of {', '.join(MASK_KINDS)}, got {list(kinds)}")
    return kinds


class MaskSampler:
    """Draws one training mask per call.

    Args:
        page_side: longest side of the pages crops are cut from (the structure-pass size, 1024 for SD1.x);
            sets the size of the generated bank pages, so bubbles and text have their size on a page.
        full_mask_prob: probability that the mask is the whole crop.
        kinds: the shape kinds drawn otherwise, with equal probability.
        bank_size: how many generated pages the bubble/text/SFX shapes come from.
    """

    def __init__(self, page_side: int = 1024, full_mask_prob: float = 0.75, kinds=MASK_KINDS, bank_size: int = 32):
        if not (isinstance(full_mask_prob, (int, float)) and 0.0 <= full_mask_prob <= 1.0):
            raise ValueError(f"full_mask_prob: expected a probability in [0, 1], got {full_mask_prob!r}")
        if int(page_side) < 64:
            raise ValueError(f"page_side: expected at least 64 px, got {page_side!r}")
        if int(bank_size) < 1:
            raise ValueError(f"bank_size: expected >= 1, got {bank_size!r}")
        self.kinds = check_kinds(kinds)
        self.full_mask_prob = float(full_mask_prob)
        self.page_shape = (int(page_side), max(64, round(int(page_side) / math.sqrt(2.0))))
        self.dpi = float(min(1200.0, max(36.0, page_side / _A5_HEIGHT_IN)))
        self.bank_size = int(bank_size)
        self._bank: dict[int, dict[str, np.ndarray]] = {}

    # -- the bank of generated page masks ----------------------------------------------------------
    def bank_page(self, index: int) -> dict[str, np.ndarray]:
        """Bool ``[H, W]`` masks ``bubble``, ``text`` and ``sfx`` of generated bank page ``index``."""
        index = int(index) % self.bank_size
        if index not in self._bank:
            page = generate_page(_BANK_SEED + index, size=self.page_shape, dpi=self.dpi, masks=False)
            self._bank[index] = {"bubble": bubble_mask(page), "text": page.masks["text"], "sfx": page.masks["sfx"]}
        return self._bank[index]

    def _from_bank(self, rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray | None:
        h, w = shape
        for _ in range(_TRIES):
            source = self.bank_page(int(rng.integers(self.bank_size)))[kind]
            ys, xs = np.nonzero(source)
            if ys.size == 0:
                continue
            i = int(rng.integers(ys.size))  # a crop around a random mask pixel, placed at random around it
            y0 = int(ys[i]) - int(rng.integers(h))
            x0 = int(xs[i]) - int(rng.integers(w))
            out = np.zeros((h, w), bool)
            sy0, sx0 = max(0, y0), max(0, x0)
            sy1, sx1 = min(source.shape[0], y0 + h), min(source.shape[1], x0 + w)
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = source[sy0:sy1, sx0:sx1]
            if out.any():
                return out
        return None

    # -- drawing ------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
        """A bool ``[H, W]`` mask (True = repaint) and its kind (``"full"`` or one of :data:`MASK_KINDS`)."""
        h, w = int(shape[0]), int(shape[1])
        if h < 8 or w < 8:
            raise ValueError(f"shape: masks need at least 8x8 px, got {shape}")
        if rng.uniform() < self.full_mask_prob:
            return np.ones((h, w), bool), "full"
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "wide":
            mask = wide_mask(rng, (h, w))
        elif kind == "box":
            mask = box_mask(rng, (h, w))
        else:
            mask = self._from_bank(rng, kind, (h, w))
            if mask is None:  # no such shape in the bank pages tried: a box instead
                kind, mask = "box", box_mask(rng, (h, w))
        if rng.uniform() < 0.5:
            mask = mask[:, ::-1]
        if rng.uniform() < 0.5:
            mask = mask[::-1]
        return np.ascontiguousarray(mask), kind
