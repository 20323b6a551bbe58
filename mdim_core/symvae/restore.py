"""Old scan -> clean page with a Symmetric VAE: ``python -m mdim_core.symvae restore ...``.

:func:`restore_page` works on one numpy page of any size (tiled when large) and is what the
batch restoration command and the CLI call. The ComfyUI node calls ``SymmetricVAE.restore``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from .model import DEFAULT_OVERLAP, DEFAULT_TILE, SymmetricVAE


def restore_page(
    sym: SymmetricVAE,
    page: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    grayscale: bool = True,
) -> np.ndarray:
    """Restore one page: ``page`` float32 ``[H, W]`` or ``[H, W, C]`` in 0..1 (or uint8).

    Returns float32 ``[H, W]`` (``grayscale``) or ``[H, W, 3]`` in 0..1, same size. Pages larger
    than ``tile`` px are processed in overlapping tiles (``tile=0``: never tile).
    """
    if not isinstance(page, np.ndarray) or page.ndim not in (2, 3):
        raise ValueError(f"page: expected a numpy array [H, W] or [H, W, C], got {getattr(page, 'shape', type(page))}")
    x = page.astype(np.float32) / 255.0 if page.dtype == np.uint8 else page.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"page: expected 1, 3 or 4 channels, got {x.shape[-1]}")
    t = torch.from_numpy(np.ascontiguousarray(x[..., :3]))[None]
    with torch.no_grad():
        out = sym.restore(t, tile=tile, overlap=overlap)[0].numpy()
    return out.mean(axis=-1) if grayscale else out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="a page image or a folder of pages")
    p.add_argument("-o", "--output", required=True, help="output file (for one page) or folder")
    p.add_argument("--vae", required=True, help="base VAE: a diffusers AutoencoderKL folder or an SD VAE .safetensors")
    p.add_argument("--adapters", required=True, help="Symmetric VAE adapter file (.safetensors)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"tile size in px (default {DEFAULT_TILE}, 0 = whole page)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imaging.imageio import is_page_file, read_page, write_image
    from .base import load_base_vae
    from .weights import load_adapters

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    src = Path(args.input)
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.is_file() and is_page_file(f))
        out_dir = Path(args.output)
        targets = [out_dir / (f.stem + ".png") for f in files]
    elif src.is_file():
        files, targets = [src], [Path(args.output)]
    else:
        raise ValueError(f"input: {src} does not exist")
    vae = load_base_vae(args.vae).to(device)
    sym = SymmetricVAE(vae)
    load_adapters(sym, args.adapters)
    failures = 0
    for f, target in tqdm(list(zip(files, targets)), desc="restore", unit="page"):
        try:
            page = read_page(f)
            clean = restore_page(sym, page.pixels, tile=args.tile)
            os.makedirs(target.parent, exist_ok=True)
            write_image(target, clean, dpi=page.dpi)
        except ValueError as exc:
            failures += 1
            print(f"[MDIM] {f.name}: {exc}")
    print(f"[MDIM] restored {len(files) - failures} of {len(files)} pages")
    return 1 if failures else 0
