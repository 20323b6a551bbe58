"""The training loop: fine-tune the UNet of an SD1.x (inpainting) model with the MDIM recipe.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` crops per process. For each crop: a
random crop of a structure-scale page, a mask (whole image with ``full_mask_prob``), the prompt
(prefix + shuffled tags); the crop is encoded by the frozen VAE, noised at a uniform random timestep of
the (zero-SNR) schedule, and the 9-channel UNet (noisy latent, mask, latent of the masked crop) learns
the target (v) with an MSE loss (:mod:`.objective`). Only the UNet learns; the VAE and the text encoder
are frozen.

accelerate supplies mixed precision (bf16/fp16 with fp32 master weights), several GPUs (run through
``accelerate launch``) and device placement; gradient checkpointing, gradient accumulation, an optional
EMA of the weights and 8-bit AdamW (bitsandbytes) are options.

Resumable and exact: every random number of a step comes from generators seeded by (seed, step,
micro-batch, process), and checkpoints hold the weights, the optimizer state, the EMA weights and the
loss scaler (:mod:`.state`), so ``--resume`` continues exactly where the run stopped: a run of N steps
continued to M gives the same weights as a straight run of M steps. The learning rate is constant (an
optional linear warm-up depends only on the step). Ctrl+C (or SIGTERM) finishes the current step, saves
a checkpoint and stops. A NaN/inf loss stops the run before that step changes anything, keeping the last
good checkpoint; a full disk stops it keeping everything written before.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..inpaint.diffusers_host import grey_fill, latent_cell_mask
from . import state as ckpt
from .data import Batch, CropSampler, PageSet
from .masks import MASK_KINDS, MaskSampler, check_kinds
from .models import SAVE_DTYPES, Components, save_diffusers, save_single_file
from .objective import NoiseObjective

log = logging.getLogger("MDIM")

MIXED_PRECISION = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit")
#: Settings that may change on --resume without changing what the run computes.
_FREE_ON_RESUME = {"steps", "save_every", "keep_checkpoints", "validate_every", "val_steps", "log_every", "save_dtype"}


class TrainingStopped(RuntimeError):
    """The run stopped early (NaN loss, full disk); the message says what was kept and what to try."""

    exit_code = 3


class TrainingInterrupted(RuntimeError):
    """Ctrl+C / SIGTERM: a checkpoint was saved and the run stopped."""

    exit_code = 130


def require_accelerate():
    """Import accelerate or fail with a message naming the package and how to install it."""
    try:
        import accelerate
    except ImportError:
        raise ImportError(
            "training needs the Python package 'accelerate', which is not installed: "
            "pip install accelerate (or install the pack with its 'train' extra)"
        ) from None
    return accelerate


@dataclass
class TrainConfig:
    """Settings of a training run (the thesis' values are the defaults). Invalid values raise ``ValueError``."""

    steps: int = 10000
    resolution: int = 512
    batch_size: int = 4
    lr: float = 1e-6
    full_mask_prob: float = 0.75
    max_side: int = 1024
    grad_accum: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float = 0.0
    optimizer: str = "adamw"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 500
    keep_checkpoints: int = 3
    validate_every: int = 500
    val_steps: int = 20
    caption_dropout: float = 0.0
    prediction: str = "v_prediction"
    zero_snr: bool = True
    mask_kinds: tuple = MASK_KINDS
    save_dtype: str = "fp16"
    log_every: int = 10

    def __post_init__(self):
        for name, lo in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("save_every", 1), ("keep_checkpoints", 1),
                         ("validate_every", 0), ("val_steps", 1), ("warmup_steps", 0), ("log_every", 1), ("max_side", 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}: expected a whole number >= {lo}, got {v!r}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 64 \
                or self.resolution % 64:
            raise ValueError(f"resolution: expected a multiple of 64 of at least 64 px, got {self.resolution!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive number, got {self.lr!r}")
        for name in ("full_mask_prob", "caption_dropout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name}: expected a probability in [0, 1], got {v!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay: expected 0 (off) or a number in (0, 1), got {self.ema_decay!r}")
        if not (self.max_grad_norm >= 0 and math.isfinite(self.max_grad_norm)):
            raise ValueError(f"max_grad_norm: expected >= 0 (0 = no clipping), got {self.max_grad_norm!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision: expected one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"save_dtype: expected one of {tuple(SAVE_DTYPES)}, got {self.save_dtype!r}")
        self.mask_kinds = check_kinds(self.mask_kinds)
        NoiseObjective(self.prediction, self.zero_snr)  # refuses epsilon with zero SNR

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mask_kinds"] = list(self.mask_kinds)
        return d

    def lr_at(self, step: int) -> float:
        """Constant, or a linear warm-up over the first ``warmup_steps`` (depends on the step only)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        return self.lr


@dataclass
class TrainResult:
    step: int
    resumed_from: int
    final_loss: float | None
    seconds: float
    checkpoint: Path | None = None
    single_file: Path | None = None
    diffusers_dir: Path | None = None
    validation: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- one step


def step_generators(seed: int, step: int, micro: int = 0, rank: int = 0) -> tuple[np.random.Generator, torch.Generator]:
    """The data generator and the torch generator (noise, timesteps, VAE sampling) of one micro-batch."""
    seq = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(micro), int(rank)])
    data_seq, torch_seq = seq.spawn(2)
    gen = torch.Generator().manual_seed(int(torch_seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(data_seq), gen


def latent_scale(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_prompts(comps: Components, prompts: list[str], device) -> torch.Tensor:
    tok = comps.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return comps.text_encoder(ids.to(device))[0]


class _GreyLatents:
    """The latent of an all-grey crop (the masked image of a fully masked crop), encoded once per size."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, vae, size: int, device, dtype) -> torch.Tensor:
        key = (size, str(device), dtype)
        if key not in self.cache:
            grey = torch.zeros(1, 3, size, size, device=device, dtype=dtype)  # 0.5 in 0..1
            with torch.no_grad():
                self.cache[key] = vae.encode(grey).latent_dist.mode().float()
        return self.cache[key]


def _encode(vae, pixels: torch.Tensor, generator: torch.Generator | None, dtype) -> torch.Tensor:
    """``[B, H, W, 3]`` 0..1 -> scaled latents (sampled with ``generator``, the mode without)."""
    x = pixels.movedim(-1, 1).to(next(vae.parameters()).device, dtype) * 2.0 - 1.0
    dist = vae.encode(x).latent_dist
    z = dist.sample(generator=generator) if generator is not None else dist.mode()
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    return (z.float() - shift) * float(getattr(vae.config, "scaling_factor", 0.18215) or 1.0)


def batch_loss(unet, comps: Components, batch: Batch, objective: NoiseObjective, generator: torch.Generator, *,
               device, weight_dtype=torch.float32, grey: _GreyLatents | None = None) -> torch.Tensor:
    """The loss of one batch (see the module docstring); differentiable w.r.t. ``unet`` only."""
    vae = comps.vae
    scale = latent_scale(vae)
    b, r = batch.images.shape[0], batch.images.shape[1]
    with torch.no_grad():
        latents = _encode(vae, batch.images, generator, weight_dtype)
        mask_latent = latent_cell_mask(batch.masks, scale).to(device)
        full = batch.masks.flatten(1).amin(dim=1) >= 0.5
        masked = torch.empty_like(latents)
        if bool(full.any()):
            g = (grey or _GreyLatents()).get(vae, r, device, weight_dtype)
            shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
            masked[full] = ((g - shift) * float(getattr(vae.config, "scaling_factor", 0.18215) or 1.0)).expand(
                int(full.sum()), -1, -1, -1)
        if not bool(full.all()):
            part = ~full
            masked[part] = _encode(vae, grey_fill(batch.images[part], batch.masks[part]), None, weight_dtype)
        weight = None
        if float(batch.valid.min()) < 1.0:  # leave the paper padding out of the loss
            weight = -F.max_pool2d(-batch.valid[:, None], scale).to(device)
        embeds = encode_prompts(comps, batch.prompts, device)
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)
        t = objective.sample_timesteps(b, generator).to(device)
        noisy = objective.add_noise(latents, noise, t)
        target = objective.target(latents, noise, t)
        inpaint = int(unet_config(unet).in_channels) != latents.shape[1]  # 2c + 1 channels: latent, mask, masked
        inp = torch.cat([noisy, mask_latent, masked], dim=1) if inpaint else noisy
    pred = unet(inp, t, encoder_hidden_states=embeds, return_dict=False)[0]
    return objective.loss(pred, target, weight)


def unet_config(unet):
    return getattr(unet, "module", unet).config


# --------------------------------------------------------------------------------------------- logs


class CsvLog:
    """A CSV file of rows keyed by ``step``; rows after a resume point are dropped on resume."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = Path(path), list(fields)

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r.get("step") or 0) <= step]
        self._write(rows, "w")

    def append(self, rows: list[dict]) -> None:
        self._write(rows, "a")

    def _write(self, rows, mode):
        new = mode == "w" or not self.path.is_file()
        try:
            with open(self.path, mode, newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
                if new:
                    w.writeheader()
                for r in rows:
                    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        except OSError as exc:
            if ckpt.is_disk_full(exc):
                raise ckpt.DiskFullError(exc.errno, f"the disk is full while writing {self.path}") from exc
            raise


class _Board:
    """TensorBoard scalars when tensorboard is installed (nothing otherwise)."""

    def __init__(self, folder: Path, start: int):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(folder), purge_step=start or None)

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class _StopFlag:
    """Ctrl+C / SIGTERM ask the loop to stop after the current step (a second Ctrl+C stops at once)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested = True
            log.warning("[MDIM] stopping after this step and saving a checkpoint (Ctrl+C again to stop at once)")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: the host process handles signals
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# --------------------------------------------------------------------------------------------- the loop


def make_optimizer(params, cfg: TrainConfig):
    if cfg.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ImportError("--optimizer adamw8bit needs the package 'bitsandbytes' (pip install bitsandbytes)") from None
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                   weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon)


