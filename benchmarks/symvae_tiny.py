"""Symmetric VAE at tiny scale, end to end on generated pages (CPU, about 10-20 minutes).

1. Train a small base VAE (diffusers AutoencoderKL, 8x downscale, 4 latent channels, reduced
   widths) on clean and aged generated pages with L1 + a small KL term, like the SD VAE: it
   keeps lines and black areas but cannot keep screentone dots finer than its 8-px latent cells.
2. Train Symmetric VAE adapters on top with ``mdim_core.symvae.train`` (aged crops -> thesis
   ground truth, clean crops -> themselves, random gated holes).
3. On held-out generated pages, report side by side:
   * clean pages (the inpainting use, where every result passes through the VAE): base VAE
     round trip vs Symmetric VAE round trip, against the clean page;
   * old scans (aged pages) against the thesis-prepared ground truth: base VAE round trip, base
     VAE + classical cleanup, Symmetric VAE restore, and classical cleanup alone (no VAE) as a
     reference.

The trained weights are written as test fixtures (``tests/fixtures/symvae_tiny``, fp16 base VAE
+ adapters, ~2.5 MB) and the tables to ``benchmarks/results/symvae_tiny.md``.

    python benchmarks/symvae_tiny.py            # full run
    python benchmarks/symvae_tiny.py --quick    # smoke run (few steps, numbers meaningless)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/: the tiny model builders

from tiny_models import build_autoencoder_kl  # noqa: E402

from mdim_core.evaluation import metrics  # noqa: E402
from mdim_core.restore.levels import prepare_ground_truth, to_grayscale  # noqa: E402
from mdim_core.symvae import SymmetricVAE, save_adapters  # noqa: E402
from mdim_core.symvae.train import TrainConfig, train  # noqa: E402
from mdim_core.synth import generate_page  # noqa: E402
from mdim_core.synth.aging import age_page  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "symvae_tiny"
FIGURE = ROOT / "docs" / "images" / "symvae_tiny_comparison.png"
RESULTS = ROOT / "benchmarks" / "results" / "symvae_tiny.md"
WIDTHS = (16, 32, 64, 64)
TRAIN_SIZE = (384, 288)
TEST_SIZE = (640, 480)


def classical_cleanup(image: np.ndarray) -> tuple[np.ndarray, str]:
    """The pack's classical cleanup when present, else auto-levels (the thesis' levels recipe)."""
    try:
        from mdim_core.restore.cleanup import clean_page
    except ImportError:
        return prepare_ground_truth(image), "auto-levels"
    return clean_page(image), "mdim cleanup"


def make_pages(seeds, size):
    return [generate_page(int(s), size=size, dpi=300.0, masks=False) for s in seeds]


def train_base(vae, clean, aged, steps, batch, crop, lr, seed, log_every=50):
    """Autoencoder training: inputs (clean or aged crops) -> themselves; L1 + 1e-6 KL."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    vae.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        xs = []
        for _ in range(batch):
            k = int(rng.integers(len(clean)))
            h, w = clean[k].shape
            y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            if rng.uniform() < 0.5:
                img = np.repeat(clean[k][y : y + crop, x : x + crop, None], 3, axis=2)
            else:
                versions = aged[k]
                img = versions[int(rng.integers(len(versions)))][y : y + crop, x : x + crop]
            xs.append(img)
        x = torch.from_numpy(np.stack(xs)).movedim(-1, 1) * 2 - 1
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        loss = (y - x).abs().mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            print(f"  base step {step + 1}/{steps}: L1+KL {np.mean(losses[-log_every:]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    vae.eval()
    return float(np.mean(losses[-20:]))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]


def gray(t: torch.Tensor) -> np.ndarray:
    return to_grayscale(t[0].numpy())


