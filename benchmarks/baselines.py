"""Classical baselines on a fixed generated set: the numbers the diffusion pipeline must beat.

Inpainting: OpenCV Telea and Navier-Stokes (plus "input" = nothing done and "white" = fill the mask
with paper white) on every mask kind of :mod:`mdim_core.synth`: ``text`` and ``sfx`` remove the
page's bubble and free text / SFX (truth: the clean page); ``wide``, ``box`` and ``small`` fill
random holes (given as mid grey) in the clean page (truth: the clean page). Outside the mask every output keeps the input's pixels.

Restoration: each page is aged (:mod:`mdim_core.synth.aging`) and restored by auto-levels (the thesis'
levels applied to the scan directly), background division + levels (:mod:`mdim_core.restore.cleanup`) and
the full classical cleanup; the truth is the page prepared as in the thesis (:mod:`mdim_core.restore.levels`).

LaMa (optional, needs spandrel): ``--lama FILE`` adds a row for your LaMa weights (big-lama or a fine-tune,
filled crop by crop with :mod:`mdim_core.inpaint.lama`'s defaults). ``--lama random`` runs the same
network with random weights: its pixels mean nothing, so it reports only the time and the crop geometry
(how many crops, which share of the mask is filled at full resolution, at what scale, against squashing
the page to 512 px); quality numbers need real weights.

Every metric of :func:`mdim_core.evaluation.metrics.evaluate_pair` is averaged over the pages (``nan`` left out),
with the time per page. Run from the repository root::

    python benchmarks/baselines.py            # 6 pages of 1024x768 px at 300 dpi, ~a minute
    python benchmarks/baselines.py --pages 2 --out benchmarks/results/baselines.md
    python benchmarks/baselines.py --pages 1 --images docs/images   # also the README pictures
    python benchmarks/baselines.py --lama big-lama.safetensors     # with your LaMa weights
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402  (test/benchmark dependency: opencv-python-headless)

from mdim_core.cli.evaluate import format_table, mean_row  # noqa: E402
from mdim_core.evaluation.metrics import evaluate_pair  # noqa: E402
from mdim_core.restore import cleanup  # noqa: E402
from mdim_core.restore.levels import prepare_ground_truth, to_grayscale  # noqa: E402
from mdim_core.synth import MASK_KINDS, generate_page  # noqa: E402
from mdim_core.synth.aging import age_page  # noqa: E402


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def inpaint_cv2(method: int, radius: int):
    def run(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = cv2.inpaint(_u8(img), mask.astype(np.uint8) * 255, radius, method).astype(np.float32) / 255.0
        return np.where(mask, out, img)  # outside the mask: the input, bit for bit

    return run


def inpaint_white(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.float32(1.0), img)


def inpaint_none(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return img


INPAINTERS = {
    "input (nothing done)": inpaint_none,
    "white fill": inpaint_white,
    "OpenCV Telea r=3": inpaint_cv2(cv2.INPAINT_TELEA, 3),
    "OpenCV Navier-Stokes r=3": inpaint_cv2(cv2.INPAINT_NS, 3),
}


def restore_gray(aged: np.ndarray) -> np.ndarray:
    return to_grayscale(aged)


def restore_levels(aged: np.ndarray) -> np.ndarray:
    return prepare_ground_truth(aged)


def restore_background(aged: np.ndarray) -> np.ndarray:
    gray = cleanup.to_gray(aged, "luma")
    flat = cleanup.divide_background(gray, cleanup.estimate_background(gray))
    return cleanup.apply_levels(flat, "thesis")


def restore_cleanup(aged: np.ndarray) -> np.ndarray:
    return cleanup.clean_page(aged)


RESTORERS = {
    "input (grayscale)": restore_gray,
    "auto-levels (thesis levels)": restore_levels,
    "background division + levels": restore_background,
    "cleanup.clean_page defaults": restore_cleanup,
}


def lama_inpainter(model, config):
    """A LaMa fill of ``[H, W]`` pages (crops at LaMa's working size, exact outside the mask)."""
    import torch

    from mdim_core.inpaint import lama

    def run(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = lama.fill(model, torch.from_numpy(img)[None, ..., None], torch.from_numpy(mask)[None], config)
        return out.image[0, ..., 0].numpy()

    return run


def load_lama(spec: str):
    """``(name, model)``: the user's LaMa file, or ``"random"``: the network with random weights (timing only)."""
    from mdim_core.inpaint import lama

    if spec == "random":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from lama_nets import random_lama

        return "LaMa (random weights)", lama.LamaModel(random_lama(0), name="random")
    return f"LaMa ({Path(spec).name})", lama.load_lama(spec)


def crop_geometry(mask: np.ndarray, config) -> dict[str, float]:
    """How the crop strategy fills a mask: crops, share of mask pixels at full resolution, the mean linear
    scale the mask pixels are filled at, model pixels; and the scale and pixels of squashing the page."""
    from mdim_core.inpaint import lama

    p = lama.plan(mask, config)
    own = np.where(mask, p.owners((0, 0, *mask.shape)), -1)
    total = max(1, int(mask.sum()))
    full = scale = 0.0
    for c in p.crops:
        n = int((own == c.index).sum())
        s = c.size[0] / (c.box[2] - c.box[0])
        scale += n * s
        full += n * (not c.shrunk)
    h, w = mask.shape
    squash = config.max_side / max(h, w)
    return dict(crops=len(p.crops), full_res=full / total, scale=scale / total,
                model_px=sum(c.padded[0] * c.padded[1] for c in p.crops), squash_scale=squash,
                squash_px=round(h * squash) * round(w * squash))


def run(pages: int, size, dpi: float, seed: int, lama_spec: str | None = None) -> tuple[str, dict]:
    inpainters = dict(INPAINTERS)
    lama_timing = None
    config = None
    if lama_spec:
        from mdim_core.inpaint import lama

        config = lama.LamaConfig()
        name, model = load_lama(lama_spec)
        if lama_spec == "random":
            lama_timing = (name, lama_inpainter(model, config))
        else:
            inpainters[name] = lama_inpainter(model, config)
    inp: dict[str, dict[str, dict]] = {kind: {name: {} for name in inpainters} for kind in MASK_KINDS}
    inp_time: dict[str, dict[str, float]] = {kind: {name: 0.0 for name in inpainters} for kind in MASK_KINDS}
    geometry: dict[str, list[dict]] = {kind: [] for kind in MASK_KINDS}
    random_time: dict[str, float | None] = {kind: None for kind in MASK_KINDS}  # None: no such mask on page 1
    res: dict[str, dict] = {name: {} for name in RESTORERS}
    res_time = {name: 0.0 for name in RESTORERS}
    for i in range(pages):
        sp = generate_page(seed + i, size=size, dpi=dpi)
        tag = f"page {seed + i}"
        for kind in MASK_KINDS:
            mask = sp.masks[kind]
            if not mask.any():  # e.g. a page without SFX: nothing to inpaint
                continue
            # text/sfx: the page with its text/SFX; random masks: the clean page with a grey hole.
            src = sp.page if kind in ("text", "sfx") else np.where(mask, np.float32(0.5), sp.clean)
            # Removing only the text leaves the SFX in the truth, and the other way round.
            other = sp.masks["sfx" if kind == "text" else "text"] & ~mask
            truth = np.where(other, sp.page, sp.clean) if kind in ("text", "sfx") else sp.clean
            for name, fn in inpainters.items():
                t0 = time.perf_counter()
                out = fn(src, mask)
                inp_time[kind][name] += time.perf_counter() - t0
                inp[kind][name][tag] = evaluate_pair(out, truth, mask, sp.screentone)
            if config is not None:
                geometry[kind].append(crop_geometry(mask, config))
            if lama_timing is not None and i == 0:  # random weights: timed on the first page only
                t0 = time.perf_counter()
                out = lama_timing[1](src, mask)
                random_time[kind] = time.perf_counter() - t0
                assert np.array_equal(out[~mask], src[~mask])  # outside the mask: the input, bit for bit
        aged = age_page(sp.page, seed + i, dpi=dpi)
        target = prepare_ground_truth(sp.page)
        tone = sp.screentone & ~sp.removable
        for name, fn in RESTORERS.items():
            t0 = time.perf_counter()
            out = fn(aged)
            res_time[name] += time.perf_counter() - t0
            res[name][tag] = evaluate_pair(out, target, None, tone)
    lines = []
    h, w = sp.page.shape
    lines.append(f"Generated set: {pages} pages (seeds {seed}..{seed + pages - 1}), {w}x{h} px at {dpi:g} dpi; "
                 f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OpenCV {cv2.__version__}.")
    lines.append("Means over the pages; `nan` = undefined for that case (e.g. no mask in restoration).")
    lines.append("")
    numbers: dict = {"inpainting": {}, "restoration": {}}
    for kind in MASK_KINDS:
        n = len(inp[kind]["input (nothing done)"])
        if n == 0:
            continue
        lines.append(f"### Inpainting, mask `{kind}` ({n} pages with such a mask)")
        lines.append("")
        rows = {}
        for name in inpainters:
            rows[name] = mean_row(inp[kind][name])
            rows[name]["s/page"] = inp_time[kind][name] / n
        numbers["inpainting"][kind] = rows
        lines.append(_table(rows, "method"))
        lines.append("")
    if config is not None:
        lines.append(f"### LaMa crop strategy (max_side {config.max_side}, context_margin {config.context_margin})")
        lines.append("")
        if lama_timing is not None:
            lines.append("Random weights: the time (first page only) is LaMa's cost on this CPU (same network, same "
                         "crops); its pixels mean nothing, so no quality numbers (they need real weights, `--lama FILE`). "
                         f"Load average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
            lines.append("")
        lines.append("| mask | crops/page | mask px at full res | mean fill scale | model px/page | page squashed to "
                     f"{config.max_side}: scale | model px | " + ("s, first page (random weights) |" if lama_timing else ""))
        lines.append("|---|---|---|---|---|---|---|" + ("---|" if lama_timing else ""))
        numbers["lama_geometry"] = {}
        for kind in MASK_KINDS:
            g = geometry[kind]
            if not g:
                continue
            m = {k: float(np.mean([r[k] for r in g])) for k in g[0]}
            numbers["lama_geometry"][kind] = m
            t = (" — |" if random_time[kind] is None else f" {random_time[kind]:.1f} |") if lama_timing else ""
            lines.append(f"| {kind} | {m['crops']:.1f} | {m['full_res']:.1%} | {m['scale']:.3f} | {m['model_px'] / 1e6:.2f} M | "
                         f"{m['squash_scale']:.3f} | {m['squash_px'] / 1e6:.2f} M |" + t)
        lines.append("")
    lines.append("### Restoration of aged scans (truth: the page prepared with the thesis levels)")
    lines.append("")
    rows = {}
    for name in RESTORERS:
        rows[name] = mean_row(res[name])
        rows[name]["s/page"] = res_time[name] / pages
    numbers["restoration"] = rows
    lines.append(_table(rows, "method"))
    return "\n".join(lines), numbers


def _table(rows: dict[str, dict], first: str) -> str:
    """Markdown table of the metric means plus the time per page; columns that are ``nan`` for every
    method (e.g. inside/outside the mask in restoration) are left out."""
    text = format_table({k: {m: v for m, v in r.items() if m != "s/page"} for k, r in rows.items()}, None, first)
    lines = text.splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    keep = [j for j in range(len(cells[0])) if j == 0 or any(row[j] != "nan" for row in cells[2:])]
    text = "\n".join("| " + " | ".join(row[j] for j in keep) + " |" for row in cells)
    out = []
    for i, line in enumerate(text.splitlines()):
        if i == 0:
            out.append(line + " s/page |")
        elif i == 1:
            out.append(line + "---|")
        else:
            name = line.split("|")[1].strip()
            t = rows[name]["s/page"]
            out.append(line + (f" {t:.3f} |" if math.isfinite(t) else " nan |"))
    return "\n".join(out)


def _save(path: Path, img: np.ndarray, colors: int = 0) -> None:
    from PIL import Image

    im = Image.fromarray(_u8(img))
    if colors:  # noisy aged scans: a small palette keeps the PNG small
        im = im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    im.save(path, optimize=True)


def write_images(folder: str) -> None:
    """The README pictures: a generated page and its ground truth, masks, an aged scan, baselines."""
    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sp = generate_page(0, size=(1024, 768), dpi=300)
    both = np.concatenate([sp.page, np.ones((1024, 16), np.float32), sp.clean], 1)
    Image.fromarray(_u8(both)).resize((both.shape[1] // 2, both.shape[0] // 2), Image.Resampling.LANCZOS).save(
        out / "synth_page_and_clean.png", optimize=True)
    y0, x0, s = 40, 20, 380
    crop = (slice(y0, y0 + s), slice(x0, x0 + s))
    _save(out / "synth_crop_page.png", sp.page[crop])
    _save(out / "synth_crop_clean.png", sp.clean[crop])
    rgb = np.repeat(sp.page[crop][..., None], 3, 2) * 0.6 + 0.4
    st = sp.screentone[crop]
    rgb[st] = rgb[st] * [0.8, 1.0, 0.8]
    for kind, colour in (("text", [1, 0.2, 0.2]), ("sfx", [0.2, 0.4, 1.0])):
        m = sp.masks[kind][crop]
        rgb[m] = rgb[m] * 0.3 + np.array(colour) * 0.7
    _save(out / "synth_crop_masks.png", rgb)
    masks = np.concatenate([np.pad(sp.masks[k], ((0, 0), (0, 16))) for k in ("wide", "box", "small")], 1)
    Image.fromarray(_u8(1 - masks.astype(np.float32) * 0.85)).resize(
        (masks.shape[1] // 4, masks.shape[0] // 4), Image.Resampling.BOX).save(out / "synth_random_masks.png", optimize=True)
    aged = age_page(sp.page, 0, dpi=300)
    _save(out / "synth_crop_aged.png", aged[crop], colors=48)
    small = np.asarray(Image.fromarray(_u8(aged)).resize((336, 448), Image.Resampling.LANCZOS)) / 255.0
    _save(out / "synth_aged_page.png", small, colors=48)
    # Baselines on the SFX of the same page: input | Telea | Navier-Stokes | truth.
    from scipy import ndimage

    m = sp.masks["sfx"]
    labels, n = ndimage.label(m)
    biggest = 1 + int(np.argmax(ndimage.sum(m, labels, range(1, n + 1))))
    ys, xs = np.nonzero(labels == biggest)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    c = (slice(max(0, cy - 150), cy + 150), slice(max(0, cx - 150), cx + 150))
    tiles = [sp.page, INPAINTERS["OpenCV Telea r=3"](sp.page, m), INPAINTERS["OpenCV Navier-Stokes r=3"](sp.page, m),
             np.where(sp.masks["text"] & ~m, sp.page, sp.clean)]
    gap = np.ones((tiles[0][c].shape[0], 8), np.float32)
    _save(out / "baseline_sfx_telea_ns.png", np.concatenate(sum(([t[c], gap] for t in tiles), [])[:-1], 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--size", default="1024x768", help="paper size name or HxW in px")
    parser.add_argument("--dpi", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", help="also write the report (Markdown) to this file")
    parser.add_argument("--images", help="also write the README pictures (generated page, masks, aged scan, "
                        "baseline results) to this folder, e.g. docs/images")
    parser.add_argument("--lama", help="also LaMa: a weight file (big-lama or a fine-tune), or 'random' for the "
                        "network with random weights (time and crop geometry only; needs spandrel)")
    args = parser.parse_args(argv)
    if args.images:
        write_images(args.images)
    size = tuple(int(v) for v in args.size.lower().split("x")) if "x" in args.size.lower() else args.size
    t0 = time.perf_counter()
    report, _ = run(args.pages, size, args.dpi, args.seed, args.lama)
    report += f"\n\nTotal run time: {time.perf_counter() - t0:.1f} s.\n"
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("# Classical baselines\n\nProduced by `python benchmarks/baselines.py"
                                  + (f" --pages {args.pages}" if args.pages != 6 else "")
                                  + (f" --lama {args.lama}" if args.lama else "")
                                  + f" --out {args.out}`.\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
