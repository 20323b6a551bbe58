"""The MDIM training recipe at small scale, on generated pages (CPU, about 2-2.5 hours of one core).

Trains three small inpainting models from the same initialisation, on the same generated pages, with the
same compute (steps x batch), with ``mdim_core.training`` (the code of ``python -m mdim_core train``):

  (a) Stable Diffusion's recipe: SD's schedule, epsilon-prediction, sampled with leading timesteps, no
      full-image masks;
  (b) the MDIM recipe: zero terminal SNR, v-prediction, trailing timesteps, the whole image masked with
      probability 0.75;
  (c) MDIM without full-image masks.

Then, on held-out generated pages at twice the training scale, through SGIM (structure pass at the training
scale, refinement at full resolution): paper whiteness in filled bubbles, PSNR in the mask, the share of
fills that invent ink where the truth is empty paper (bubble, text and large masks), and the mean
brightness error of big holes in blank and solid-black canvases (the Lin et al. effect). Last, the thesis'
second claim with model (b): SGIM against one pass at full resolution on the same pages at 2x and 4x the
training scale.

The small models work in an exact space-to-depth "latent" space: the grey page cut into 4x4 blocks, 16
channels at 1/4 size (see ``SpaceToDepthCodec``). A learned VAE would need its own training budget and would
cap every number by its reconstruction error; a plain pixel-space model at this page size would cost 16x
more per step. The UNet is a 3.8 M-parameter diffusers UNet2DConditionModel trained from scratch (there is no
pretrained small SD), so learning rates are those of training from scratch, not the thesis' 1e-6.

Resumable: training checkpoints and finished evaluations are kept in ``--work`` (default benchmarks/out/
train_mdim_small); run the same command again to go on. Writes benchmarks/results/train_mdim_small.md and
docs/images/train_mdim_small_*.png.

    nice -n 19 python benchmarks/train_mdim_small.py           # full run
    python benchmarks/train_mdim_small.py --quick --work /tmp/q  # smoke run (numbers meaningless)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_diffusers import SpaceToDepthCodec, build_text_encoder  # noqa: E402

from mdim_core.evaluation import metrics  # noqa: E402
from mdim_core.imaging.imageio import write_image  # noqa: E402
from mdim_core.inpaint.diffusers_host import DiffusersHost, encode_prompt, make_scheduler  # noqa: E402
from mdim_core.inpaint.sgim import SGIMConfig, inpaint  # noqa: E402
from mdim_core.synth import generate_page  # noqa: E402
from mdim_core.training import state  # noqa: E402
from mdim_core.training.data import PROMPT_PREFIX, PageSet  # noqa: E402
from mdim_core.training.masks import bubble_mask  # noqa: E402
from mdim_core.training.models import Components, to_inpainting  # noqa: E402
from mdim_core.training.objective import NoiseObjective  # noqa: E402
from mdim_core.training.trainer import TrainConfig, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_mdim_small.md"
IMAGES = ROOT / "docs" / "images"
PAGE_SIDE = 256  # structure-pass size of the small models (SD1.x: 1024)
CROP = 128  # training crop (SD1.x: 512)
FACTOR = 4  # space-to-depth block
TRAIN_SEED0, TEST_SEED0 = 0, 100_000
VARIANTS = {
    "a": dict(label="(a) SD: SD schedule, epsilon, leading steps, no full masks", prediction="epsilon",
              zero_snr=False, full_mask_prob=0.0),
    "b": dict(label="(b) MDIM: zero SNR, v, trailing steps, full masks p=0.75", prediction="v_prediction",
              zero_snr=True, full_mask_prob=0.75),
    "c": dict(label="(c) MDIM without full-image masks", prediction="v_prediction", zero_snr=True,
              full_mask_prob=0.0),
}
KINDS = ("bubble", "text", "large")


def build_components(work: Path, seed: int = 0) -> Components:
    """The shared initialisation: a random 16-channel UNet made inpainting (33 channels, extra ones at zero)."""
    from diffusers import UNet2DConditionModel

    c = FACTOR * FACTOR
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=CROP // FACTOR, in_channels=c, out_channels=c, layers_per_block=1, block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    text, tok = build_text_encoder(work / "tokenizer", seed=seed)
    return Components(to_inpainting(unet), SpaceToDepthCodec(FACTOR), text, tok, source="random init", base_channels=c)


def page_size(scale: int) -> tuple[int, int]:
    side = PAGE_SIDE * scale
    return side, round(side / math.sqrt(2.0))


def training_pages(n: int) -> PageSet:
    """Clean generated pages (text and SFX removed, as the thesis trains), drawn at 2x and halved to PAGE_SIDE."""
    return PageSet.from_images([generate_page(TRAIN_SEED0 + i, size=page_size(2), dpi=72.0).clean for i in range(n)],
                               max_side=PAGE_SIDE)


def test_page(i: int, scale: int):
    return generate_page(TEST_SEED0 + i, size=page_size(scale), dpi=36.0 * scale)


def cases_of(page) -> dict:
    """kind -> (image given, mask, truth) of a generated page (truth: what the mask covers removed)."""
    bubbles, text = bubble_mask(page), page.masks["text"]
    return {
        "bubble": (page.page, bubbles, np.where(bubbles, page.clean, page.page)),
        "text": (page.page, text, np.where(text, page.clean, page.page)),
        "large": (page.clean, page.masks["box"], page.clean),
    }


# --------------------------------------------------------------------------------------------- training


def train_variant(key: str, args, base: Components, pages: PageSet, steps: int) -> Path:
    """Train (or resume) variant ``key`` up to ``steps``; returns the checkpoint folder of that step."""
    v = VARIANTS[key]
    cfg = TrainConfig(
        steps=steps, resolution=CROP, batch_size=args.batch, lr=args.lr, full_mask_prob=v["full_mask_prob"],
        max_side=PAGE_SIDE, prediction=v["prediction"], zero_snr=v["zero_snr"], ema_decay=args.ema,
        warmup_steps=args.warmup, save_every=args.save_every, keep_checkpoints=100, validate_every=0, seed=args.seed,
        log_every=25, save_dtype="fp32", weight_decay=0.0,
    )  # fmt: skip
    out = args.work / key
    done = dict(state.list_checkpoints(out))
    if steps in done:
        return done[steps]
    if done and max(done) > steps:
        raise SystemExit(f"{out} is trained beyond {steps} steps but has no checkpoint of step {steps}")
    comps = copy.deepcopy(base)
    record = cpu_record(out)
    start = max(done) if done else 0
    spent = record.get(start, 0.0)
    t0 = time.process_time()

    def on_step(step):
        if step % cfg.save_every == 0 or step == cfg.steps:
            record[step] = spent + time.process_time() - t0
            (out / "cpu_seconds.json").write_text(json.dumps({"by_step": {str(k): v for k, v in record.items()}}))

    print(f"training {v['label']}: {cfg.steps} steps x {cfg.batch_size} crops of {CROP} px", flush=True)
    train(comps, pages, cfg, out, resume=True, export=False, device="cpu", progress=not args.quiet, on_step=on_step)
    return dict(state.list_checkpoints(out))[steps]


def cpu_record(out: Path) -> dict[int, float]:
    """CPU seconds of training a variant up to each checkpointed step (one core)."""
    path = out / "cpu_seconds.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if "by_step" in data:
        return {int(k): float(v) for k, v in data["by_step"].items()}
    return {int(data["step"]): float(data["seconds"])}


def trained_unet(base: Components, folder: Path):
    data = state.read_checkpoint(folder)
    unet = copy.deepcopy(base.unet)
    weights = data["ema_weights"] if data["ema_weights"] is not None else data["unet"]
    unet.load_state_dict({**unet.state_dict(), **weights})
    return unet.eval(), data


# --------------------------------------------------------------------------------------------- evaluation


def make_host(comps: Components, unet, key: str) -> DiffusersHost:
    v = VARIANTS[key]
    sched = make_scheduler(NoiseObjective(v["prediction"], v["zero_snr"]).scheduler_config())
    pos = encode_prompt(comps.tokenizer, comps.text_encoder, PROMPT_PREFIX)
    return DiffusersHost(unet, comps.vae, sched, pos, cfg=1.0, cfg_rescale=0.0, tiled_vae_megapixels=0.0)


def sgim_config(args, scale: int = 1, one_pass: bool = False) -> SGIMConfig:
    if one_pass:  # the model at full resolution, seeing the same page area around each region as SGIM's pass
        return SGIMConfig(steps=args.sample_steps, sgi_max_side=100_000, run_fri="never",
                          context_margin=16 * scale, min_crop_side=CROP * scale)
    return SGIMConfig(steps=args.sample_steps, fri_steps=max(1, args.sample_steps // 2), fri_strength=0.5,
                      sgi_max_side=PAGE_SIDE, context_margin=16, min_crop_side=CROP)


def run_case(host, image, mask, config, seed=0) -> np.ndarray:
    img = torch.from_numpy(np.repeat(image[..., None], 3, axis=-1).astype(np.float32))[None]
    m = torch.from_numpy(mask.astype(np.float32))[None]
    return inpaint(host, img, m, seed=seed, config=config).image[0].numpy().mean(axis=-1)


def case_metrics(out, truth, mask, bubbles, scale: int = 1) -> dict:
    """Metrics of one fill. Invented ink is counted twice: on the output as it is, and on the output low-passed
    with a Gaussian of one structure-scale pixel (sigma = ``scale`` px), which removes the pixel speckle small
    models leave and keeps drawn shapes (the "heads and totems")."""
    from scipy.ndimage import gaussian_filter

    inked_raw, empty = metrics.invented_ink(out, truth, mask)
    inked, _ = metrics.invented_ink(gaussian_filter(out, sigma=float(scale)), truth, mask)
    in_bubbles = mask & bubbles
    paper = in_bubbles & (truth >= metrics.WHITE)
    return {
        "psnr_in": metrics.psnr(out, truth, mask, region="in"),
        "paper_white_bubbles": metrics.paper_whiteness(out, truth, in_bubbles) if in_bubbles.any() else float("nan"),
        "grey_bubbles": float(out[paper].mean()) if paper.any() else float("nan"),
        "inked": inked,
        "inked_raw": inked_raw,
        "empty": empty,
        "mean_abs_in": float(np.abs(out - truth)[mask].mean()),
    }


def evaluate_pages(host, args, scale: int, one_pass: bool = False, keep: dict | None = None,
                   pages: int | None = None) -> list[dict]:
    rows = []
    for i in range(pages or args.test_pages):
        page = test_page(i, scale)
        bubbles = bubble_mask(page)
        for kind, (image, mask, truth) in cases_of(page).items():
            if not mask.any():
                continue
            out = run_case(host, image, mask, sgim_config(args, scale, one_pass), seed=i)
            rows.append({"page": i, "kind": kind, **case_metrics(out, truth, mask, bubbles, scale)})
            if keep is not None and i == 0:
                keep[kind] = out
    return rows


def canvases():
    """Blank paper and solid black, 256 px, masked but for a 16-px frame of context."""
    mask = np.zeros((PAGE_SIDE, PAGE_SIDE), bool)
    mask[16:-16, 16:-16] = True
    return {"blank": (np.ones(mask.shape, np.float32), mask), "black": (np.zeros(mask.shape, np.float32), mask)}


def evaluate_brightness(host, args, keep: dict | None = None) -> dict:
    out = {}
    for name, (canvas, mask) in canvases().items():
        errs, means = [], []
        for seed in range(args.lin_seeds):
            res = run_case(host, canvas, mask, sgim_config(args), seed=seed)
            means.append(float(res[mask].mean()))
            errs.append(abs(means[-1] - float(canvas[mask].mean())))
            if keep is not None and seed == 0:
                keep[name] = res
        out[name] = {"error": float(np.mean(errs)), "mean": float(np.mean(means)), "min": float(min(means)),
                     "max": float(max(means))}
    return out


def summarize(rows: list[dict]) -> dict:
    out = {}
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        def mean(key, rs=rs):
            vals = [r[key] for r in rs if math.isfinite(r[key])]
            return float(np.mean(vals)) if vals else float("nan")

        empty = sum(r["empty"] for r in rs)
        out[kind] = {
            "psnr_in": mean("psnr_in"),
            "paper_white_bubbles": mean("paper_white_bubbles"),
            "grey_bubbles": mean("grey_bubbles"),
            "invented": (sum(r["inked"] for r in rs), empty),
            "invented_raw": (sum(r["inked_raw"] for r in rs), empty),
            "cases": len(rs),
        }
    return out


def cached(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value, indent=1))
    return value


# --------------------------------------------------------------------------------------------- pictures


def _u(img):
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _shown_mask(image, mask):
    return np.where(mask, 0.55 + 0.1 * image, image)  # the hole as mid grey over the page


def grid(rows: list[list[np.ndarray]], gap: int = 6) -> np.ndarray:
    h = max(im.shape[0] for r in rows for im in r)
    lines = []
    for r in rows:
        parts = []
        for im in r:
            pad = np.ones((h, im.shape[1]), np.float32)
            pad[: im.shape[0]] = im
            parts += [pad, np.ones((h, gap), np.float32)]
        lines += [np.concatenate(parts[:-1], axis=1), None]
    w = max(line.shape[1] for line in lines if line is not None)
    out = []
    for line in lines[:-1]:
        if line is None:
            out.append(np.ones((gap, w), np.float32))
        else:
            out.append(np.pad(line, ((0, 0), (0, w - line.shape[1])), constant_values=1.0))
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------------------------- report


def fmt(v, nd=2):
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def share(pair) -> str:
    k, n = pair
    return f"{k}/{n} ({100.0 * k / n:.0f} %)" if n else "n/a"


def write_report(args, results: dict, meta: dict) -> str:
    lines = [
        "# MDIM training recipe at small scale (benchmarks/train_mdim_small.py)",
        "",
        f"Three small inpainting models trained from the same random initialisation on {args.train_pages} clean "
        f"generated pages (halved to {PAGE_SIDE} px, the structure-pass scale), {args.steps} steps x {args.batch} "
        f"crops of {CROP} px each (same compute), AdamW lr {args.lr:g} (warm-up {args.warmup}), EMA {args.ema}, seed "
        f"{args.seed}. Model: diffusers UNet2DConditionModel, 3.8 M parameters, in an exact 4x4 space-to-depth "
        f"latent space (16 channels at 1/4 size; no VAE to train or to blur the results). Sampling: DDIM "
        f"{args.sample_steps} steps with each model's own schedule, no CFG. {meta['machine']}.",
        "",
        "CPU time (one core): " + ", ".join(f"{k} {v / 60:.0f} min" for k, v in meta["cpu"].items()) + ".",
        "",
        f"**Held-out pages at 2x the training scale, through SGIM** ({args.test_pages} pages; structure pass at "
        f"{PAGE_SIDE} px, refinement at full resolution with strength 0.5). bubble: whole speech bubbles masked "
        "(truth: the empty bubble); text: bubble and free text removed; large: LaMa-style boxes in the clean page. "
        "Paper white: share of the truth's white paper inside bubbles that stays >= 250/255; grey: the mean "
        "brightness there (1 = white). Invented ink: fills of empty-paper regions with more than 1 % of their "
        "pixels darker than 50 % grey, on the output low-passed by one structure-scale pixel (drawn shapes, not "
        "pixel speckle); raw: on the output as it is.",
        "",
        "| model | bubble PSNR | bubble paper white | bubble grey | bubble invented ink (raw) | text PSNR | "
        "text grey in bubbles | text invented ink (raw) | large PSNR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in args.variants:
        s = results["eval"][key]
        b, t = s["bubble"], s["text"]
        lines.append(
            f"| {VARIANTS[key]['label']} | {fmt(b['psnr_in'])} | {fmt(b['paper_white_bubbles'], 3)} | "
            f"{fmt(b['grey_bubbles'], 3)} | {share(b['invented'])} ({share(b['invented_raw'])}) | {fmt(t['psnr_in'])} | "
            f"{fmt(t['grey_bubbles'], 3)} | {share(t['invented'])} ({share(t['invented_raw'])}) | "
            f"{fmt(s['large']['psnr_in'])} |"
        )
    lines += [
        "",
        f"**Brightness of big holes (the Lin et al. effect)**: {PAGE_SIDE}-px blank paper and solid black canvases "
        f"masked but for a 16-px frame, {args.lin_seeds} seeds; mean absolute error of the mean brightness in the "
        "hole (0 = white 1.0 / black 0.0 exactly), with the range of the means.",
        "",
        "| model | blank: error | blank: mean (min..max) | black: error | black: mean (min..max) |",
        "|---|---|---|---|---|",
    ]
    for key in args.variants:
        b = results["brightness"][key]
        lines.append(
            f"| {VARIANTS[key]['label']} | {fmt(b['blank']['error'], 3)} | {fmt(b['blank']['mean'], 3)} "
            f"({fmt(b['blank']['min'], 3)}..{fmt(b['blank']['max'], 3)}) | {fmt(b['black']['error'], 3)} | "
            f"{fmt(b['black']['mean'], 3)} ({fmt(b['black']['min'], 3)}..{fmt(b['black']['max'], 3)}) |"
        )
    if results.get("scale"):
        lines += [
            "",
            f"**SGIM against one pass at full resolution, model {results['scale_model']}**, the first {args.scale_pages} "
            f"held-out pages at 2x and 4x the training scale. One pass: the model on crops around each region at full resolution (the same page area "
            f"as SGIM's structure pass sees, at least {CROP} px x the scale wide), structure {args.sample_steps} steps.",
            "",
            "| scale | method | bubble PSNR | bubble grey | bubble invented ink (raw) | text PSNR | "
            "text invented ink (raw) | large PSNR |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for scale, by_method in results["scale"].items():
            for method, s in by_method.items():
                b, t = s["bubble"], s["text"]
                lines.append(
                    f"| {scale}x | {method} | {fmt(b['psnr_in'])} | {fmt(b['grey_bubbles'], 3)} | "
                    f"{share(b['invented'])} ({share(b['invented_raw'])}) | {fmt(t['psnr_in'])} | "
                    f"{share(t['invented'])} ({share(t['invented_raw'])}) | {fmt(s['large']['psnr_in'])} |"
                )
    lines += ["", "Pictures: " + ", ".join(f"`docs/images/{n}`" for n in meta["images"]) + ".", "",
              "## Reading", "", "(written after the run; see below)", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--round", type=int, default=500, help="train every model this many steps before the next round")
    p.add_argument("--train-pages", type=int, default=400)
    p.add_argument("--test-pages", type=int, default=8)
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--lin-seeds", type=int, default=4)
    p.add_argument("--variants", default="abc")
    p.add_argument("--scale-model", default="b", help="model of the SGIM vs one-pass comparison")
    p.add_argument("--scales", default="2,4")
    p.add_argument("--scale-pages", type=int, default=4, help="held-out pages of the SGIM vs one-pass comparison")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "train_mdim_small")
    p.add_argument("--quick", action="store_true", help="smoke run: a few steps, tiny evaluation (numbers meaningless)")
    p.add_argument("--no-write", action="store_true", help="do not write the results file and pictures")
    p.add_argument("--results", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    p.add_argument("--images", type=Path, default=IMAGES, help="folder of the pictures (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.train_pages, args.test_pages, args.sample_steps, args.lin_seeds = 6, 6, 1, 2, 1
        args.scale_pages = 1
        args.save_every, args.warmup, args.round = 3, 2, 3
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    base = build_components(args.work, seed=args.seed)
    cpu = {}
    t_data = time.process_time()
    pages = training_pages(args.train_pages)
    print(f"{len(pages)} training pages in {time.process_time() - t_data:.0f} s CPU", flush=True)
    results = {"eval": {}, "brightness": {}, "scale": {}, "scale_model": args.scale_model}
    pictures = {"fills": {}, "brightness": {}, "scale": {}}
    unets = {}
    # train in rounds, every model to the same step before any goes further: stopping after any round leaves
    # models of equal compute
    folders = {}
    for milestone in sorted({m for m in range(args.round, args.steps, args.round)} | {args.steps}):
        for key in args.variants:
            folders[key] = train_variant(key, args, base, pages, milestone)
    for key in args.variants:
        unet, _ = trained_unet(base, folders[key])
        unets[key] = unet
        cpu[f"training ({key})"] = cpu_record(args.work / key).get(args.steps, float("nan"))
    t_eval = time.process_time()
    for key in args.variants:
        host = make_host(base, unets[key], key)
        keep_f, keep_b = {}, {}
        rows = cached(args.work / f"eval_{key}_{args.steps}.json", partial(evaluate_pages, host, args, 2, keep=keep_f))
        results["eval"][key] = summarize(rows)
        results["brightness"][key] = cached(args.work / f"brightness_{key}_{args.steps}.json",
                                            partial(evaluate_brightness, host, args, keep=keep_b))
        pictures["fills"][key], pictures["brightness"][key] = keep_f, keep_b
        print(key, json.dumps(results["eval"][key]), json.dumps(results["brightness"][key]), flush=True)
    if args.scale_model in unets:
        host = make_host(base, unets[args.scale_model], args.scale_model)
        for scale in (int(s) for s in args.scales.split(",")):
            results["scale"][scale] = {}
            for method, one in (("one pass", True), ("SGIM", False)):
                keep = {}
                rows = cached(args.work / f"scale_{scale}_{'one' if one else 'sgim'}_{args.steps}.json",
                              partial(evaluate_pages, host, args, scale, one_pass=one, keep=keep,
                                      pages=args.scale_pages))
                results["scale"][scale][method] = summarize(rows)
                pictures["scale"][(scale, method)] = keep
                print(scale, method, json.dumps(results["scale"][scale][method]), flush=True)
    cpu["evaluation"] = time.process_time() - t_eval
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if args.no_write:
        return 0
    images = write_pictures(args, pictures)
    meta = {"cpu": cpu, "images": images, "machine": f"{platform.machine()}, torch {torch.__version__}, "
            f"{args.threads} thread(s)"}
    text = write_report(args, results, meta)
    if args.results.is_file():  # keep the hand-written reading below the tables
        old = args.results.read_text()
        if "## Reading" in old:
            text = text.split("## Reading")[0] + "## Reading" + old.split("## Reading", 1)[1]
    args.results.write_text(text)
    print(f"wrote {args.results}")
    return 0


def write_pictures(args, pictures) -> list[str]:
    """Figures from page 0 / seed 0 (recomputed when the evaluation came from the cache)."""
    names = []
    page = test_page(0, 2)
    fills = pictures["fills"]
    if any(not fills.get(k) for k in args.variants):
        for key in args.variants:
            if not fills.get(key):
                host = make_host(*_host_parts(args, key))
                fills[key] = {kind: run_case(host, im, m, sgim_config(args), seed=0)
                              for kind, (im, m, t) in cases_of(page).items() if kind in ("bubble", "large")}
    rows = []
    for kind in ("bubble", "large"):
        image, mask, truth = cases_of(page)[kind]
        rows.append([_shown_mask(image, mask), truth] + [_u(fills[k][kind]) for k in args.variants])
    write_image(args.images / "train_mdim_small_fills.png", grid(rows)[..., None])
    names.append("train_mdim_small_fills.png")
    bright = pictures["brightness"]
    rows = []
    for name, (canvas, mask) in canvases().items():
        row = [_shown_mask(canvas, mask)]
        for key in args.variants:
            if not bright.get(key):
                host = make_host(*_host_parts(args, key))
                bright[key] = {n: run_case(host, c, m, sgim_config(args), seed=0) for n, (c, m) in canvases().items()}
            row.append(_u(bright[key][name]))
        rows.append(row)
    write_image(args.images / "train_mdim_small_brightness.png", grid(rows)[..., None])
    names.append("train_mdim_small_brightness.png")
    scales = [int(s) for s in args.scales.split(",")]
    if args.scale_model in args.variants and scales:
        s = max(scales)
        page = test_page(0, s)
        image, mask, truth = cases_of(page)["bubble"]
        row = [_shown_mask(image, mask)]
        for method, one in (("one pass", True), ("SGIM", False)):
            got = pictures["scale"].get((s, method), {}).get("bubble")
            if got is None:
                host = make_host(*_host_parts(args, args.scale_model))
                got = run_case(host, image, mask, sgim_config(args, s, one), seed=0)
            row.append(_u(got))
        small = [F.avg_pool2d(torch.from_numpy(r)[None, None], 2)[0, 0].numpy() for r in row]
        write_image(args.images / "train_mdim_small_sgim_vs_one_pass.png", grid([small])[..., None])
        names.append("train_mdim_small_sgim_vs_one_pass.png")
    return names


_BASE_CACHE: dict = {}


def _host_parts(args, key):
    if "base" not in _BASE_CACHE:
        _BASE_CACHE["base"] = build_components(args.work, seed=args.seed)
    base = _BASE_CACHE["base"]
    unet, _ = trained_unet(base, dict(state.list_checkpoints(args.work / key))[args.steps])
    return base, unet, key


if __name__ == "__main__":
    sys.exit(main())
