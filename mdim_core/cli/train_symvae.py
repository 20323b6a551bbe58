"""``python -m mdim_core train-symvae --data DIR --vae VAE --out FILE``: train Symmetric VAE adapters.

DIR holds clean page scans (PNG, JPEG, TIFF, WebP; any size, grayscale or colour). Every step takes
random crops, ages them (yellowing, stains, grain, bleed-through, uneven light, JPEG ...) and teaches
the adapters to give back the page prepared as in the MDIM thesis. The adapter file FILE is what
MDIM Symmetric VAE Loader loads (put it in models/mdim) and what ``restore --adapters`` uses.
A checkpoint is written every ``--save-every`` steps: running the same command again continues.
Exit status: 0 done, 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..symvae.train import TrainConfig

    d = TrainConfig()
    p.add_argument("--data", required=True, help="folder of clean page scans (PNG/JPEG/TIFF/WebP, any size)")
    p.add_argument("--out", required=True, help="adapter file to write (.safetensors), e.g. models/mdim/page.safetensors")
    p.add_argument("--vae", required=True, help="base VAE: a diffusers AutoencoderKL folder or an SD VAE .safetensors")
    p.add_argument("--steps", type=int, default=d.steps, help="total optimisation steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="crops per step (default: %(default)s)")
    p.add_argument("--crop", type=int, default=d.crop, help="crop side in px, multiple of 8 (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--edge-weight", type=float, default=d.edge_weight, help="weight of the Sobel-gradient L1 term (default: %(default)s)")
    p.add_argument("--freq-weight", type=float, default=d.freq_weight, help="weight of the log-FFT-magnitude L1 term (default: %(default)s)")
    p.add_argument("--clean-fraction", type=float, default=d.clean_fraction, help="share of crops left un-aged (default: %(default)s)")
    p.add_argument("--mask-fraction", type=float, default=d.mask_fraction, help="share of crops with a gated hole (default: %(default)s)")
    p.add_argument("--dpi", type=float, default=d.dpi, help="resolution of the data, scales the aging effects (default: %(default)s)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="adapter widths per level (default: automatic)")
    p.add_argument("--seed", type=int, default=d.seed, help="data seed; a run is reproducible from it (default: %(default)s)")
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint interval in steps (default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUT with .ckpt.safetensors)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    p.add_argument("--max-pages", type=int, default=0, help="use at most this many pages, 0 = all (default: %(default)s)")
    p.add_argument("--train-decoder", action="store_true",
                   help="also fine-tune a copy of the decoder's full-resolution blocks (stored in the adapter file)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def read_pages(folder: str | Path, max_pages: int = 0) -> list:
    """The pages of ``folder`` in grayscale (float32 ``[H, W]``); unreadable files are skipped with a warning."""
    from ..imaging.imageio import read_page
    from ..restore.levels import to_grayscale
    from .batch import find_pages

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--data: {str(folder)!r} is not a folder")
    files = find_pages(folder)
    if max_pages:
        files = files[:max_pages]
    if not files:
        raise ValueError(f"--data: no page images (PNG/JPEG/TIFF/WebP) in {str(folder)!r}")
    pages = []
    for f in files:
        try:
            pages.append(to_grayscale(read_page(f).pixels))
        except ValueError as exc:
            logging.getLogger("MDIM").warning("[MDIM] skipping %s: %s", f.name, exc)
    if not pages:
        raise ValueError(f"--data: none of the {len(files)} images in {str(folder)!r} could be read")
    return pages


def run(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..symvae.base import load_base_vae
    from ..symvae.model import SymmetricVAE
    from ..symvae.train import TrainConfig, train

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    cfg = TrainConfig(
        steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, edge_weight=args.edge_weight,
        freq_weight=args.freq_weight, clean_fraction=args.clean_fraction, mask_fraction=args.mask_fraction,
        dpi=args.dpi, seed=args.seed, save_every=args.save_every, train_decoder=args.train_decoder,
    )
    device = resolve_device(args.device)
    pages = read_pages(args.data, args.max_pages)
    sym = SymmetricVAE(load_base_vae(args.vae), hidden=args.hidden)
    if not args.quiet:
        print(f"[MDIM] training Symmetric VAE adapters on {len(pages)} pages, {device}, "
              f"{sum(p.numel() for p in sym.parameters()):,} adapter parameters")
    summary = train(sym, pages, cfg, args.out, checkpoint=args.checkpoint, device=device, progress=not args.quiet,
                    extra_meta={"data": Path(args.data).name, "pages": len(pages)})
    print(f"[MDIM] wrote {args.out} (final loss {summary['final_loss']:.4f}, {summary['seconds']} s)")
    return 0