def resolve_auto(cfg_mixed: str, cfg_optimizer: str, device_type: str) -> tuple[str, str]:
    """``auto`` -> bf16 (fp16 on GPUs without bf16) on CUDA and ``no`` elsewhere; 8-bit AdamW on CUDA with bitsandbytes."""
    mixed = cfg_mixed
    if mixed == "auto":
        if device_type == "cuda":
            mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed = "no"
    opt = cfg_optimizer
    if opt == "auto":
        try:
            import bitsandbytes  # noqa: F401

            opt = "adamw8bit" if device_type == "cuda" else "adamw"
        except ImportError:
            opt = "adamw"
    return mixed, opt


def _ema_update(ema: dict, unet, decay: float, step: int) -> None:
    d = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for n, p in unet.named_parameters():
            ema[n].lerp_(p.detach().float(), 1.0 - d)


@contextlib.contextmanager
def ema_weights(unet, ema: dict | None):
    """Temporarily put the EMA weights into ``unet`` (no-op without EMA)."""
    if ema is None:
        yield
        return
    backup = {n: p.detach().to("cpu", copy=True) for n, p in unet.named_parameters()}
    with torch.no_grad():
        for n, p in unet.named_parameters():
            p.copy_(ema[n])
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in unet.named_parameters():
                p.copy_(backup[n])


