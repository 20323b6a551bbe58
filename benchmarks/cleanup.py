"""Scan cleanup benchmark: quality against the classical baselines, and speed/memory on 600-dpi pages.

    python benchmarks/cleanup.py                 # writes benchmarks/results/cleanup.md
    python benchmarks/cleanup.py --pages 3 --no-speed

Quality: generated manga pages (mdim_core.synth) aged by the aging simulator, each restored by
- auto-levels: the thesis levels straight on the scan (``levels.prepare_ground_truth``),
- background division: a classical flat-field, luma / large median of the page (computed at 1/8
  resolution, upscaled) then the thesis levels,
- background division with this pack's estimator (the fixtures baseline, if importable),
- ``cleanup.clean_page`` with its defaults, and a few of its options (ablations),
scored against the thesis-prepared clean page with ``metrics.evaluate_pair`` (PSNR, SSIM, paper
whiteness, screentone tone error and period match on the page's screentone areas).

Speed: one A4 page at 600 dpi (4961x7016, RGB), each method run in a fresh process: wall and CPU
seconds (best of the runs) and the peak memory above the loaded page. Then the whole command
(read, clean, write PNG) over 8 copies of the page with --workers 1 and 2. All side by side in one run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mdim_core.cli import batch  # noqa: E402
from mdim_core.evaluation.metrics import evaluate_pair  # noqa: E402
from mdim_core.restore import cleanup, levels  # noqa: E402
from mdim_core.synth import aging, generate_page  # noqa: E402

try:  # the fixtures' baseline (background division with this pack's estimator)
    from baselines import restore_background as fixtures_background  # noqa: E402
except Exception:  # noqa: BLE001 - optional: the benchmark has its own classical baselines
    fixtures_background = None


def auto_levels(aged: np.ndarray) -> np.ndarray:
    return levels.prepare_ground_truth(aged)


def median_division(aged: np.ndarray) -> np.ndarray:
    """Classical flat-field: luma divided by a large median background (a window of a quarter of the
    page, computed at 1/32 resolution), then the thesis levels."""
    gray = levels.to_grayscale(aged)
    h, w = gray.shape
    small = np.asarray(Image.fromarray(gray).resize((max(1, w // 32), max(1, h // 32)), Image.Resampling.BOX))
    size = max(3, int(round(max(small.shape) / 4)) | 1)
    bg_small = ndimage.median_filter(small, size=size, mode="nearest")
    bg = np.asarray(Image.fromarray(bg_small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    flat = np.clip(gray / np.maximum(bg, 1e-3), 0, 1)
    return levels.prepare_ground_truth(flat)


def ours(**opts):
    def run(aged: np.ndarray, dpi: float) -> np.ndarray:
        return cleanup.clean_page(aged, dpi=dpi, **opts)

    return run


BASELINES = {"auto-levels (thesis levels on the scan)": lambda a, d: auto_levels(a),
             "background division (median flat-field) + levels": lambda a, d: median_division(a)}
if fixtures_background is not None:
    BASELINES["background division (pack estimator, no sharpening) + levels"] = lambda a, d: fixtures_background(a)
OURS = {
    "**MDIM Scan Cleanup (defaults)**": ours(),
    "cleanup, gray=luma": ours(gray="luma"),
    "cleanup, gray=red": ours(gray="red"),
    "cleanup, sharpen=0": ours(sharpen=0.0),
    "cleanup + despeckle 16 + bleed-through 0.5": ours(despeckle=16, bleed_through=0.5),
}
COLUMNS = ("psnr", "ssim", "paper_white", "tone_err", "period_match")


def quality(pages: int, size, dpi: float, seed: int) -> tuple[str, dict]:
    methods = {**BASELINES, **OURS}
    scores = {name: [] for name in methods}
    times = {name: 0.0 for name in methods}
    for i in range(pages):
        sp = generate_page(seed + i, size=size, dpi=dpi, masks=False)
        aged = aging.age_page(sp.page, seed=seed + i, dpi=dpi)
        truth = levels.prepare_ground_truth(sp.page)
        tone = sp.screentone & ~sp.removable
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn(aged, dpi)
            times[name] += time.perf_counter() - t0
            scores[name].append(evaluate_pair(out, truth, None, tone))
    lines = ["| method | " + " | ".join(COLUMNS) + " | s/page |", "|" + "---|" * (len(COLUMNS) + 2)]
    numbers = {}
    for name in methods:
        row = {k: float(np.nanmean([s[k] for s in scores[name]])) for k in COLUMNS}
        row["s/page"] = times[name] / pages
        numbers[name] = row
        cells = [f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", f"{row['paper_white']:.4f}", f"{row['tone_err']:.4f}",
                 f"{row['period_match']:.3f}", f"{row['s/page']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


# ---------------------------------------------------------------------------------------------
# speed


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _speed_child(path: str, method: str, repeats: int, queue) -> None:
    aged = np.load(path)
    base = _peak_rss_mib()
    fn = {**BASELINES, **OURS}[method]
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(aged, 600.0)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    queue.put((min(walls), min(cpus), _peak_rss_mib() - base))


def speed(repeats: int, seed: int) -> tuple[str, dict]:
    sp = generate_page(seed, size="A4", dpi=600, masks=False)
    aged = aging.age_page(sp.page, seed=seed, dpi=600, as_uint8=True)
    h, w = aged.shape[:2]
    ctx = mp.get_context("spawn")
    lines = [f"One A4 page at 600 dpi ({w}x{h} px, RGB 8-bit, {aged.nbytes / 2**20:.0f} MiB), each method in a fresh process, best of {repeats}:",
             "", "| method | wall s | CPU s | peak memory above the loaded page (MiB) |", "|---|---|---|---|"]
    numbers = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "page.npy")
        np.save(path, aged)
        methods = [*BASELINES, "**MDIM Scan Cleanup (defaults)**", "cleanup + despeckle 16 + bleed-through 0.5"]
        for name in methods:
            q = ctx.Queue()
            p = ctx.Process(target=_speed_child, args=(path, name, repeats, q))
            p.start()
            wall, cpu, mem = q.get()
            p.join()
            numbers[name] = dict(wall=wall, cpu=cpu, mem_mib=mem)
            lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {mem:.0f} |")
        # the whole command: read, clean, write PNG, 4 pages, 1 and 2 worker processes
        src = Path(tmp) / "volume"
        src.mkdir()
        Image.fromarray(aged).save(src / "p1.png", dpi=(600, 600), compress_level=1)
        for k in range(2, 9):
            os.link(src / "p1.png", src / f"p{k}.png")
        lines += ["", "The whole command (read PNG, clean, write PNG) on 8 copies of the page:", "",
                  "| workers | s/page (wall) |", "|---|---|"]
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}"
            t0 = time.perf_counter()
            report = batch.run_batch(src, out, workers=workers, progress=False)
            per_page = (time.perf_counter() - t0) / len(report.done)
            numbers[f"command, {workers} worker(s)"] = dict(wall_per_page=per_page)
            lines.append(f"| {workers} | {per_page:.2f} |")
    return "\n".join(lines), numbers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=6, help="generated pages for the quality table")
    parser.add_argument("--size", default="A5", help="page size of the quality set (paper name)")
    parser.add_argument("--dpi", type=float, default=300.0, help="resolution of the quality set")
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (best is reported)")
    parser.add_argument("--no-speed", action="store_true", help="skip the 600-dpi speed/memory part")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cleanup.md"))
    args = parser.parse_args(argv)

    parts = ["# Scan cleanup benchmark", "",
             f"`python benchmarks/cleanup.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
             f"(shared with other work while measured: CPU seconds are the steadier number).", ""]
    table, _ = quality(args.pages, args.size, args.dpi, args.seed)
    h, w = generate_page(args.seed, size=args.size, dpi=args.dpi, masks=False).page.shape
    parts += [f"## Quality: {args.pages} generated {args.size} pages at {args.dpi:g} dpi ({w}x{h}), aged with random "
              f"strengths (seeds {args.seed}..{args.seed + args.pages - 1})", "",
              "Truth: the clean page with the thesis levels. Paper whiteness: share of the truth's white pixels "
              "that stay >= 250. tone_err: mean absolute error of the low-passed tone in screentone tiles; "
              "period_match: share of those tiles whose halftone period survives.", "", table, ""]
    if not args.no_speed:
        text, _ = speed(args.repeats, args.seed)
        parts += ["## Speed and memory at 600 dpi", "", text, ""]
    report = "\n".join(parts)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
