"""``python -m mdim_core lama-fill PAGES --masks MASKS --model FILE -o OUT``: LaMa fills of pages.

Fills what each mask marks (white = fill) with a LaMa network (big-lama or a fine-tune; .safetensors,
.pth/.ckpt or TorchScript .pt, read without running code from the file), crop by crop around each
mask region at LaMa's working size (see ``mdim_core.inpaint.lama``). Pixels outside the mask are
written back unchanged; each page keeps its name, DPI and bit depth.

PAGES is a page or a folder of pages; MASKS a mask file (for one page) or a folder of masks named
like the pages (``<name>.*`` or ``<name>_mask.*``). OUT is a folder, or a file name for one page.
With ``python -m mdim_core synth`` and ``eval`` this compares LaMa with other fills on generated pages::

    python -m mdim_core synth set --count 4
    python -m mdim_core lama-fill set/page --masks set/masks/sfx --model big-lama.safetensors -o out/lama
    python -m mdim_core eval out/lama --truth set/clean --masks set/masks/sfx

Exit status: 0 done, 1 a page or mask could not be paired or read, 2 bad arguments or model file.
Needs the ``spandrel`` package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "Fill masked areas of pages with a LaMa model (crops at LaMa's working size; exact outside the mask)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..inpaint.lama import PRECISIONS, LamaConfig

    d = LamaConfig()
    parser.add_argument("pages", help="a page image or a folder of pages")
    parser.add_argument("--masks", required=True, help="mask file (one page) or folder of masks named like the pages (white = fill)")
    parser.add_argument("--model", required=True, help="LaMa weights: .safetensors, .pth/.ckpt or TorchScript .pt (e.g. big-lama.pt)")
    parser.add_argument("-o", "--output", required=True, help="output folder (pages keep their names), or a file for one page")
    parser.add_argument("--max-side", type=int, default=d.max_side, help="crops with a longer side are shrunk to it for LaMa, 0 = never (default: %(default)s)")
    parser.add_argument("--context-margin", type=int, default=d.context_margin, help="context pixels around each mask region (default: %(default)s)")
    parser.add_argument("--grow-mask", type=int, default=d.grow_mask, help="grow the masks by N pixels (default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="fp32 or bf16 (fp16 gives black fills; default: %(default)s)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def find_mask(masks: Path, page: Path) -> Path | None:
    """``masks`` itself when it is a file, else ``masks/<page stem>.*`` or ``masks/<page stem>_mask.*``."""
    from ..imaging import imageio

    if masks.is_file():
        return masks
    for stem in (page.stem, page.stem + "_mask"):
        for cand in sorted(masks.glob(stem + ".*")):
            if cand.is_file() and imageio.is_page_file(cand):
                return cand
    return None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        jobs = _jobs(args)
    except ValueError as exc:
        print(f"[MDIM] lama-fill: {exc}", file=sys.stderr)
        return 1 if "no mask" in str(exc) or "does not exist" in str(exc) else 2
    try:
        model, config = _load(args)
    except (ValueError, ImportError) as exc:
        print(f"[MDIM] lama-fill: {exc}", file=sys.stderr)
        return 2
    return _fill_all(jobs, model, config, quiet=args.quiet)


def _jobs(args) -> list[tuple[Path, Path, Path]]:
    """(page, mask, output) triples; every page must have a mask."""
    from ..imaging import imageio
    from . import batch

    src, masks, out = Path(args.pages), Path(args.masks), Path(args.output)
    pages = batch.find_pages(src)
    if not pages:
        raise ValueError(f"pages: {str(src)!r} holds no PNG, JPEG, TIFF or WebP page")
    if not masks.exists():
        raise ValueError(f"masks: {str(masks)!r} does not exist")
    if masks.is_file() and len(pages) > 1:
        raise ValueError(f"masks: one mask file for {len(pages)} pages; give a folder of masks named like the pages")
    pairs = [(p, find_mask(masks, p)) for p in pages]
    missing = [p.name for p, m in pairs if m is None]
    if missing:
        raise ValueError(f"no mask in {str(masks)!r} for: {', '.join(missing[:10])} (expected <name>.png or <name>_mask.png)")
    if src.is_file() and imageio.is_page_file(out):
        if out.resolve() == src.resolve():
            raise ValueError("output: would overwrite the input page; choose another file")
        out.parent.mkdir(parents=True, exist_ok=True)
        return [(pairs[0][0], pairs[0][1], out)]
    batch.check_writable(out)
    targets = dict(batch.plan_outputs(pages, src, out))
    return [(p, m, targets[p]) for p, m in pairs]


def _load(args):
    from ..device import resolve_device
    from ..inpaint import lama

    config = lama.LamaConfig(max_side=args.max_side, context_margin=args.context_margin, grow_mask=args.grow_mask,
                             precision=args.precision)  # fmt: skip
    model = lama.load_lama(args.model)
    model.module.to(resolve_device(args.device))
    if args.precision == "bf16" and model.device.type == "cpu":
        logging.getLogger("MDIM").warning("[MDIM] lama-fill: bf16 on the CPU is usually slower than fp32")
    return model, config


def _fill_all(jobs, model, config, quiet: bool) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..imaging import imageio
    from ..inpaint import lama

    failed = []
    calls = 0
    for page_path, mask_path, target in tqdm(jobs, unit="page", desc="LaMa", disable=quiet, dynamic_ncols=True):
        try:
            page = imageio.read_page(page_path)
            mask = imageio.read_image(mask_path)[..., :3].mean(axis=-1)
        except (ValueError, OSError) as exc:
            failed.append(f"{page_path.name}: {exc}")
            continue
        if mask.shape != page.pixels.shape[:2]:
            failed.append(f"{page_path.name}: its mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} px, "
                          f"the page {page.pixels.shape[1]}x{page.pixels.shape[0]}")
            continue
        image = torch.from_numpy(np.ascontiguousarray(page.pixels))[None]
        result = lama.fill(model, image, torch.from_numpy(mask.astype(np.float32))[None], config)
        calls += result.model_calls
        imageio.write_image(target, result.image[0].numpy(), dpi=page.dpi, bit_depth=page.bit_depth)
    for line in failed:
        print(f"[MDIM] lama-fill: {line}", file=sys.stderr)
    if not quiet:
        print(f"[MDIM] lama-fill: {len(jobs) - len(failed)} page(s) filled with {calls} LaMa crop(s)")
    return 1 if failed else 0
