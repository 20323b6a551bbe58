"""Page sizes, pixel formats and masks for the size sweeps (tests/test_sizes_*.py).

Sizes: 1 to about 10 000 px per side (primes, odd sides, 1xN and Nx1 strips) and the ISO A and
B paper series scanned at 72..1200 dpi, computed from their millimetre dimensions (A0 is 1 m^2
with sides in the ratio sqrt(2), B0 has a 1 m short side; each next size halves the long side,
rounded down to a whole mm). Masks: empty, full, speckled, and a block touching the border.

Large pages are slow and heavy, so sweeps draw most examples from small sides and keep the large
ones to cheap inputs (constant or strided pages) and few examples.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

MAX_SIDE = 10_000
DPIS = (72, 96, 100, 150, 200, 240, 300, 350, 400, 600, 720, 800, 1200)
MASK_KINDS = ("empty", "full", "speckled", "border")


def iso_series_mm() -> dict[str, tuple[int, int]]:
    """ISO 216 A0..A10 and B0..B10 as (short, long) in mm, from the series' definition."""
    out = {}
    for series, (short, long) in {
        "A": (round(1000 / 2**0.25), round(1000 * 2**0.25)),  # 841 x 1189: 1 m^2, ratio sqrt(2)
        "B": (1000, round(1000 * 2**0.5)),  # 1000 x 1414
    }.items():
        for n in range(11):
            out[f"{series}{n}"] = (short, long)
            short, long = long // 2, short
    return out


def paper_sizes(max_side: int = MAX_SIDE) -> list[tuple[int, int]]:
    """(height, width) in px of the A and B series at :data:`DPIS`, portrait and landscape, rounded
    and truncated (scanners do either), every side at most ``max_side``; sorted, no repeats."""
    sizes = set()
    for short_mm, long_mm in iso_series_mm().values():
        for dpi in DPIS:
            for to_px in (round, math.floor):
                s, lo = to_px(short_mm / 25.4 * dpi), to_px(long_mm / 25.4 * dpi)
                if 1 <= s and lo <= max_side:
                    sizes |= {(lo, s), (s, lo)}
    return sorted(sizes)


def primes_below(n: int) -> list[int]:
    sieve = np.ones(n, bool)
    sieve[:2] = False
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(p) for p in np.flatnonzero(sieve)]


PRIMES = primes_below(MAX_SIDE + 1)


def side(max_side: int = MAX_SIDE):
    """One side: small (1..64), odd, prime, or any up to ``max_side``."""
    return st.one_of(
        st.integers(1, 64),
        st.integers(0, max_side // 2 - 1).map(lambda k: 2 * k + 1),
        st.sampled_from([p for p in PRIMES if p <= max_side]),
        st.integers(1, max_side),
    )


def page_size(max_side: int = MAX_SIDE, max_area: int | None = None):
    """(height, width): two sides, a 1xN or Nx1 strip, or a paper size; at most ``max_area`` px
    (a larger draw keeps its shorter side and gets as long as the area allows)."""

    def fit(hw):
        h, w = hw
        if max_area is not None and h * w > max_area:
            if h >= w:
                h = max(1, max_area // w)
            else:
                w = max(1, max_area // h)
        return h, w

    strips = st.integers(1, max_side).flatmap(lambda n: st.sampled_from([(1, n), (n, 1)]))
    choices = [st.tuples(side(max_side), side(max_side)), strips]
    papers = paper_sizes(max_side)
    if papers:  # (one side of a paper size kept when the area is cut)
        choices.append(st.sampled_from(papers))
    return st.one_of(*choices).map(fit)


def make_mask(kind: str, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A bool ``[H, W]`` mask: ``empty``, ``full``, ``speckled`` (isolated pixels, about 1 in 50)
    or ``border`` (a block along the bottom-right border, a third of each side)."""
    h, w = size
    if kind == "empty":
        return np.zeros(size, bool)
    if kind == "full":
        return np.ones(size, bool)
    if kind == "speckled":
        rng = np.random.default_rng(seed)
        m = rng.random(size) < 0.02
        m[rng.integers(h), rng.integers(w)] = True  # never empty
        return m
    if kind == "border":
        m = np.zeros(size, bool)
        m[h - max(1, h // 3) :, w - max(1, w // 3) :] = True
        return m
    raise ValueError(f"kind: expected one of {MASK_KINDS}, got {kind!r}")


def make_page(size: tuple[int, int], channels: int = 1, seed: int = 0, cheap: bool = False) -> np.ndarray:
    """float32 ``[H, W, C]`` in 0..1: paper with ink lines and noise, or (``cheap``) strided lines on
    flat paper, which costs nothing to make at any size."""
    h, w = size
    if cheap:
        gray = np.full(size, 0.92, np.float32)
        gray[::13] = 0.08
        gray[:, ::17] = 0.08
    else:
        rng = np.random.default_rng(seed)
        gray = (0.85 + 0.1 * rng.random(size)).astype(np.float32)
        gray[:: max(2, h // 7)] = 0.05
        gray[:, :: max(2, w // 5)] = 0.1
    page = np.repeat(gray[..., None], channels, axis=2)
    if channels >= 3:  # a yellowish tint, so colour pages are colour
        page[..., 2] *= np.float32(0.8)
    if channels == 4:
        page[..., 3] = 1.0
    return page