@torch.no_grad()
def evaluate(vae, sym, test_pages, seed):
    rows_clean = {"base VAE round trip": [], "Symmetric VAE round trip": []}
    rows_old = {}
    cleanup_name = None
    for i, p in enumerate(test_pages):
        clean = p.clean
        x = to_tensor(clean)
        z = sym.encode(x)
        base_rt = gray(sym.decode(z))
        sym_rt = gray(sym.decode(z, source=x))
        for name, out in (("base VAE round trip", base_rt), ("Symmetric VAE round trip", sym_rt)):
            rows_clean[name].append(metrics.evaluate_pair(out, clean, screentone=p.screentone, tile=32))
        aged = age_page(clean, seed=seed + i, dpi=300.0)
        truth = prepare_ground_truth(clean)
        xa = to_tensor(aged)
        base_old = gray(sym.decode(sym.encode(xa)))
        cleaned_base, cleanup_name = classical_cleanup(base_old)
        cleaned_scan, _ = classical_cleanup(aged)
        restored = gray(sym.restore(xa))
        cases = {
            "base VAE round trip": base_old,
            f"base VAE + {cleanup_name}": cleaned_base,
            "Symmetric VAE restore": restored,
            f"{cleanup_name} alone, no VAE (reference)": cleaned_scan,
        }
        for name, out in cases.items():
            rows_old.setdefault(name, []).append(metrics.evaluate_pair(out, truth, screentone=p.screentone, tile=32))
    return rows_clean, rows_old


def mean_rows(rows):
    keys = ("psnr", "ssim", "tone_err", "period_match", "paper_white")
    out = {}
    for name, items in rows.items():
        out[name] = {k: float(np.nanmean([it[k] for it in items])) for k in keys}
    return out


def table(title, rows):
    lines = [f"**{title}**", "", "| decoder | PSNR dB | SSIM | tone err | period match | paper white |",
             "|---|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['tone_err']:.4f} | "
                     f"{m['period_match']:.2f} | {m['paper_white']:.3f} |")
    return "\n".join(lines)