def train(comps: Components, pages: PageSet, cfg: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False,
          validator=None, progress: bool = True, export: bool = True, device: str = "auto", title: str | None = None,
          on_step=None) -> TrainResult:
    """Train ``comps.unet`` on ``pages`` into ``out_dir`` (see the module docstring). Returns what was done.

    ``out_dir`` receives ``checkpoints/``, ``train_log.csv``, ``validation.csv`` and ``validation/`` pictures,
    and with ``export`` the diffusers folder ``model/`` and the single file ``<title>.safetensors``.
    ``on_step(step)`` is called after every optimizer step (tests, benchmarks).
    Raises ``ValueError`` for bad settings, :class:`TrainingStopped` (NaN loss, full disk) and
    :class:`TrainingInterrupted` (Ctrl+C/SIGTERM, after saving).
    """
    require_accelerate()
    from accelerate import Accelerator

    from ..cli.batch import check_writable

    out = Path(out_dir)
    try:
        check_writable(out)
    except ValueError as exc:
        raise ValueError(str(exc).replace("output folder", "-o: the output folder", 1)) from None
    title = title or out.name
    ckpt.remove_partial(out)
    existing = ckpt.list_checkpoints(out)
    if existing and not resume:
        raise ValueError(
            f"-o: {out} already holds a training run (checkpoints up to step {existing[-1][0]}); pass --resume to "
            f"continue it, or choose another output folder"
        )
    accelerator = _accelerator(Accelerator, cfg.mixed_precision, device == "cpu")
    main = accelerator.is_main_process
    dev = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    objective = NoiseObjective(cfg.prediction, cfg.zero_snr)
    scheduler_config = objective.scheduler_config()
    masks = MaskSampler(page_side=pages.max_side, full_mask_prob=cfg.full_mask_prob, kinds=cfg.mask_kinds)
    sampler = CropSampler(pages, masks, cfg.resolution, cfg.caption_dropout)

    unet = comps.unet
    frozen = {}
    for name in ("vae", "text_encoder"):
        module = getattr(comps, name)
        module.requires_grad_(False).eval()
        if weight_dtype != torch.float32:  # kept to write the exact weights at the end
            frozen[name] = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        module.to(dev, weight_dtype)
    unet.to(dev, torch.float32).train()
    unet.requires_grad_(True)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = make_optimizer([p for p in unet.parameters() if p.requires_grad], cfg)
    ema = {n: p.detach().float().clone() for n, p in unet.named_parameters()} if cfg.ema_decay > 0 else None
    unet_p, optimizer_p = accelerator.prepare(unet, optimizer)

    start, last_ckpt = 0, None
    if resume and existing:
        start, last_ckpt = _load_latest(out, unet, optimizer, ema, accelerator.scaler, cfg)
    elif resume:
        log.info("[MDIM] no checkpoint in %s yet: starting from step 0", out)
    if main:
        (out / "run.json").write_text(json.dumps({"config": cfg.as_dict(), "base": comps.source,
                                                  "base_channels": comps.base_channels, "pages": len(pages),
                                                  "processes": accelerator.num_processes}, indent=2))
    train_log = CsvLog(out / "train_log.csv", ["step", "loss", "lr", "steps_per_second", "seconds"])
    val_log = CsvLog(out / "validation.csv", ["step", "case", "kind", "psnr_in", "paper_white", "seconds"])
    if main:
        train_log.truncate_after(start)
        val_log.truncate_after(start)
    board = _Board(out / "tensorboard", start) if main else None
    result = TrainResult(step=start, resumed_from=start, final_loss=None, seconds=0.0, checkpoint=last_ckpt)
    grey = _GreyLatents()
    params = [p for p in unet.parameters() if p.requires_grad]
    rank = accelerator.process_index
    bar = None
    if progress and main and start < cfg.steps:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    window: list[float] = []
    window_t = time.perf_counter()
    done = start

    def save(step):
        nonlocal last_ckpt
        if main:
            last_ckpt = ckpt.save_checkpoint(out, step, unet, optimizer, ema=ema, scaler=accelerator.scaler,
                                             config=cfg.as_dict(), extra={"base": comps.source})
            ckpt.rotate(out, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    def validate(step):
        if validator is None or not main:
            return
        if step == 0:
            validator.write_inputs(out / "validation")
        unet.eval()
        with ema_weights(unet, ema), accelerator.autocast():
            rows = validator.run(validator.host(comps, scheduler_config), out / "validation", step)
        unet.train()
        val_log.append(rows)
        from .validation import summarize

        board.scalars(step, {f"val/{k}": v for k, v in summarize(rows).items()})
        result.validation.extend(rows)

    try:
        with _StopFlag() as stop:
            if validator is not None and cfg.validate_every and start == 0:
                validate(0)
            for step in range(start, cfg.steps):
                lr = cfg.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                total = torch.zeros((), device=dev)
                for micro in range(cfg.grad_accum):
                    rng, gen = step_generators(cfg.seed, step, micro, rank)
                    batch = sampler.sample(rng, cfg.batch_size)
                    sync = contextlib.nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(unet_p)
                    with sync:
                        loss = batch_loss(unet_p, comps, batch, objective, gen, device=dev, weight_dtype=weight_dtype,
                                          grey=grey)
                        if not bool(torch.isfinite(loss.detach())):
                            total = loss.detach()
                            break
                        accelerator.backward(loss / cfg.grad_accum)
                    total = total + loss.detach() / cfg.grad_accum
                value = float(accelerator.reduce(total.reshape(1), "mean").item()) \
                    if accelerator.num_processes > 1 else float(total)
                if not math.isfinite(value):
                    optimizer_p.zero_grad(set_to_none=True)
                    raise TrainingStopped(_nan_message(value, step + 1, last_ckpt, cfg))
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer_p.step()
                optimizer_p.zero_grad(set_to_none=True)
                if ema is not None:
                    _ema_update(ema, unet, cfg.ema_decay, step)
                done = step + 1
                result.step, result.final_loss = done, value
                window.append(value)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(window[-cfg.log_every:]):.4f}", lr=f"{lr:.2e}")
                if main and (done % cfg.log_every == 0 or done == cfg.steps):
                    now = time.perf_counter()
                    row = {"step": done, "loss": float(np.mean(window)), "lr": lr,
                           "steps_per_second": len(window) / max(now - window_t, 1e-9), "seconds": now - t0}
                    train_log.append([row])
                    board.scalars(done, {"train/loss": row["loss"], "train/lr": lr})
                    window, window_t = [], now
                if done % cfg.save_every == 0 or done == cfg.steps:
                    save(done)
                if validator is not None and cfg.validate_every and (done % cfg.validate_every == 0 or done == cfg.steps):
                    validate(done)
                if on_step is not None:
                    on_step(done)
                if stop.requested and done < cfg.steps:
                    if last_ckpt is None or not last_ckpt.name.endswith(f"{done:06d}"):
                        save(done)
                    raise TrainingInterrupted(
                        f"stopped at step {done} of {cfg.steps}; checkpoint {last_ckpt} saved. Run the same command "
                        f"with --resume to go on"
                    )
        if bar is not None:
            bar.close()
            bar = None
        result.checkpoint = last_ckpt
        if export and main:
            for name, state in frozen.items():  # the exact base weights, not their half-precision copies
                getattr(comps, name).to(torch.float32).load_state_dict(state)
            dtype = SAVE_DTYPES[cfg.save_dtype]
            record = {"steps": done, "config": cfg.as_dict(), "base": comps.source, "pages": len(pages)}
            with ema_weights(unet, ema):
                result.diffusers_dir = save_diffusers(comps, out / "model", scheduler_config, dtype)
                result.single_file = save_single_file(comps, out / f"{title}.safetensors", scheduler_config, dtype,
                                                      record=record)
    except ckpt.DiskFullError as exc:
        kept = f"the last complete checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was complete yet"
        raise TrainingStopped(
            f"{exc.strerror}. Everything written before is kept ({kept}); free some space and run the same command "
            f"with --resume to go on"
        ) from exc
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"stopped at once during step {done + 1}; the last checkpoint is {last_ckpt}. Run the same command with "
            f"--resume to go on from it"
        ) from None
    finally:
        if bar is not None:
            bar.close()
        if board is not None:
            board.close()
    result.seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    return result


