"""``python -m mdim_core eval OUTPUTS --truth TRUTH [--masks MASKS]``: score pages against ground truth.

Pairs files by name (the stem: ``page_01.png`` in OUTPUTS with ``page_01.*`` in TRUTH). A mask is
``MASKS/<stem>.*`` or ``MASKS/<stem>_mask.*`` (white = repainted). An optional screentone map
(``--screentone DIR``, same naming, white = screentone) restricts the tone-fidelity tiles; without
it the tiles where the truth shows a clear halftone peak count. Prints a table of every metric per
image and the mean over images (``nan`` entries are left out of the mean); ``--json FILE`` also
writes the numbers. Exit status 1 when a file cannot be paired or read, or a page is too large for
the memory free.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..evaluation.metrics import METRIC_NAMES, evaluate_pair
from ..imaging import checks, imageio

HELP = "Score a folder of output pages against ground truth (PSNR, SSIM, seams, screentone, ...)."

_FORMATS = {
    "psnr": "{:.2f}", "psnr_in": "{:.2f}", "psnr_out": "{:.2f}", "ssim": "{:.4f}", "ssim_in": "{:.4f}",
    "ssim_out": "{:.4f}", "max_abs_out": "{:.4f}", "paper_white": "{:.4f}", "tone_err": "{:.4f}",
    "period_err": "{:.3f}", "period_match": "{:.3f}", "seam_err": "{:.2e}", "seam_ratio": "{:.3f}",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outputs", help="folder of output pages (PNG, JPEG, TIFF or WebP)")
    parser.add_argument("--truth", required=True, help="folder of ground-truth pages with the same file names")
    parser.add_argument("--masks", help="folder of masks (<name>.png or <name>_mask.png; white = repainted)")
    parser.add_argument("--screentone", help="folder of screentone maps (white = screentone), optional")
    parser.add_argument("--tile", type=int, default=64, help="tile size in px for screentone fidelity (default 64)")
    parser.add_argument("--json", dest="json_path", help="also write the metrics to this JSON file")


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{what} folder {str(folder)!r} does not exist or is not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and imageio.is_page_file(p):
            out.setdefault(p.stem, p)
    return out


def _find(index: dict[str, Path], stem: str) -> Path | None:
    return index.get(stem) or index.get(f"{stem}_mask")


def _map(path: Path) -> np.ndarray:
    pix = imageio.read_image(path)
    return pix[..., :3].mean(axis=2) > 0.5


def mean_row(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over images, leaving out ``nan`` (``inf`` PSNR makes the mean ``inf``)."""
    mean: dict[str, float] = {}
    for k in METRIC_NAMES:
        vals = [r[k] for r in rows.values() if not math.isnan(r[k])]
        mean[k] = float(np.mean(vals)) if vals else float("nan")
    return mean


def format_table(rows: dict[str, dict[str, float]], mean: dict[str, float] | None = None,
                 first: str = "image") -> str:
    """A Markdown table: one row per image (and a ``mean`` row)."""
    cols = [first, *METRIC_NAMES]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    items = list(rows.items()) + ([("**mean**", mean)] if mean is not None else [])
    for name, r in items:
        cells = [name]
        for k in METRIC_NAMES:
            v = r[k]
            cells.append("nan" if math.isnan(v) else ("inf" if math.isinf(v) else _FORMATS[k].format(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_folders(outputs, truth, masks=None, screentone=None, tile: int = 64) -> dict[str, dict[str, float]]:
    """Metrics of every output page that has a truth page (by file stem)."""
    outs = _index(Path(outputs), "outputs")
    truths = _index(Path(truth), "truth")
    mask_idx = _index(Path(masks), "masks") if masks else None
    tone_idx = _index(Path(screentone), "screentone") if screentone else None
    if not outs:
        raise ValueError(f"outputs folder {str(outputs)!r} holds no PNG, JPEG, TIFF or WebP page")
    missing = [s for s in outs if s not in truths]
    if missing:
        raise ValueError(f"no ground truth in {str(truth)!r} for: {', '.join(missing[:10])}")
    rows: dict[str, dict[str, float]] = {}
    for stem, path in outs.items():
        out = imageio.read_image(path)
        ref = imageio.read_image(truths[stem])
        if out.shape[:2] != ref.shape[:2]:
            raise ValueError(f"{path.name}: output is {out.shape[1]}x{out.shape[0]} px but its truth "
                             f"{truths[stem].name} is {ref.shape[1]}x{ref.shape[0]} px")
        h, w, c = out.shape
        checks.require_memory(h * w * (32 + 4 * c), f"scoring {path.name} ({w}x{h} px)")  # measured: 29 + 4c
        mask = st = None
        if mask_idx is not None:
            mp = _find(mask_idx, stem)
            if mp is None:
                raise ValueError(f"no mask in {str(masks)!r} for {path.name} (expected {stem}.png or {stem}_mask.png)")
            mask = _map(mp)
            if mask.shape != out.shape[:2]:
                raise ValueError(f"mask {mp.name} is {mask.shape[1]}x{mask.shape[0]} px, its page {out.shape[1]}x{out.shape[0]}")
        if tone_idx is not None:
            tp = _find(tone_idx, stem)
            st = _map(tp) if tp is not None else None
        rows[path.name] = evaluate_pair(out, ref, mask, st, tile=tile)
    return rows


def run(args: argparse.Namespace) -> int:
    try:
        rows = evaluate_folders(args.outputs, args.truth, args.masks, args.screentone, tile=args.tile)
    except (ValueError, MemoryError) as exc:
        print(f"[MDIM] eval: {exc}", file=sys.stderr)
        return 1
    mean = mean_row(rows)
    print(format_table(rows, mean))
    if args.json_path:
        def clean(d):
            return {k: (None if math.isnan(v) else ("inf" if math.isinf(v) else v)) for k, v in d.items()}

        payload = {"images": {k: clean(v) for k, v in rows.items()}, "mean": clean(mean)}
        Path(args.json_path).write_text(json.dumps(payload, indent=2))
    return 0
