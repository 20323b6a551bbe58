"""Write the bundled examples: ``samples/raw_page.png`` and ``samples/old_scan.png``.

- ``raw_page.png``: a generated manga page with its lettering (speech bubbles, free text), the input of
  the README's first command, ``python3 dev.py demo``, which removes the text with
  ``python -m mdim_core clean`` (automatic text mask, flat fill; no model needed);
- ``old_scan.png``: a generated page aged like an old yellowed scan, cleaned by the same command with
  ``python -m mdim_core restore``.

Both come from the pack's page generator and aging simulator, so they are reproducible and free to ship:
``python samples/make_example.py`` rewrites the same files (``--docs`` also redraws the README's
before/after picture of the scan cleanup, docs/images/restoration_before_after.jpg).
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


RAW_SEED = 11
RAW_DPI = 200


def make_raw(path: Path = HERE / "raw_page.png") -> Path:
    """A page with its lettering, as a scanlator gets it (grayscale, 8 bits)."""
    page = generate_page(RAW_SEED, size="A5", dpi=RAW_DPI, masks=False, text="latin").page
    img = Image.fromarray(np.clip(page * 255 + 0.5, 0, 255).astype(np.uint8).squeeze())
    img.save(path, dpi=(RAW_DPI, RAW_DPI), optimize=True)
    return path


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
    raw = make_raw()
    print(f"wrote {raw} ({raw.stat().st_size // 1024} KiB)")
    out = make()
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    if "--docs" in sys.argv:
        pic = make_docs_pair(out)
        print(f"wrote {pic} ({pic.stat().st_size // 1024} KiB)")
