"""SGIM with region crops versus one full-page pass at full resolution (A4, 600 dpi).

For bubble-text masks covering about 3 % of an A4 600-dpi page (4961x7016), measures side by
side in one run, with the same host (``counting_host.CountingHost``: a conv denoiser whose
work is proportional to latent pixels, exact pixel counting):

- model-evaluated latent pixels (latent pixels x steps, summed over all passes),
- wall time of the whole call (engine + host),

for: SGIM with region crops (default settings), SGIM on the whole page (one page-sized crop:
SGI at <= 1024, FRI at full size in 2048-px tiles), and one full-page pass at full resolution (no shrink,
no crops: plain inpainting of the page). Target: region crops use <= 10 % of the full-page
pass's latent pixels.

Masks: the bubble-text masks of synthetic pages (``mdim_core.synth``) when available, and
generated bubble masks (columns of character blocks) in any case.

    python benchmarks/sgim_region_pixels.py [--steps 10 --fri-steps 5 --pages 2 --out benchmarks/results/sgim_region_pixels.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from counting_host import CountingHost  # noqa: E402

from mdim_core import geometry, masks, sgim  # noqa: E402

A4_600 = (7016, 4961)


def generated_bubbles(seed: int, size=A4_600, coverage=0.03) -> np.ndarray:
    """Bubble text: blocks of vertical text columns (~3 mm wide, dilated), ~``coverage`` of the page."""
    rng = np.random.default_rng(seed)
    h, w = size
    mask = np.zeros(size, dtype=bool)
    taken: list[tuple[int, int, int, int]] = []
    col, gap, char = 70, 20, 72
    while mask.mean() < coverage:
        cols, rows = int(rng.integers(2, 7)), int(rng.integers(3, 9))
        bh, bw = rows * char, cols * (col + gap)
        y, x = int(rng.integers(100, h - bh - 100)), int(rng.integers(100, w - bw - 100))
        box = (y - 300, x - 300, y + bh + 300, x + bw + 300)  # bubbles do not touch
        if any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
            continue
        taken.append(box)
        for c in range(cols):
            n = int(rng.integers(2, rows + 1))
            xx = x + c * (col + gap)
            mask[y : y + n * char, xx : xx + col] = True
    return mask


def synth_masks(pages: int):
    try:
        from mdim_core.synth import generate_page
    except ImportError:
        return []
    out = []
    for seed in range(1, pages + 1):
        p = generate_page(seed, "A4", 600, masks=False)
        out.append((f"synthetic page {seed} (bubble text)", p.page, p.masks["text"]))
    return out


def plan_pixel_steps(mask: torch.Tensor, config: sgim.SGIMConfig, scale: int = 8) -> int:
    """Latent pixels x steps the plan will make the model evaluate (what CountingHost counts)."""
    total = 0
    for job in sgim.plan(tuple(mask.shape), mask[None] > 0.5, config):
        h, w = geometry.padded_size(job.sgi_size, scale)
        total += config.steps * (h // scale) * (w // scale)
        if job.run_fri:
            sizes = [geometry.box_size(t) for t, _ in job.fri_tiles] or [job.crop_size]
            for size in sizes:
                h, w = geometry.padded_size(size, scale)
                total += config.fri_steps * (h // scale) * (w // scale)
    return total


def _steps_of(box, fri_mask, config: sgim.SGIMConfig, scale: int = 8) -> tuple[int, int, int]:
    """(one-pass, SGI of a shrunk crop, FRI) latent px x steps of one crop; padding counted."""
    size = geometry.box_size(box)
    small = geometry.shrink_plan(size, config.sgi_max_side, config.plan)
    h, w = geometry.padded_size(small, scale)
    sgi = config.steps * (h // scale) * (w // scale)
    fri = 0
    if config.run_fri == "always" or (config.run_fri == "auto" and small != size):
        sizes = [size]
        if config.fri_tile_side and max(size) > config.fri_tile_side:
            tiles = geometry.tile_boxes(size, config.fri_tile_side, config.fri_tile_overlap)
            sizes = [geometry.box_size(t) for t, c in tiles if fri_mask[c[0] : c[2], c[1] : c[3]].any()]
        for t in sizes:
            h, w = geometry.padded_size(t, scale)
            fri += config.fri_steps * (h // scale) * (w // scale)
    return (0, sgi, fri) if small != size else (sgi, 0, fri)


def _unpadded_steps(box, config: sgim.SGIMConfig, scale: int = 8) -> float:
    size = geometry.box_size(box)
    small = geometry.shrink_plan(size, config.sgi_max_side, config.plan)
    out = config.steps * small[0] * small[1] / scale**2
    if small != size:
        out += config.fri_steps * size[0] * size[1] / scale**2
    return out


def _cover(boxes, size) -> float:
    page = np.zeros(size, dtype=bool)
    for y0, x0, y1, x1 in boxes:
        page[y0:y1, x0:x1] = True
    return float(page.mean())


def breakdown(mask: torch.Tensor, config: sgim.SGIMConfig, ref_steps: int) -> dict:
    """Where the model work of the region crops goes, from the plans (no model run).

    Page shares: the mask, its regions' bounding boxes, those boxes with the context margin
    (the least page that rectangular crops with this margin must cover), and the planned crops
    (summed, so overlapping crops count twice). Model work (latent px x steps) relative to the
    full-page pass: crops that fit ``sgi_max_side`` (one pass at full resolution), the SGI pass
    of shrunk crops, their FRI pass; the share of all that spent on padding to multiples of 8;
    and what the previous planner (every overlap merged) would have made the model evaluate.
    """
    m = mask > 0.5
    size = tuple(m.shape)
    comps = masks.regions(m, cell=8)
    margin = max(config.context_margin, config.feather + 1 if config.feather else 0)
    margin_boxes = [geometry.expand_box(c, margin, size) for c in comps]
    jobs = sgim.plan(size, m[None], config)
    parts = np.zeros(3)
    unpadded = 0.0
    for job in jobs:
        own = m[job.box[0] : job.box[2], job.box[1] : job.box[3]].numpy()
        own = own & (job.owners.crop(job.box) == job.region) if job.owners is not None else own
        parts += _steps_of(job.box, own, config)
        unpadded += _unpadded_steps(job.box, config)
    previous = sgim._merge_overlapping([(b, None) for b in margin_boxes], size, config)
    prev_steps = sum(
        sum(_steps_of(box, m[box[0] : box[2], box[1] : box[3]].numpy(), config)) for box, _ in previous
    )
    return dict(
        mask=float(m.float().mean()),
        regions=_cover(comps, size),
        margin=_cover(margin_boxes, size),
        crops=sum(j.crop_size[0] * j.crop_size[1] for j in jobs) / m.numel(),
        crops_before_side=sum(
            geometry.box_size(b)[0] * geometry.box_size(b)[1]
            for b in sgim.plan_regions(m, sgim.SGIMConfig(**{**_fields(config), "min_crop_side": 0}))
        ) / m.numel(),
        one_pass=parts[0] / ref_steps,
        sgi=parts[1] / ref_steps,
        fri=parts[2] / ref_steps,
        padding=1.0 - unpadded / parts.sum(),
        ratio=parts.sum() / ref_steps,
        previous=prev_steps / ref_steps,
        crops_now=len(jobs),
        crops_previous=len(previous),
    )


def _fields(config: sgim.SGIMConfig) -> dict:
    return {name: getattr(config, name) for name in sgim.SGIMConfig.field_names()}


def staggered_bubbles(seed: int, size=A4_600, coverage=0.03) -> np.ndarray:
    """Bubble text in diagonal pairs: each pair's blocks overlap at a corner once given a margin."""
    rng = np.random.default_rng(seed)
    h, w = size
    mask = np.zeros(size, dtype=bool)
    taken: list[tuple[int, int, int, int]] = []
    while mask.mean() < coverage:
        bh, bw = int(rng.integers(3, 9)) * 72, int(rng.integers(2, 6)) * 90
        y, x = int(rng.integers(100, h - 2 * bh - 200)), int(rng.integers(100, w - 2 * bw - 200))
        box = (y - 300, x - 300, y + 2 * bh + 400, x + 2 * bw + 400)
        if any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
            continue
        taken.append(box)
        for yy, xx in ((y, x), (y + bh + 60, x + bw + 60)):  # diagonal neighbours 60 px apart
            for c in range(bw // 90):
                mask[yy : yy + bh, xx + c * 90 : xx + c * 90 + 70] = True
    return mask


def dust_specks(count: int, seed: int = 0, size=A4_600) -> np.ndarray:
    """Specks of 6 x 6 pixels scattered over the page (scan dust picked for cleanup)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(size, dtype=bool)
    for y, x in zip(rng.integers(0, size[0] - 6, count), rng.integers(0, size[1] - 6, count)):
        mask[y : y + 6, x : x + 6] = True
    return mask


def run_case(host: CountingHost, page: torch.Tensor, mask: torch.Tensor, config: sgim.SGIMConfig):
    host.reset()
    t = time.perf_counter()
    res = sgim.inpaint(host, page, mask, seed=0, config=config)
    wall = time.perf_counter() - t
    return dict(
        latent_pixel_steps=host.latent_pixel_steps,
        latent_pixels=host.latent_pixels,
        wall=wall,
        host=host.host_seconds,
        crops=len(res.jobs),
        passes=res.passes,
        crop_pixels=sum(j.crop_size[0] * j.crop_size[1] for j in res.jobs),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="SGI steps (the 2:1 SGI:FRI ratio of 50/25 is kept)")
    ap.add_argument("--fri-steps", type=int, default=5)
    ap.add_argument("--pages", type=int, default=2, help="synthetic pages (if mdim_core.synth is available)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sgim_region_pixels.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    base = dict(steps=args.steps, fri_steps=args.fri_steps)
    configs = {
        "SGIM, region crops (defaults)": sgim.SGIMConfig(**base),
        "SGIM, whole page as one crop": sgim.SGIMConfig(context_margin=10**6, **base),
        "one full-page pass at full res": sgim.SGIMConfig(
            context_margin=10**6, sgi_max_side=10**6, fri_tile_side=0, **base
        ),
    }
    cases = synth_masks(args.pages)
    gen = generated_bubbles(0)
    cases.append(("generated bubbles", None, gen))
    host = CountingHost()
    sweep = []
    lines = [
        "# SGIM region crops vs one full-page pass (A4, 600 dpi, 4961x7016)",
        "",
        f"Host: `benchmarks/counting_host.py` (conv denoiser, work proportional to latent pixels), "
        f"SGI {args.steps} steps, FRI {args.fri_steps} steps, one CPU thread. "
        "Ratios are relative to the full-page pass of the same page, measured in the same run.",
        "",
        "| page / mask | mask % | method | crops | passes | crop px % | latent px x steps | ratio | wall s | wall ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, gray, mask_np in cases:
        if gray is None:  # generated: a plain grey page with some texture
            rng = np.random.default_rng(0)
            gray = (0.6 + 0.4 * rng.random(A4_600, dtype=np.float32)).astype(np.float32)
        page = torch.from_numpy(gray)[None, ..., None]
        mask = torch.from_numpy(mask_np.astype(np.float32))
        results = {label: run_case(host, page, mask, cfg) for label, cfg in configs.items()}
        ref = results["one full-page pass at full res"]
        for label, cfg in configs.items():  # the plan predicts exactly what the host evaluated
            assert plan_pixel_steps(mask, cfg) == results[label]["latent_pixel_steps"], label
        sweep.append((name, mask, ref["latent_pixel_steps"]))
        for label, r in results.items():
            row = (
                f"| {name} | {100 * mask_np.mean():.2f} | {label} | {r['crops']} | {r['passes']} | "
                f"{100 * r['crop_pixels'] / mask_np.size:.1f} | {r['latent_pixel_steps']:,} | "
                f"{r['latent_pixel_steps'] / ref['latent_pixel_steps']:.3f} | {r['wall']:.2f} | "
                f"{r['wall'] / ref['wall']:.3f} |"
            )
            lines.append(row)
            print(row, flush=True)
    margins, sides = (0, 32, 64, 128, 256), (0, 512)
    lines += [
        "",
        "Region crops, latent px x steps relative to the full-page pass, by context margin and minimum crop "
        "side (from the plans, which match the counted numbers above exactly):",
        "",
        "| page / mask | " + " | ".join(f"margin {m}, min side {s}" for s in sides for m in margins) + " |",
        "|---|" + "---|" * (len(margins) * len(sides)),
    ]
    for name, mask, ref_steps in sweep:
        cells = []
        for side in sides:
            for margin in margins:
                cfg = sgim.SGIMConfig(context_margin=margin, min_crop_side=side, **base)
                cells.append(f"{plan_pixel_steps(mask, cfg) / ref_steps:.3f}")
        row = f"| {name} | " + " | ".join(cells) + " |"
        lines.append(row)
        print(row, flush=True)
    lines += [
        "",
        "Where the pixels go (defaults; page shares in %, model work relative to the full-page pass; from the "
        "plans). `regions`: the mask regions' bounding boxes; `+ margin`: those boxes grown by the context "
        "margin, the least page rectangular crops with that margin must cover; `crops`: the planned crops "
        "before and after widening to `min_crop_side` (summed: overlapping crops count twice); `one pass`: "
        "crops within `sgi_max_side` (one full-resolution pass, like the full-page pass per pixel); `SGI`/`FRI`: "
        "the two passes of shrunk crops; `padding`: share of the work spent on padding to multiples of 8; "
        "`previous`: the same page planned with the previous rule (every overlap merged):",
        "",
        "| page / mask | mask % | regions % | + margin % | crops, no min side % | crops % | one pass | SGI | FRI "
        "| padding % | ratio (crops) | previous ratio (crops) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    extra = [("staggered bubbles (diagonal pairs)", torch.from_numpy(staggered_bubbles(0).astype(np.float32)))]
    extra += [(f"dust, {n} specks of 6x6", torch.from_numpy(dust_specks(n).astype(np.float32))) for n in (50, 300)]
    full_cfg = configs["one full-page pass at full res"]
    rows = [(name, mask, ref_steps) for name, mask, ref_steps in sweep]
    rows += [(name, mask, plan_pixel_steps(mask, full_cfg)) for name, mask in extra]
    for name, mask, ref_steps in rows:
        b = breakdown(mask, configs["SGIM, region crops (defaults)"], ref_steps)
        row = (
            f"| {name} | {100 * b['mask']:.2f} | {100 * b['regions']:.2f} | {100 * b['margin']:.2f} | "
            f"{100 * b['crops_before_side']:.2f} | {100 * b['crops']:.2f} | {b['one_pass']:.3f} | {b['sgi']:.3f} | "
            f"{b['fri']:.3f} | {100 * b['padding']:.1f} | **{b['ratio']:.3f}** ({b['crops_now']}) | "
            f"{b['previous']:.3f} ({b['crops_previous']}) |"
        )
        lines.append(row)
        print(row, flush=True)
    lines += [
        "",
        "`latent px x steps`: latent pixels the denoiser evaluated, summed over passes and steps. "
        "`crop px %`: pixels of all crops as a share of the page. The whole-page SGIM row shows what the "
        "region crops save on top of SGIM's own shrink.",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