def _accelerator(cls, mixed_precision: str, cpu: bool):
    """An ``Accelerator``; a second run in the same process with another precision resets accelerate's
    process-wide settings (its distributed state is kept)."""
    try:
        return cls(mixed_precision=mixed_precision, cpu=cpu)
    except ValueError as exc:
        if "already been initialized" not in str(exc):
            raise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
        return cls(mixed_precision=mixed_precision, cpu=cpu)


def _nan_message(value: float, step: int, last_ckpt, cfg: TrainConfig) -> str:
    kept = (f"The last good checkpoint, {last_ckpt}, is kept; run the same command with --resume (and the changes) "
            f"to go on from it." if last_ckpt else "No checkpoint had been written yet.")
    hints = [f"a lower --lr (now {cfg.lr:g})"]
    if cfg.mixed_precision == "fp16":
        hints.append("--mixed-precision bf16 or no instead of fp16 (fp16 overflows)")
    if cfg.max_grad_norm == 0:
        hints.append("--max-grad-norm 1.0")
    hints.append("checking the data for broken or blank pages")
    return (f"the loss became {value} at step {step}; the run stopped before that step changed the weights. {kept} "
            f"Try {', '.join(hints)}.")


def _load_latest(out: Path, unet, optimizer, ema, scaler, cfg: TrainConfig) -> tuple[int, Path]:
    found = ckpt.list_checkpoints(out)
    last_error = None
    for step, folder in reversed(found):
        try:
            data = ckpt.read_checkpoint(folder)
            _check_fits(unet, data["unet"])
            unet.load_state_dict(data["unet"])
            ckpt.optimizer_from_tensors(optimizer, *data["optimizer"])
        except (ValueError, RuntimeError) as exc:
            log.warning("[MDIM] %s", exc)
            last_error = exc
            continue
        if ema is not None:
            if data["ema_weights"] is None:
                log.warning("[MDIM] %s has no EMA weights: EMA starts from the current weights", folder.name)
            else:
                for n in ema:
                    ema[n].copy_(data["ema_weights"][n])
        if scaler is not None and data.get("scaler"):
            scaler.load_state_dict(data["scaler"])
        changed = {k: (v, getattr(cfg, k, None)) for k, v in data["config"].items()
                   if k not in _FREE_ON_RESUME and _norm(getattr(cfg, k, None)) != _norm(v)}
        if changed:
            log.warning("[MDIM] resuming with changed settings (%s): the run will differ from an uninterrupted one",
                        ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()))
        log.info("[MDIM] resuming from %s (step %d)", folder.name, step)
        return step, folder
    raise ValueError(f"--resume: no readable checkpoint in {ckpt.checkpoint_dir(out)} ({last_error})")


def _check_fits(unet, state: dict) -> None:
    own = unet.state_dict()
    odd = sorted(set(own) ^ set(state)) or [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if odd:
        raise ValueError(f"the checkpoint does not fit this model (e.g. {odd[0]}): was it made from another base?")


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
