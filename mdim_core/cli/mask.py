"""``python -m mdim_core mask PAGES... -o OUT``: one text mask per page, no model needed.

PAGES are page files, folders of pages and CBZ/ZIP archives. Every page gets ``OUT/<page>.png``
(its name with ``.png``; sub-folders and archive names kept): white = text to remove, black = keep,
at the page's own size. The masks suit ``restore --masks``, ``inpaint`` and any other tool.
Resumable like ``restore`` (manifest, bad pages skipped with a reason, atomic writes, full disk).
Exit status: 0 all pages done, 1 some failed, 2 bad arguments, 3 stopped early.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..textmask import TextMaskSettings
from . import clean, volume

MANIFEST = ".mdim_mask.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    clean.add_mask_arguments(parser)


def mask_job(job: volume.Job, settings: TextMaskSettings, detector: str | None):
    t0 = time.perf_counter()
    page, _, found = clean.page_mask(job, settings, detector)
    clean._write(job.target, found.mask.astype(np.float32), page)
    return time.perf_counter() - t0, {"blocks": len(found.blocks), "masked": round(float(found.mask.mean()), 5)}


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out_dir = Path(args.output)
    try:
        settings = clean.mask_settings(args)
        if args.detector and not Path(args.detector).is_file():
            raise ValueError(f"--detector: {args.detector!r} does not exist (an .onnx file)")
        if args.detector:
            clean._detector(args.detector)
        jobs = clean.jobs_for(args.pages, out_dir, args.recursive)
        key = clean.settings_key(mask=asdict(settings), detector=args.detector)
        report = volume.run_jobs(jobs, out_dir, key, mask_job, (settings, args.detector), manifest_name=MANIFEST,
                                 workers=args.workers, force=args.force, progress=not args.quiet, desc="mask")
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary("mask(s) written", args.output))
    report.print_problems(sys.stderr)
    return report.exit_code
