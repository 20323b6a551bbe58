"""Stroke shapes of pseudo-text glyphs and SFX letters, in unit cells.

Nothing here renders: every function returns polylines (lists of ``[N, 2]`` float arrays of x, y in
0..1 of the cell) that the page renderer scales, rotates and draws as anti-aliased strokes.
"""

from __future__ import annotations

import math

import numpy as np


def bezier(p0, p1, p2, p3, n: int = 12) -> np.ndarray:
    """Points of a cubic Bezier curve, ``[n, 2]``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, np.float64) for p in (p0, p1, p2, p3))
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + (t**3) * p3


def text_glyph(rng: np.random.Generator) -> list[np.ndarray]:
    """A kanji/kana-like glyph: 2-6 strokes (bars, slants, hooks, dots, a small box)."""
    strokes: list[np.ndarray] = []
    for _ in range(int(rng.integers(2, 7))):
        kind = rng.choice(["h", "v", "slash", "back", "dot", "box", "hook"], p=[0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1])
        if kind == "h":
            y = rng.uniform(0.15, 0.85)
            x0, x1 = rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.95)
            strokes.append(np.array([[x0, y], [x1, y + rng.uniform(-0.04, 0.04)]]))
        elif kind == "v":
            x = rng.uniform(0.15, 0.85)
            y0, y1 = rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.95)
            strokes.append(np.array([[x, y0], [x + rng.uniform(-0.03, 0.03), y1]]))
        elif kind == "slash":
            strokes.append(bezier((0.55, 0.1), (0.5, 0.5), (0.35, 0.75), (0.1, 0.9), 6))
        elif kind == "back":
            strokes.append(np.array([[rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.5)], [0.9, 0.9]]))
        elif kind == "dot":
            x, y = rng.uniform(0.2, 0.8, size=2)
            strokes.append(np.array([[x, y], [x + 0.08, y + 0.1]]))
        elif kind == "box":
            x0, y0 = rng.uniform(0.1, 0.4, size=2)
            x1, y1 = rng.uniform(0.6, 0.9, size=2)
            strokes.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]))
        else:  # hook
            x = rng.uniform(0.3, 0.7)
            strokes.append(np.array([[x, 0.1], [x, 0.8], [x - 0.15, 0.9]]))
    return strokes


def sfx_letter(rng: np.random.Generator) -> list[np.ndarray]:
    """A bold letter-like shape for sound effects: 2-4 strokes, some curved."""
    strokes: list[np.ndarray] = []
    n = int(rng.integers(2, 5))
    for _ in range(n):
        kind = rng.choice(["bar", "curve", "arc", "zig"])
        if kind == "bar":
            a, b = rng.uniform(0.05, 0.95, size=(2, 2))
            strokes.append(np.array([a, b]))
        elif kind == "curve":
            pts = rng.uniform(0.05, 0.95, size=(4, 2))
            strokes.append(bezier(*pts, n=14))
        elif kind == "arc":
            c = rng.uniform(0.35, 0.65, size=2)
            r = rng.uniform(0.2, 0.4)
            a0 = rng.uniform(0, 2 * math.pi)
            ang = a0 + np.linspace(0, rng.uniform(math.pi * 0.8, math.pi * 1.7), 16)
            strokes.append(np.stack([c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)], 1))
        else:
            ys = np.linspace(0.1, 0.9, 4)
            xs = np.array([0.2, 0.8, 0.2, 0.8]) + rng.uniform(-0.1, 0.1, 4)
            strokes.append(np.stack([xs, ys], 1))
    return strokes


# Latin capitals as comic lettering draws them: polylines in a cell of height 1 (0 = cap line,
# 1 = baseline) and the letter's own width (x in 0..1 of that width).
def _arc(cx, cy, rx, ry, a0, a1, n=14):
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


_BOWL_TOP = [(0, 0), (0.7, 0), (0.95, 0.14), (0.95, 0.36), (0.7, 0.5), (0, 0.5)]
LATIN: dict[str, tuple[float, list[list[tuple[float, float]]]]] = {
    "A": (0.72, [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.64), (0.78, 0.64)]]),
    "B": (0.62, [[(0, 0), (0, 1)], _BOWL_TOP, [(0.7, 0.5), (1, 0.64), (1, 0.86), (0.75, 1), (0, 1)]]),
    "C": (0.66, [_arc(0.55, 0.5, 0.5, 0.5, 40, 320)]),
    "D": (0.66, [[(0, 0), (0, 1)], [(0, 0), (0.5, 0), (0.95, 0.28), (0.95, 0.72), (0.5, 1), (0, 1)]]),
    "E": (0.56, [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.8, 0.5)]]),
    "F": (0.54, [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.8, 0.5)]]),
    "G": (0.68, [_arc(0.55, 0.5, 0.5, 0.5, 40, 330), [(0.6, 0.58), (1, 0.58), (1, 0.85)]]),
    "H": (0.64, [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]]),
    "I": (0.34, [[(0.5, 0), (0.5, 1)], [(0, 0), (1, 0)], [(0, 1), (1, 1)]]),
    "J": (0.52, [[(0.95, 0), (0.95, 0.72), (0.7, 1), (0.3, 1), (0.05, 0.8)]]),
    "K": (0.62, [[(0, 0), (0, 1)], [(1, 0), (0, 0.62)], [(0.32, 0.42), (1, 1)]]),
    "L": (0.52, [[(0, 0), (0, 1), (0.95, 1)]]),
    "M": (0.82, [[(0, 1), (0, 0), (0.5, 0.62), (1, 0), (1, 1)]]),
    "N": (0.66, [[(0, 1), (0, 0), (1, 1), (1, 0)]]),
    "O": (0.72, [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 20)]),
    "P": (0.6, [[(0, 1), (0, 0), (0.7, 0), (0.95, 0.15), (0.95, 0.4), (0.7, 0.55), (0, 0.55)]]),
    "Q": (0.72, [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 20), [(0.6, 0.72), (1, 1.05)]]),
    "R": (0.62, [[(0, 1), (0, 0), (0.7, 0), (0.95, 0.15), (0.95, 0.4), (0.7, 0.55), (0, 0.55)], [(0.45, 0.55), (1, 1)]]),
    "S": (0.6, [[(0.95, 0.12), (0.7, 0), (0.3, 0), (0.05, 0.15), (0.05, 0.35), (0.3, 0.5), (0.7, 0.5),
                 (0.95, 0.65), (0.95, 0.86), (0.7, 1), (0.3, 1), (0.05, 0.88)]]),
    "T": (0.62, [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]]),
    "U": (0.64, [[(0, 0), (0, 0.74), (0.25, 1), (0.75, 1), (1, 0.74), (1, 0)]]),
    "V": (0.68, [[(0, 0), (0.5, 1), (1, 0)]]),
    "W": (0.9, [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]]),
    "X": (0.66, [[(0, 0), (1, 1)], [(1, 0), (0, 1)]]),
    "Y": (0.66, [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]]),
    "Z": (0.62, [[(0, 0), (1, 0), (0, 1), (1, 1)]]),
    "!": (0.2, [[(0.5, 0), (0.5, 0.64)], [(0.5, 0.92), (0.5, 0.96)]]),
    "?": (0.56, [[(0.05, 0.2), (0.3, 0), (0.7, 0), (0.95, 0.2), (0.95, 0.36), (0.5, 0.56), (0.5, 0.7)],
                 [(0.5, 0.92), (0.5, 0.96)]]),
    ".": (0.2, [[(0.5, 0.93), (0.5, 0.97)]]),
}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def latin_word(rng: np.random.Generator) -> str:
    """A random capitalised 'word' of 1-8 letters, sometimes ending in punctuation."""
    n = int(rng.integers(1, 9))
    word = "".join(LETTERS[int(i)] for i in rng.integers(0, len(LETTERS), n))
    if rng.uniform() < 0.2:
        word += str(rng.choice(["!", "?", ".", "!?", "..."]))
    return word


def latin_strokes(char: str) -> tuple[float, list[np.ndarray]]:
    """(width in cap heights, polylines in a 1 x 1 cell) of a Latin capital or punctuation mark."""
    width, strokes = LATIN[char]
    return width, [np.asarray(s, np.float64) for s in strokes]
