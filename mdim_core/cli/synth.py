"""``python -m mdim_core synth OUT --count N``: write a generated test set to a folder.

Layout (every file named ``<prefix><seed>.png``, so the folders pair up for ``eval``)::

    OUT/page/         pages with bubble text and SFX
    OUT/clean/        the same pages without them (exact ground truth of text/SFX removal)
    OUT/masks/<kind>/ masks, white = to repaint: text, sfx, wide, box, small
    OUT/screentone/   white where the clean page shows a dot or line screen
    OUT/aged/         the page aged into an old scan (RGB JPEG-like), with --aged
    OUT/aged_truth/   its restoration target: the page prepared as in the MDIM thesis (levels.py)
    OUT/meta/         panels, tones, aging parameters (JSON)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from ..imaging import imageio
from ..restore.levels import prepare_ground_truth
from ..synth.aging import age_page_with_params
from ..synth.page import MASK_KINDS, generate_page

HELP = "Write generated manga pages with ground truth, masks and aged versions to a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--count", type=int, default=4, help="number of pages (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first page; page i uses seed+i (default 0)")
    parser.add_argument("--size", default="A5", help="paper size A4/B5/A5/B6 or HxW in pixels (default A5)")
    parser.add_argument("--dpi", type=float, default=300.0, help="resolution (default 300)")
    parser.add_argument("--aged", action="store_true", help="also write aged scans and their restoration targets")
    parser.add_argument("--prefix", default="page_", help="file name prefix (default page_)")


def _size(text: str):
    if "x" in text.lower():
        h, w = text.lower().split("x", 1)
        return int(h), int(w)
    return text


def write_set(out, count: int, seed: int = 0, size="A5", dpi: float = 300.0, aged: bool = False,
              prefix: str = "page_") -> list[str]:
    """Generate ``count`` pages and write them under ``out``; returns the file names."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out)
    names = []
    for i in range(count):
        s = seed + i
        name = f"{prefix}{s:05d}.png"
        sp = generate_page(s, size=size, dpi=dpi)
        d = (dpi, dpi)
        imageio.write_image(_dir(out, "page") / name, sp.page, dpi=d)
        imageio.write_image(_dir(out, "clean") / name, sp.clean, dpi=d)
        for kind in MASK_KINDS:
            imageio.write_image(_dir(out, "masks", kind) / name, sp.masks[kind].astype(np.float32), dpi=d)
        imageio.write_image(_dir(out, "screentone") / name, sp.screentone.astype(np.float32), dpi=d)
        meta = dict(sp.metadata, panels=sp.panels, tones=sp.tones)
        if aged:
            rgb, params = age_page_with_params(sp.page, s, dpi=dpi, as_uint8=True)
            imageio.write_image(_dir(out, "aged") / name, rgb, dpi=d)
            imageio.write_image(_dir(out, "aged_truth") / name, prepare_ground_truth(sp.page), dpi=d)
            meta["aging"] = dataclasses.asdict(params)
        (_dir(out, "meta") / (Path(name).stem + ".json")).write_text(json.dumps(meta, indent=1))
        names.append(name)
    return names


def _dir(out: Path, *parts: str) -> Path:
    p = out.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        names = write_set(args.out, args.count, args.seed, _size(args.size), args.dpi, args.aged, args.prefix)
    except ValueError as exc:
        print(f"[MDIM] synth: {exc}", file=sys.stderr)
        return 1
    print(f"[MDIM] wrote {len(names)} pages to {args.out}")
    return 0