@torch.no_grad()
def draw_figure(path: Path = FIGURE) -> Path:
    """Held-out page crop: clean / base VAE / Symmetric VAE, then aged / base VAE / Symmetric VAE restore."""
    from diffusers import AutoencoderKL
    from PIL import Image, ImageDraw

    from mdim_core.symvae import load_adapters

    vae = AutoencoderKL.from_pretrained(str(FIXTURES / "base_vae"), torch_dtype=torch.float32).eval()
    sym = SymmetricVAE(vae)
    load_adapters(sym, FIXTURES / "adapters.safetensors")
    page = generate_page(10_001, size=TEST_SIZE, dpi=300.0, masks=False)
    clean = page.clean[96:352, 96:352]
    aged = age_page(page.clean, seed=5, dpi=300.0)[96:352, 96:352]
    x, xa = to_tensor(clean), to_tensor(aged)
    tiles = [
        ("clean page", clean),
        ("base VAE", gray(sym.decode(sym.encode(x)))),
        ("Symmetric VAE", gray(sym.decode(sym.encode(x), source=x))),
        ("old scan", to_grayscale(aged)),
        ("base VAE", gray(sym.decode(sym.encode(xa)))),
        ("Symmetric VAE restore", gray(sym.restore(xa))),
    ]
    side, label = 256, 18
    canvas = Image.new("L", (3 * side, 2 * (side + label)), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (name, img) in enumerate(tiles):
        col, row = i % 3, i // 3
        canvas.paste(Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)),
                     (col * side, row * (side + label) + label))
        draw.text((col * side + 4, row * (side + label) + 3), name, fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps only (checks the script runs)")
    ap.add_argument("--base-steps", type=int, default=600)
    ap.add_argument("--adapter-steps", type=int, default=600)
    ap.add_argument("--train-pages", type=int, default=12)
    ap.add_argument("--test-pages", type=int, default=4)
    ap.add_argument("--no-fixtures", action="store_true", help="do not overwrite tests/fixtures/symvae_tiny")
    ap.add_argument("--figure-only", action="store_true", help="only redraw the README picture from the fixtures")
    args = ap.parse_args(argv)
    if args.figure_only:
        print(f"wrote {draw_figure().relative_to(ROOT)}")
        return 0
    torch.set_num_threads(1)  # small models: one thread is fastest and keeps runs reproducible
    if args.quick:
        args.base_steps, args.adapter_steps, args.train_pages, args.test_pages = 4, 4, 2, 1
        args.no_fixtures = True
    t_start = time.perf_counter()
    print(f"[1/4] generating {args.train_pages} training and {args.test_pages} held-out pages", flush=True)
    train_pages = make_pages(range(args.train_pages), TRAIN_SIZE)
    test_pages = make_pages(range(10_000, 10_000 + args.test_pages), TEST_SIZE)
    clean = [p.clean for p in train_pages]
    aged = [[age_page(c, seed=1000 * i + j, dpi=300.0) for j in range(4)] for i, c in enumerate(clean)]

    print(f"[2/4] training the base VAE {WIDTHS} for {args.base_steps} steps", flush=True)
    vae = build_autoencoder_kl(WIDTHS, seed=0)
    base_loss = train_base(vae, clean, aged, args.base_steps, batch=8, crop=64, lr=2e-3, seed=1)
    vae = vae.half().float().eval()  # exactly the weights stored (fp16) in the fixture
    vae.requires_grad_(False)

    print(f"[3/4] training Symmetric VAE adapters for {args.adapter_steps} steps", flush=True)
    sym = SymmetricVAE(vae, seed=0)
    cfg = TrainConfig(steps=args.adapter_steps, batch=6, crop=64, lr=2e-3, clean_fraction=0.3, mask_fraction=0.2,
                      save_every=10_000, seed=2)
    work = Path(tempfile.mkdtemp(prefix="mdim_symvae_tiny_"))
    out_file = work / "adapters.safetensors"
    summary = train(sym, clean, cfg, out_file, aged=aged, progress=False,
                    extra_meta={"data": f"mdim_core.synth pages 0..{args.train_pages - 1}",
                                "base": "tests/fixtures/symvae_tiny/base_vae"})
    print(f"  adapters: final loss {summary['final_loss']:.4f} in {summary['seconds']} s", flush=True)

    print(f"[4/4] evaluating on {args.test_pages} held-out pages {TEST_SIZE[1]}x{TEST_SIZE[0]}", flush=True)
    rows_clean, rows_old = evaluate(vae, sym, test_pages, seed=50_000)
    rc, ro = mean_rows(rows_clean), mean_rows(rows_old)
    n_params = sum(p.numel() for p in vae.parameters())
    n_adapt = sum(p.numel() for p in sym.parameters())
    report = [
        "# Symmetric VAE, tiny scale (benchmarks/symvae_tiny.py)",
        "",
        f"Base VAE: diffusers AutoencoderKL, widths {WIDTHS}, 8x downscale, 4 latent channels, {n_params:,} "
        f"parameters, {args.base_steps} steps (final L1+KL {base_loss:.4f}). Adapters: {n_adapt:,} parameters, "
        f"{args.adapter_steps} steps. Data: {args.train_pages} generated pages {TRAIN_SIZE[1]}x{TRAIN_SIZE[0]} "
        f"at 300 dpi; held out: {args.test_pages} pages {TEST_SIZE[1]}x{TEST_SIZE[0]}. "
        f"Total time {time.perf_counter() - t_start:.0f} s on CPU (1 thread).",
        "",
        "tone err: mean absolute error of the low-passed screentone tone; period match: share of screentone "
        "tiles whose dot period is kept (mdim_core.evaluation.metrics).",
        "",
        table("Clean pages through the VAE (inpainting use), against the clean page", rc),
        "",
        table("Old scans (aged pages), against the thesis-prepared ground truth", ro),
        "",
    ]
    text = "\n".join(report)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        (RESULTS.with_suffix(".json")).write_text(json.dumps({"clean": rc, "old_scans": ro}, indent=1))
    if not args.no_fixtures:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        vae.half().save_pretrained(FIXTURES / "base_vae", safe_serialization=True)
        vae.float()
        save_adapters(sym, FIXTURES / "adapters.safetensors", train=summary)
        print(f"fixtures written to {FIXTURES.relative_to(ROOT)}")
        print(f"wrote {draw_figure().relative_to(ROOT)}")
    sym_clean = rc["Symmetric VAE round trip"]
    base_clean = rc["base VAE round trip"]
    sym_old = ro["Symmetric VAE restore"]
    best_base_old = max((v for k, v in ro.items() if k.startswith("base VAE")), key=lambda m: m["psnr"])
    wins = {
        "tone fidelity (clean pages)": sym_clean["tone_err"] < base_clean["tone_err"],
        "restoration PSNR vs base VAE (+ cleanup)": sym_old["psnr"] > best_base_old["psnr"],
        "restoration tone vs base VAE (+ cleanup)": sym_old["tone_err"] < min(
            v["tone_err"] for k, v in ro.items() if k.startswith("base VAE")),
    }
    for k, v in wins.items():
        print(f"Symmetric VAE wins on {k}: {'yes' if v else 'NO'}")
    if not all(math.isfinite(v["psnr"]) for v in ro.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
