"""``python -m mdim_core clean PAGES... -o OUT``: raw pages to text-free pages, no hand work.

PAGES are page files, folders of pages and CBZ/ZIP archives. For every page: the automatic text
mask (``mdim_core.textmask``: text in bubbles and free text; ``--kinds`` adds SFX), then flat fill
(regions inside flat paper or ink are filled exactly, no model), then, with ``--model``, SGIM
inpainting of the regions that were not flat. Without a model those regions stay as they are and
are listed in ``OUT/clean_report.json`` (the command says so at the end).

Outputs: ``OUT/<page>.png`` (sub-folders and archive names kept), with ``--save-masks`` the mask
``OUT/masks/<page>.png`` (white = removed), with ``--psd`` a layered ``OUT/psd/<page>.psd``
(original, cleaned, mask) for typesetters. Resumable like ``restore``: a manifest records finished
pages, re-running skips them, bad pages are skipped with a reason, writes are atomic, a full disk
stops the run (exit 3). Exit status: 0 all pages done, 1 some failed, 2 bad arguments, 3 stopped early.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..imaging import imageio
from ..restore import cleanup
from ..textmask import TextMaskSettings, find_text
from . import volume
from .batch import claim_output

log = logging.getLogger("MDIM")

MANIFEST = ".mdim_clean.json"
REPORT = "clean_report.json"
KINDS = ("text", "sfx")

_CACHE: dict = {}  # per process: the loaded detector and SGIM host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_mask_arguments(parser)
    parser.add_argument("--model", default=None, help="local diffusers Stable Diffusion folder: SGIM repaints the regions flat fill cannot")
    parser.add_argument("--save-masks", action="store_true", help="also write each page's mask to OUT/masks/ (white = removed)")
    parser.add_argument("--psd", action="store_true", help="also write a layered PSD per page to OUT/psd/ (original, cleaned, mask; needs psd-tools)")
    parser.add_argument("--no-flat-fill", action="store_true", help="send every region to the model, none filled flat")
    parser.add_argument("--scan-cleanup", action="store_true", help="clean old scans first (yellowing, stains, levels: as `restore`)")
    m = parser.add_argument_group("SGIM (with --model)")
    m.add_argument("--prompt", default="manga, manga style, comic, monochrome", help="positive prompt")
    m.add_argument("--negative", default="color, blurry, lowres, jpeg artifacts, watermark, text", help="negative prompt")
    m.add_argument("--steps", type=int, default=30, help="structure-pass steps; the refinement runs half as many (default: %(default)s)")
    m.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    m.add_argument("--device", default="auto", help="torch device (default: %(default)s)")


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    d = TextMaskSettings()
    parser.add_argument("pages", nargs="+", help="page files, folders of pages, CBZ/ZIP archives")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    parser.add_argument("--kinds", default="text", help="what to remove: text (bubbles and free text), sfx, or text,sfx (default: %(default)s)")
    parser.add_argument("--grow", type=int, default=d.grow, help="page px added around the text found (default: %(default)s)")
    parser.add_argument("--min-size", type=int, default=d.min_size, help="smallest text block kept, px; 0 = automatic (default: %(default)s)")
    parser.add_argument("--detector", default=None, help="an ONNX text/bubble detector file (needs onnxruntime): its text boxes are added")
    parser.add_argument("--recursive", action="store_true", help="also the pages in sub-folders")
    parser.add_argument("--workers", type=int, default=1, help="pages at once, each in its own process (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="redo pages already finished by an earlier run")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--kinds: expected a comma list of {', '.join(KINDS)}, got {text!r}")
    return kinds


def mask_settings(args: argparse.Namespace) -> TextMaskSettings:
    kinds = parse_kinds(args.kinds)
    return TextMaskSettings(bubbles="text" in kinds, free_text="text" in kinds, sfx="sfx" in kinds, grow=args.grow,
                            min_size=args.min_size)


def jobs_for(pages: list[str], out_dir: Path, recursive: bool, suffix: str = ".png") -> list[volume.Job]:
    """One job per page; outputs named after the page (``suffix`` replaces its extension)."""
    items = volume.collect(pages, recursive)
    if not items:
        raise ValueError("pages: no page found (PNG, JPEG, TIFF, WebP files, folders of them or CBZ/ZIP archives)")
    jobs, seen = [], {}
    inputs = {p.resolve() for _, p, _ in items}
    for rel, path, member in items:
        target = out_dir / Path(rel).with_suffix(suffix)
        claim_output(target, rel, inputs, seen)
        jobs.append(volume.Job(rel, path, target, member))
    return jobs


def _detector(path: str | None):
    if not path:
        return None
    if ("detector", path) not in _CACHE:
        from ..textmask.detector import load_detector

        _CACHE[("detector", path)] = load_detector(path)
    return _CACHE[("detector", path)]


def page_mask(job: volume.Job, settings: TextMaskSettings, detector: str | None, scan_cleanup: bool = False):
    """``(page, its pixels as the mask saw them, result)`` of one job."""
    page = volume.read_job_page(job)
    pixels = page.pixels
    if scan_cleanup:
        dpi = float(page.dpi[0]) if page.dpi else 0.0
        pixels = cleanup.clean_page(pixels, cleanup.CleanupSettings(dpi=dpi), name=job.rel)[..., None]
    return page, pixels, find_text(pixels, settings, detector=_detector(detector))


def _write(target: Path, image, page: imageio.Page) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        imageio.write_image(target, image, dpi=page.dpi)
    except OSError as exc:
        raise volume.disk_full(exc, target) from exc


def _float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / np.float32(255.0) if pixels.dtype == np.uint8 else pixels.astype(np.float32)


def _host(model: str, options: dict):
    key = ("host", model, json.dumps(options, sort_keys=True))
    if key not in _CACHE:
        import torch

        from ..inpaint import diffusers_host

        device = options["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        _CACHE[key] = diffusers_host.load_host(model, prompt=options["prompt"], negative=options["negative"], device=device)
    return _CACHE[key]


def _sgim(image: np.ndarray, mask: np.ndarray, model: str, options: dict) -> np.ndarray:
    import torch

    from ..inpaint import sgim

    rgb = image if image.shape[2] == 3 else np.repeat(image[..., :1], 3, axis=2)
    strength = sgim.SGIMConfig.fri_strength
    config = sgim.SGIMConfig(steps=options["steps"], fri_steps=max(1, round(options["steps"] * strength)))
    result = sgim.inpaint(_host(model, options), torch.from_numpy(np.ascontiguousarray(rgb))[None],
                          torch.from_numpy(mask)[None], seed=options["seed"], config=config)
    out = result.image[0].numpy()
    return out if image.shape[2] == 3 else out.mean(axis=-1, keepdims=True)


def write_psd(path: Path, original: np.ndarray, cleaned: np.ndarray, mask: np.ndarray) -> None:
    """A layered PSD: original, cleaned (visible, on top of it), mask (hidden, white = removed)."""
    try:
        from psd_tools import PSDImage
        from psd_tools.api.layers import PixelLayer
    except ImportError:
        raise ValueError("--psd needs psd-tools: pip install psd-tools") from None
    from PIL import Image

    def rgb8(a):
        a = a if a.shape[-1] == 3 else np.repeat(a[..., :1], 3, axis=-1)
        return Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8) if a.dtype != np.uint8 else a)

    h, w = mask.shape
    psd = PSDImage.new("RGB", (w, h))
    for name, im, visible in (("original", rgb8(original), True), ("cleaned", rgb8(cleaned), True),
                              ("mask", rgb8(np.repeat(mask[..., None].astype(np.float32), 3, axis=-1)), False)):
        layer = PixelLayer.frompil(im, psd, name)
        layer.visible = visible
        psd.append(layer)
    buf = io.BytesIO()
    psd.save(buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        imageio.write_bytes_atomic(path, buf.getvalue())
    except OSError as exc:
        raise volume.disk_full(exc, path) from exc


def clean_job(job: volume.Job, out_dir: Path, settings: TextMaskSettings, detector: str | None, model: str | None,
              options: dict, flat: bool, save_masks: bool, psd: bool, scan_cleanup: bool):
    """Clean one page; returns ``(seconds, summary)``."""
    import torch

    from ..inpaint.flatfill import flat_fill

    t0 = time.perf_counter()
    page, pixels, found = page_mask(job, settings, detector, scan_cleanup)
    original = _float(pixels)
    mask = found.mask
    image = original
    filled, remaining_boxes = 0, []
    remaining = mask
    if mask.any():
        if flat:
            res = flat_fill(torch.from_numpy(original)[None], torch.from_numpy(mask)[None])
            image = res.image[0].numpy()
            remaining = res.remaining[0].numpy()
            filled = len(res.regions)
        if remaining.any():
            from ..imaging import masks as mdim_masks

            remaining_boxes = [list(b) for b in mdim_masks.regions(remaining, cell=4)]
            if model:
                image = _sgim(image, remaining.astype(np.float32), model, options)
    _write(job.target, image, page)
    rel_png = Path(job.rel).with_suffix(".png")
    if save_masks:
        _write(out_dir / "masks" / rel_png, mask.astype(np.float32), page)
    if psd:
        write_psd(out_dir / "psd" / rel_png.with_suffix(".psd"), original, image, mask)
    summary = {"blocks": len(found.blocks), "flat": filled, "left": 0 if model else len(remaining_boxes),
               "repainted": len(remaining_boxes) if model else 0}
    if remaining_boxes and not model:
        summary["regions_left"] = remaining_boxes
    return time.perf_counter() - t0, summary


def settings_key(**parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _report(out_dir: Path, report: volume.BatchReport) -> None:
    data = {"pages": report.results, "failed": dict(report.failed)}
    try:
        imageio.write_bytes_atomic(out_dir / REPORT, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError as exc:
        log.warning("[MDIM] could not write %s: %s", out_dir / REPORT, exc)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out_dir = Path(args.output)
    try:
        settings = mask_settings(args)
        if args.model and not Path(args.model).is_dir():
            raise ValueError(f"--model: {args.model!r} is not a folder (a local diffusers Stable Diffusion model)")
        if args.detector and not Path(args.detector).is_file():
            raise ValueError(f"--detector: {args.detector!r} does not exist (an .onnx file)")
        if args.psd:
            try:
                import psd_tools  # noqa: F401
            except ImportError:
                raise ValueError("--psd needs psd-tools: pip install psd-tools") from None
        if args.detector:
            _detector(args.detector)  # a missing onnxruntime or a bad file is reported before any page
        options = dict(prompt=args.prompt, negative=args.negative, steps=args.steps, seed=args.seed, device=args.device)
        jobs = jobs_for(args.pages, out_dir, args.recursive)
        key = settings_key(mask=asdict(settings), detector=args.detector, model=args.model,
                           options=options if args.model else None, flat=not args.no_flat_fill,
                           masks=args.save_masks, psd=args.psd, scan_cleanup=args.scan_cleanup)
        report = volume.run_jobs(
            jobs, out_dir, key, clean_job,
            (out_dir, settings, args.detector, args.model, options, not args.no_flat_fill, args.save_masks, args.psd,
             args.scan_cleanup),
            manifest_name=MANIFEST, workers=args.workers, force=args.force, progress=not args.quiet, desc="clean",
        )
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(out_dir, report)
    pages = {**report.results}
    flat = sum(r.get("flat", 0) for r in pages.values())
    left = {rel: r["left"] for rel, r in pages.items() if r.get("left")}
    print(report.summary("page(s) cleaned", args.output, f"; {flat} region(s) filled flat without a model"))
    if left:
        print(f"{sum(left.values())} region(s) on {len(left)} page(s) were not flat and stay as they are (no --model given); "
              f"they are listed in {out_dir / REPORT}. Give --model DIR to repaint them with SGIM.")
    report.print_problems(sys.stderr)
    return report.exit_code
