"""``python -m mdim_core restore IN -o OUT``: clean a scanned page or a whole volume.

IN is a page or a folder of pages (PNG, JPEG, TIFF, WebP; 8/16-bit; grayscale, RGB, RGBA, CMYK).
Every page is cleaned (yellowing, uneven light and stains divided out, scanner blur undone, the MDIM
thesis levels) and written to OUT with its name and DPI. Needs no model. Re-running the same
command skips finished pages; a bad page is reported and skipped. With model files, the Symmetric
VAE restore (--vae + --adapters; with --no-cleanup on the scans as they are) and SGIM text removal
(--model + --masks) follow the cleanup.

Exit status: 0 all pages done, 1 some pages failed (listed), 2 bad arguments, 3 stopped early
(full disk: free space and re-run to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..restore import cleanup
from . import batch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = cleanup.CleanupSettings()
    parser.add_argument("input", help="a page image or a folder of pages")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if needed; pages keep their names)")
    parser.add_argument("--workers", type=int, default=1, help="pages cleaned at once, each in its own process (default: %(default)s)")
    parser.add_argument("--format", choices=batch.OUTPUT_FORMATS, default="same", help="output format (default: each page's own)")
    parser.add_argument("--recursive", action="store_true", help="also the pages in sub-folders (the folder structure is kept)")
    parser.add_argument("--force", action="store_true", help="redo pages already finished by an earlier run")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = parser.add_argument_group("cleanup")
    g.add_argument("--gray", choices=cleanup.GRAY_METHODS, default=d.gray, help="grayscale conversion (default: %(default)s = most ink/paper contrast)")
    g.add_argument("--no-background", action="store_true", help="do not divide out the paper background")
    g.add_argument("--levels", choices=cleanup.LEVELS_MODES, default=d.levels,
                   help="thesis = auto-contrast then black..white point; points = black..white point only; off (default: %(default)s)")
    g.add_argument("--black-point", type=float, default=d.black_point, help="level mapped to black, 0..255 (default: %(default)s)")
    g.add_argument("--white-point", type=float, default=d.white_point, help="level mapped to white, 0..255 (default: %(default)s)")
    g.add_argument("--sharpen", type=float, default=d.sharpen,
                   help="unsharp amount against scanner blur on a blurry scan (sharper scans get less), 0 = off (default: %(default)s)")
    g.add_argument("--fixed-sharpen", action="store_true", help="use --sharpen as is, not scaled by the blur measured on each page")
    g.add_argument("--sharpen-radius", type=float, default=d.sharpen_radius, help="its sigma in px, 0 = dpi/300 (default: %(default)s)")
    g.add_argument("--despeckle", type=int, default=d.despeckle, help="remove isolated specks up to this area in px, 0 = off (default: %(default)s)")
    g.add_argument("--bleed-through", type=float, default=d.bleed_through, help="fade faint show-through, 0..1, 0 = off (default: %(default)s)")
    g.add_argument("--deskew", action="store_true", help="straighten skewed pages")
    g.add_argument("--max-skew", type=float, default=d.max_skew, help="largest skew searched, degrees (default: %(default)s)")
    m = parser.add_argument_group("model steps (optional)")
    m.add_argument("--vae", default=None, help="base VAE for the Symmetric VAE restore (diffusers folder or .safetensors)")
    m.add_argument("--adapters", default=None, help="Symmetric VAE adapter file (.safetensors)")
    m.add_argument("--tile", type=int, default=512, help="Symmetric VAE tile size in px (default: %(default)s)")
    m.add_argument("--no-cleanup", action="store_true",
                   help="with --vae/--adapters: restore the scans as they are, without the classical cleanup first")
    m.add_argument("--model", default=None, help="local diffusers Stable Diffusion folder for SGIM text removal")
    m.add_argument("--masks", default=None, help="folder of masks named like the pages (white = remove text)")
    m.add_argument("--seed", type=int, default=0, help="SGIM seed (default: %(default)s)")
    m.add_argument("--sgim-steps", type=int, default=30, help="SGIM structure-pass steps; the refinement runs half as many, over the second half of the schedule (default: %(default)s)")
    m.add_argument("--sgi-max-side", type=int, default=1024, help="SGIM structure-pass longest side (default: %(default)s)")
    m.add_argument("--device", default="auto", help="torch device for the model steps (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    settings = cleanup.CleanupSettings(
        gray=args.gray, background=not args.no_background, levels=args.levels,
        black_point=args.black_point, white_point=args.white_point, sharpen=args.sharpen,
        adaptive_sharpen=not args.fixed_sharpen,
        sharpen_radius=args.sharpen_radius, despeckle=args.despeckle, bleed_through=args.bleed_through,
        deskew=args.deskew, max_skew=args.max_skew,
    )
    steps = None
    if args.vae or args.adapters or args.model or args.masks or args.no_cleanup:
        steps = batch.ModelSteps(vae=args.vae, adapters=args.adapters, tile=args.tile, model=args.model,
                                 cleanup=not args.no_cleanup,
                                 masks=args.masks, seed=args.seed, device=args.device, steps=args.sgim_steps,
                                 sgim_options=(("sgi_max_side", args.sgi_max_side),))
    report = batch.run_batch(args.input, args.output, settings, workers=args.workers, fmt=args.format,
                             recursive=args.recursive, force=args.force, steps=steps, progress=not args.quiet)
    print(report.summary("page(s) restored", args.output))
    report.print_problems(sys.stderr)
    return report.exit_code
