"""``python -m mdim_core train --model BASE --data PAGES -o OUT``: make an MDIM checkpoint from an SD1.x model.

Fine-tunes a Stable Diffusion 1.x model (a diffusers folder or a single .safetensors checkpoint, standard or
inpainting) on a folder of manga pages with the MDIM thesis' recipe: zero-terminal-SNR schedule,
v-prediction, MSE on v, the whole image masked with probability 0.75 (otherwise bubble, text, SFX, stroke
and box shapes), prompts "manga, manga style, comic, monochrome, " + the page's tags in random order, crops at
the scale of the SGIM structure pass, lr 1e-6, batch 4. See docs/training.md.

OUT receives the single-file checkpoint ``OUT/<name>.safetensors`` (ComfyUI: models/checkpoints, then Load
Checkpoint -> MDIM Zero-SNR Model -> MDIM SGIM Inpaint), the diffusers folder ``OUT/model`` (for
``python -m mdim_core inpaint --model OUT/model``), resumable checkpoints, ``train_log.csv``,
``validation.csv`` and validation pictures. Exit status: 0 done, 2 bad input or a missing package,
3 stopped (NaN loss, full disk: what was written is kept), 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.masks import MASK_KINDS
    from ..training.trainer import TrainConfig

    d = TrainConfig()
    req = parser.add_argument_group("what to train")
    req.add_argument("--model", required=True, help="base model: a diffusers folder or a single-file SD1.x .safetensors "
                     "checkpoint (4-channel or 9-channel inpainting)")
    req.add_argument("--data", required=True, help="folder of page images (searched recursively; text already removed), "
                     "with optional same-stem .txt files of comma-separated tags")
    req.add_argument("-o", "--output", required=True, help="output folder (checkpoints, logs, the trained model)")
    req.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint "
                     "(with --steps M: train on to M steps in all)")
    g = parser.add_argument_group("recipe (the MDIM thesis' values are the defaults)")
    g.add_argument("--steps", type=int, default=d.steps, help="optimizer steps in all (default: %(default)s)")
    g.add_argument("--resolution", type=int, default=d.resolution, help="crop side in px, a multiple of 64 (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step and GPU (default: %(default)s)")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate, constant (default: %(default)s)")
    g.add_argument("--full-mask-prob", type=float, default=d.full_mask_prob, help="probability that the mask is the whole crop (default: %(default)s)")
    g.add_argument("--max-side", type=int, default=d.max_side, help="pages are halved until their longest side is at most this, "
                   "the SGIM structure-pass size (default: %(default)s)")
    g.add_argument("--mask-kinds", default=",".join(d.mask_kinds), help=f"mask shapes otherwise, comma-separated from {', '.join(MASK_KINDS)} (default: all)")
    g.add_argument("--caption-dropout", type=float, default=d.caption_dropout, help="probability of an empty prompt (default: %(default)s)")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear learning-rate warm-up steps (default: 0, off)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of crops, masks, noise (default: %(default)s)")
    e = parser.add_argument_group("efficiency")
    e.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                   help="auto: bf16 on GPUs that have it, else fp16; none on CPU (default: %(default)s)")
    e.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in the backward pass: much less GPU memory, ~25%% slower")
    e.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step (default: %(default)s)")
    e.add_argument("--optimizer", choices=("auto", "adamw", "adamw8bit"), default="auto",
                   help="auto: 8-bit AdamW on a GPU when bitsandbytes is installed, else AdamW (default: %(default)s)")
    e.add_argument("--ema-decay", type=float, default=d.ema_decay, help="keep an EMA of the weights with this decay, e.g. 0.999, and write it (default: 0, off)")
    e.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping norm, 0 = off (default: %(default)s)")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when there is one (several GPUs: run with `accelerate launch -m mdim_core train ...`)")
    c = parser.add_argument_group("checkpoints, validation, output")
    c.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint interval in steps (default: %(default)s)")
    c.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="keep the last N checkpoints (default: %(default)s)")
    c.add_argument("--validate-every", type=int, default=d.validate_every, help="validation interval in steps, 0 = off (default: %(default)s)")
    c.add_argument("--val-data", default=None, help="folder of held-out pages (text removed) for validation; default: generated pages with their truth")
    c.add_argument("--val-pages", type=int, default=2, help="validation pages (default: %(default)s)")
    c.add_argument("--val-steps", type=int, default=d.val_steps, help="sampling steps of a validation structure pass (default: %(default)s)")
    c.add_argument("--tokenizer", default=None, help="CLIP tokenizer folder for a single-file base (default: ComfyUI's comfy/sd1_tokenizer when the pack is in ComfyUI)")
    c.add_argument("--save-dtype", choices=("fp16", "bf16", "fp32"), default=d.save_dtype, help="precision of the written model (default: %(default)s)")
    c.add_argument("--name", default=None, help="file name of the single-file checkpoint (default: the output folder's name)")
    c.add_argument("--log-every", type=int, default=d.log_every, help="train_log.csv interval in steps (default: %(default)s)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    x = parser.add_argument_group("comparisons (not MDIM)")
    x.add_argument("--prediction", choices=("v_prediction", "epsilon"), default=d.prediction, help="training target (default: %(default)s)")
    x.add_argument("--zero-snr", choices=("on", "off"), default="on", help="zero-terminal-SNR schedule (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import TrainingInterrupted, TrainingStopped

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TrainingStopped, TrainingInterrupted) as exc:
        print(f"[MDIM] {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..inpaint.sgim import SGIMConfig
    from ..training import trainer, validation
    from ..training.data import PageSet
    from ..training.models import load_base

    trainer.require_accelerate()
    device_type = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and device_type != "cuda":
        raise ValueError("--device cuda: no CUDA GPU is available")
    mixed, optimizer = trainer.resolve_auto(args.mixed_precision, args.optimizer, device_type)
    name = args.name
    if name:
        if "/" in name or "\\" in name:
            raise ValueError(f"--name: expected a file name, got {name!r}")
        name = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    cfg = trainer.TrainConfig(
        steps=args.steps, resolution=args.resolution, batch_size=args.batch_size, lr=args.lr,
        full_mask_prob=args.full_mask_prob, max_side=args.max_side, grad_accum=args.grad_accum,
        mixed_precision=mixed, gradient_checkpointing=args.gradient_checkpointing, ema_decay=args.ema_decay,
        optimizer=optimizer, warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm, seed=args.seed,
        save_every=args.save_every, keep_checkpoints=args.keep_checkpoints, validate_every=args.validate_every,
        val_steps=args.val_steps, caption_dropout=args.caption_dropout, prediction=args.prediction,
        zero_snr=args.zero_snr == "on", mask_kinds=tuple(k.strip() for k in args.mask_kinds.split(",") if k.strip()),
        save_dtype=args.save_dtype, log_every=args.log_every,
    )  # fmt: skip
    pages = PageSet.from_folder(args.data, cfg.max_side, progress=not args.quiet)
    comps = load_base(args.model, tokenizer=args.tokenizer)
    validator = None
    if cfg.validate_every:
        cases = (validation.folder_cases(args.val_data, args.val_pages, cfg.max_side) if args.val_data
                 else validation.synthetic_cases(args.val_pages, cfg.max_side))
        sgim = SGIMConfig(steps=cfg.val_steps, fri_steps=max(1, cfg.val_steps // 2), sgi_max_side=cfg.max_side,
                          min_crop_side=min(512, cfg.resolution), context_margin=max(8, cfg.resolution // 8))
        validator = validation.Validator(cases, sgim)
    n_params = sum(p.numel() for p in comps.unet.parameters())
    print(
        f"[MDIM] training {Path(args.model).name} ({comps.base_channels}-channel base"
        f"{', extra input channels start at zero' if comps.base_channels == 4 else ''}; {n_params / 1e6:.1f} M UNet "
        f"parameters) on {len(pages)} pages ({pages.tagged} with tags, {len(pages.skipped)} skipped); {device_type}, "
        f"mixed precision {mixed}, {optimizer}, batch {cfg.batch_size} x {cfg.grad_accum}, lr {cfg.lr:g}"
    )
    result = trainer.train(comps, pages, cfg, args.output, resume=args.resume, validator=validator,
                           progress=not args.quiet, device=args.device if args.device != "auto" else "auto",
                           title=name)
    if result.single_file is not None:
        print(f"[MDIM] trained to step {result.step}: {result.single_file} (ComfyUI: models/checkpoints, then Load "
              f"Checkpoint -> MDIM Zero-SNR Model -> MDIM SGIM Inpaint) and {result.diffusers_dir} "
              f"(python -m mdim_core inpaint PAGE MASK -o OUT --model {result.diffusers_dir})")
    return 0
