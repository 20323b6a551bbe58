"""Write ``samples/old_scan.png``: a generated manga page aged like an old yellowed scan.

The page comes from the pack's page generator and aging simulator, so it is reproducible and free
to ship: ``python samples/make_example.py`` rewrites the same file (``--docs`` also redraws the
README's before/after picture, docs/images/restoration_before_after.jpg). It is the input of the README's
first command, ``python -m mdim_core restore samples/old_scan.png -o out/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mdim_core.synth import aging, generate_page  # noqa: E402

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


def make_docs_pair(scan: Path = HERE / "old_scan.png",
                   path: Path = HERE.parent / "docs" / "images" / "restoration_before_after.jpg") -> Path:
    """The README picture: a crop of the example scan (left) and the same crop cleaned (right)."""
    from mdim_core.imaging import imageio
    from mdim_core.restore import cleanup

    page = imageio.read_page(scan)
    clean = cleanup.clean_page(page.pixels, dpi=page.dpi[0] if page.dpi else 0.0)
    h, w = clean.shape
    box = (slice(0, h * 11 // 20), slice(0, w))  # the top half: tint, vignette, stains, screentones
    before = np.clip(page.pixels[box] * 255 + 0.5, 0, 255).astype(np.uint8)
    after = np.repeat(np.clip(clean[box] * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    gap = np.full((before.shape[0], 8, 3), 255, np.uint8)
    pair = Image.fromarray(np.concatenate([before, gap, after], axis=1))
    pair = pair.resize((pair.width * 3 // 4, pair.height * 3 // 4), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    pair.save(path, quality=88, optimize=True)
    return path


if __name__ == "__main__":
    out = make()
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    if "--docs" in sys.argv:
        pic = make_docs_pair(out)
        print(f"wrote {pic} ({pic.stat().st_size // 1024} KiB)")
