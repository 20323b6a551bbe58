"""Train Symmetric VAE adapters for restoration (the ``train-symvae`` command runs :func:`train`).

Data: a folder of clean page scans (any size, grayscale or colour). Each step takes random crops;
the input is the crop aged by :mod:`mdim_core.synth.aging` (yellowing, stains, grain, bleed-through,
uneven light, JPEG ...), the target is the page prepared as in the MDIM thesis
(:func:`mdim_core.restore.levels.prepare_ground_truth`: grayscale, auto-contrast, 90..190 -> 0..255,
computed on the whole page). A share of crops is kept clean (target = the crop itself), so the
decoder stays faithful on clean pages (inpainting), and a share gets a random hole, filled and
gated exactly as at inference, so the decoder learns to blend gated areas.

Loss: L1 + ``edge_weight`` * L1 of Sobel gradients + ``freq_weight`` * L1 of log FFT magnitudes
(both reward sharp screentone dots); gradients clipped to norm 1. The adapters learn; with
``train_decoder`` a copy of the decoder's full-resolution blocks and output layers learns too
(stored in the adapter file). The base VAE itself is frozen.
Resumable: a checkpoint (adapters, Adam state, step) is written every ``save_every`` steps as
safetensors next to the output; rerunning the same command continues from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..restore.levels import prepare_ground_truth, to_grayscale
from ..synth.aging import age_page
from ..weight_files import read_safetensors
from .model import SymmetricVAE
from .weights import save_adapters

log = logging.getLogger("MDIM")


@dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 4
    crop: int = 256
    lr: float = 2e-4
    edge_weight: float = 0.5
    freq_weight: float = 0.05
    clean_fraction: float = 0.25
    mask_fraction: float = 0.25
    dpi: float = 300.0
    lo: float = 90.0
    hi: float = 190.0
    seed: int = 0
    save_every: int = 200
    train_decoder: bool = False

    def __post_init__(self):
        for name in ("steps", "batch", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.crop < 32 or self.crop % 8:
            raise ValueError(f"crop: expected a multiple of 8 of at least 32 px, got {self.crop}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        for name in ("clean_fraction", "mask_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected 0..1, got {getattr(self, name)}")
        for name in ("edge_weight", "freq_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")


class CropSampler:
    """Random (aged input, prepared target, hole mask) crops from clean pages.

    ``pages``: clean pages, float32 ``[H, W]`` grayscale in 0..1 (0 = ink). ``aged``: optional
    pre-aged versions of every page (a list of RGB ``[H, W, 3]`` arrays per page): aged inputs are
    then crops of one of them at the same place (page-scale effects such as vignetting look as on
    a whole page); without it every crop is aged on its own. Deterministic: a batch depends only
    on the generator passed in.
    """

    def __init__(self, pages: list[np.ndarray], cfg: TrainConfig, aged: list[list[np.ndarray]] | None = None):
        if not pages:
            raise ValueError("pages: no training pages")
        if aged is not None and (len(aged) != len(pages) or any(not a for a in aged)):
            raise ValueError("aged: expected a non-empty list of aged versions for every page")
        self.aged = None if aged is None else [list(versions) for versions in aged]  # never edit the caller's
        c = cfg.crop
        self.cfg = cfg
        self.clean, self.target = [], []
        for p in pages:
            g = to_grayscale(p)
            t = prepare_ground_truth(g, cfg.lo, cfg.hi)
            ph, pw = max(0, c - g.shape[0]), max(0, c - g.shape[1])
            if ph or pw:  # small pages: pad with paper white
                g = np.pad(g, ((0, ph), (0, pw)), constant_values=1.0)
                t = np.pad(t, ((0, ph), (0, pw)), constant_values=1.0)
                if self.aged is not None:
                    k = len(self.clean)
                    self.aged[k] = [np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge") for a in self.aged[k]]
            self.clean.append(g)
            self.target.append(t)

    def sample(self, rng: np.random.Generator, n: int):
        c, cfg = self.cfg.crop, self.cfg
        inp = np.zeros((n, c, c, 3), np.float32)
        tgt = np.zeros((n, c, c), np.float32)
        hole = np.zeros((n, c, c), np.float32)
        for i in range(n):
            k = int(rng.integers(len(self.clean)))
            g, t = self.clean[k], self.target[k]
            y = int(rng.integers(g.shape[0] - c + 1))
            x = int(rng.integers(g.shape[1] - c + 1))
            crop = g[y : y + c, x : x + c]
            if rng.uniform() < cfg.clean_fraction:
                inp[i] = crop[..., None]
                tgt[i] = crop
            else:
                if self.aged is not None:
                    versions = self.aged[k]
                    inp[i] = versions[int(rng.integers(len(versions)))][y : y + c, x : x + c]
                else:
                    inp[i] = age_page(crop, seed=int(rng.integers(2**31)), dpi=cfg.dpi)
                tgt[i] = t[y : y + c, x : x + c]
            if rng.uniform() < cfg.mask_fraction:
                hh, ww = (int(v) for v in rng.integers(c // 8, c // 2, size=2))
                y0, x0 = int(rng.integers(c - hh)), int(rng.integers(c - ww))
                hole[i, y0 : y0 + hh, x0 : x0 + ww] = 1.0
        return torch.from_numpy(inp), torch.from_numpy(tgt), torch.from_numpy(hole)


def _sobel(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=g.device, dtype=g.dtype)
    gx = F.conv2d(g, k.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(g, k.t().contiguous().view(1, 1, 3, 3), padding=1)
    return gx, gy


def restoration_loss(out: torch.Tensor, target: torch.Tensor, edge_weight: float, freq_weight: float):
    """``out`` [B,3,H,W] in model space (-1..1), ``target`` [B,H,W] in 0..1. Returns (total, parts)."""
    o = (out + 1.0) / 2.0
    t = target[:, None].to(o)
    l1 = (o - t).abs().mean()
    total = l1
    parts = {"l1": l1.item()}
    og = o.mean(dim=1, keepdim=True)
    if edge_weight > 0:
        ox, oy = _sobel(og)
        tx, ty = _sobel(t)
        edge = (ox - tx).abs().mean() + (oy - ty).abs().mean()
        total = total + edge_weight * edge
        parts["edge"] = edge.item()
    if freq_weight > 0:
        fo = torch.log1p(torch.fft.rfft2(og).abs())
        ft = torch.log1p(torch.fft.rfft2(t).abs())
        freq = (fo - ft).abs().mean()
        total = total + freq_weight * freq
        parts["freq"] = freq.item()
    return total, parts


def train_step(sym: SymmetricVAE, batch, cfg: TrainConfig, device) -> tuple[torch.Tensor, dict]:
    inp, tgt, hole = (t.to(device) for t in batch)
    layout = sym.layout
    with torch.no_grad():
        x = inp.movedim(-1, 1) * 2.0 - 1.0
        z = layout.encode_mean(x)
        gates = None
        if bool(hole.any()):
            m = hole[:, None]
            x = torch.where(m >= 0.5, torch.ones_like(x), x)
            gates = sym.gates(m)
        taps = layout.taps(x)
    out = sym.skip_decode(z, None, gates, taps=taps)
    return restoration_loss(out, tgt, cfg.edge_weight, cfg.freq_weight)


# --- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(path: Path, sym: SymmetricVAE, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> None:
    from safetensors.torch import save_file

    names = {id(p): n for n, p in sym.named_parameters()}
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in sym.state_dict().items()}
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p)
            if not state:
                continue
            n = names[id(p)]
            for key, value in state.items():
                tensors[f"optim.{n}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"mdim.kind": "symvae-train-checkpoint", "step": str(step), "config": json.dumps(dataclasses.asdict(cfg)),
            "hidden": json.dumps(sym.hidden)}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_checkpoint(path: Path, sym: SymmetricVAE, opt: torch.optim.Optimizer) -> int:
    try:
        tensors, meta = read_safetensors(path)
    except ValueError as exc:
        raise ValueError(f"checkpoint: {exc}; delete it to start over") from None
    if meta.get("mdim.kind") != "symvae-train-checkpoint":
        raise ValueError(f"checkpoint: {path.name} is not a Symmetric VAE training checkpoint")
    if json.loads(meta.get("hidden", "null")) != sym.hidden:
        raise ValueError(f"checkpoint: {path.name} has adapter widths {meta.get('hidden')}, expected {sym.hidden}")
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    p0 = next(sym.parameters())
    sym.load_state_dict({k: v.to(p0) for k, v in model.items()})
    for n, p in sym.named_parameters():
        state = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            t = tensors.get(f"optim.{n}.{key}")
            if t is not None:
                state[key] = t.to(p.device) if key != "step" else t
        if state:
            opt.state[p] = state
    return int(meta.get("step", "0"))


# --- the loop -------------------------------------------------------------------------------------


def train(
    sym: SymmetricVAE,
    pages: list[np.ndarray],
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",  # or "auto", "cuda", ... (see mdim_core.device)
    progress: bool = True,
    extra_meta: dict | None = None,
    aged: list[list[np.ndarray]] | None = None,
) -> dict:
    """Train the adapters of ``sym`` on ``pages``; writes the adapter file ``out``. Returns a summary."""
    from tqdm import tqdm

    device = resolve_device(device)
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint else out.with_name(out.stem + ".ckpt.safetensors")
    base = sym.base
    base.to(device)
    base.requires_grad_(False)
    base.eval()
    if cfg.train_decoder:
        sym.enable_decoder_tuning()
    sym.to(device)
    sym.train()
    opt = torch.optim.Adam(sym.parameters(), lr=cfg.lr)
    start = 0
    if ckpt.is_file():
        start = load_checkpoint(ckpt, sym, opt)
        log.info("[MDIM] resuming from %s at step %d", ckpt.name, start)
    sampler = CropSampler(pages, cfg, aged)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="symvae", unit="step")
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])
        loss, parts = train_step(sym, sampler.sample(rng, cfg.batch), cfg, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sym.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", l1=f"{parts['l1']:.4f}")
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save_checkpoint(ckpt, sym, opt, step + 1, cfg)
    bar.close()
    summary = {
        "steps": cfg.steps,
        "resumed_at": start,
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "config": dataclasses.asdict(cfg),
        **(extra_meta or {}),
    }
    sym.eval()
    save_adapters(sym, out, train=summary)
    save_checkpoint(ckpt, sym, opt, cfg.steps, cfg)
    return summary
