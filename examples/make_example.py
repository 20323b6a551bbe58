"""Write ``examples/old_scan.png``: a generated manga page aged like an old yellowed scan.

The page comes from the pack's page generator and aging simulator, so it is reproducible and free
to ship: ``python examples/make_example.py`` rewrites the same file. It is the input of the README's
first command, ``python -m mdim_core restore examples/old_scan.png -o out/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mdim_core import aging  # noqa: E402
from mdim_core.synth import generate_page  # noqa: E402

SEED = 7
DPI = 150  # small enough to ship (the cleanup is resolution independent)
SIZE = (880, 622)  # px, an A-series page shape


def make(path: Path = HERE / "old_scan.png") -> Path:
    page = generate_page(SEED, size=SIZE, dpi=DPI, masks=False).page
    old = aging.age_page(
        page, seed=SEED, dpi=DPI,
        tint=0.85, light=0.15, vignette=0.2, stains=3, stain_strength=0.3, bleed=0.08,
        grain=0.006, blur=0.6, jpeg_quality=0,
    )
    img = Image.fromarray(np.clip(old * 255 + 0.5, 0, 255).astype(np.uint8))
    img.save(path, dpi=(DPI, DPI), optimize=True)  # smallest PNG: this file ships with the pack
    return path


if __name__ == "__main__":
    out = make()
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
