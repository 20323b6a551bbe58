"""Training memory and time against resolution: measured with a small model on CPU, estimated for SD1.5 on a GPU.

This machine has no GPU. What it can measure, it measures; the GPU figures are estimates with their basis:

1. Measured (CPU, one thread, float32): one training step (forward, MSE, backward, AdamW) of a small
   model with SD1.5's channel width, text width and attention layout but two levels of one res block (the
   UNet of the real-host tests, 9 input channels, 44 M parameters), at 128..512 px, batch 1, with and without
   gradient checkpointing: CPU seconds per step, and the memory the step takes on top of the weights and
   optimizer state (the rise of the peak resident set size, Linux ``VmHWM``, each configuration in its own
   process).
2. The same configurations estimated by PyTorch's ``MemTracker`` on fake tensors (no memory is allocated, no
   arithmetic is done): the check that the estimator agrees with the measurement.
3. Estimated for the SD1.5 inpainting UNet (860 M parameters) at 512 px, batch 4, the way ``python -m mdim_core
   train`` runs it on a GPU: fp32 master weights, bf16 autocast, AdamW (fp32 states, or 8-bit states with
   bitsandbytes: 2 bytes per parameter instead of 8), with and without gradient checkpointing; plus the frozen
   VAE encoder and CLIP text encoder in bf16. FLOPs per step from ``FlopCounterMode`` on the same fake tensors
   give the time per step at an assumed share of a GPU's peak.

    nice -n 10 python benchmarks/train_memory.py            # writes benchmarks/results/train_memory.md
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_memory.md"
MB = 2**20

SMALL = dict(sample_size=64, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(320, 320),
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=768,
             attention_head_dim=8)
SD15 = dict(in_channels=9, cross_attention_dim=768, attention_head_dim=8)  # diffusers' defaults are SD1.x's

#: (name, dense bf16 tensor TFLOPS with fp32 accumulation, memory GB): vendors' spec sheets.
GPUS = (("RTX 3090", 71.0, 24), ("RTX 4090", 165.2, 24), ("A100 40 GB", 312.0, 40))
#: Assumed range of the share of peak a UNet training step reaches (convolutions, attention, many small layers).
GPU_UTILISATION = (0.2, 0.4)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _unet(config):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def _step(unet, opt, batch: int, side: int, autocast=None):
    lat = side // 8
    x = torch.randn(batch, unet.config.in_channels, lat, lat)
    t = torch.randint(0, 1000, (batch,))
    ctx = torch.randn(batch, 77, 768)
    with autocast or contextlib.nullcontext():
        out = unet(x, t, encoder_hidden_states=ctx).sample
    loss = (out.float() - torch.randn_like(out, dtype=torch.float32)).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=False)  # gradients stay allocated: part of the steady state, not of the step


def measure(side: int, checkpointing: bool) -> dict:
    """One configuration of part 1, in this (fresh) process."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = _unet(SMALL).train()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-6)
    _step(unet, opt, 1, 64)  # optimizer state allocated
    gc.collect()
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set size
    t0 = time.process_time()
    _step(unet, opt, 1, side)
    seconds = time.process_time() - t0
    return {"side": side, "checkpointing": checkpointing, "seconds": seconds,
            "step_mb": (_status("VmHWM") - base) / MB, "baseline_mb": base / MB}


def estimate(config, batch: int, side: int, checkpointing: bool, bf16: bool) -> dict:
    """MemTracker peak (by category) and FLOPs of one training step of ``config``, on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils.flop_counter import FlopCounterMode

    with FakeTensorMode():
        unet = _unet(config).train()
        if checkpointing:
            unet.enable_gradient_checkpointing()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-6)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else None
        tracker = MemTracker()
        tracker.track_external(unet, opt)
        with tracker:
            _step(unet, opt, 1, 64, autocast)
            tracker.reset_mod_stats()
            _step(unet, opt, batch, side, autocast)
        peak = {str(k).split(".")[-1]: v / MB for k, v in next(iter(tracker.get_tracker_snapshot("peak").values())).items()}
        flops = FlopCounterMode(display=False)
        with flops:
            _step(unet, opt, batch, side, autocast)
        params = sum(p.numel() for p in unet.parameters())
    return {"batch": batch, "side": side, "checkpointing": checkpointing, "bf16": bf16, "params": params,
            "peak_mb": peak, "tflop": flops.get_total_flops() / 1e12}


def frozen_parts(batch: int, side: int) -> dict:
    """Weights (bf16) and the encode-time peak of SD's VAE encoder and CLIP-L text encoder, on fake tensors."""
    from diffusers import AutoencoderKL
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(ROOT))
    from mdim_core.symvae.base import SD_VAE_CONFIG

    default = torch.get_default_dtype()
    with FakeTensorMode():
        torch.set_default_dtype(torch.bfloat16)  # built in bf16 (casting fake parameters is not supported)
        try:
            vae = AutoencoderKL(**SD_VAE_CONFIG).eval()
            clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                num_attention_heads=12, max_position_embeddings=77,
                                                hidden_act="quick_gelu")).eval()
        finally:
            torch.set_default_dtype(default)
        tracker = MemTracker()
        tracker.track_external(vae, clip)
        flops = FlopCounterMode(display=False)
        with tracker, flops, torch.no_grad():
            x = torch.randn(batch, 3, side, side, dtype=torch.bfloat16)
            vae.encode(x).latent_dist.sample()
            clip(torch.randint(0, 49408, (batch, 77)))
        peak = {str(k).split(".")[-1]: v / MB for k, v in next(iter(tracker.get_tracker_snapshot("peak").values())).items()}
        params = sum(p.numel() for p in vae.parameters()) + sum(p.numel() for p in clip.parameters())
    return {"peak_mb": peak, "params": params, "tflop": flops.get_total_flops() / 1e12}


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=7200)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measure", nargs=2, metavar=("SIDE", "CKPT"), help=argparse.SUPPRESS)
    p.add_argument("--sides", default="128,256,384,512")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "out" / "train_memory.json",
                   help="finished measurements, so an interrupted run goes on (default: %(default)s)")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(int(args.measure[0]), args.measure[1] == "1")))
        return 0
    sides = [int(s) for s in args.sides.split(",")]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}

    def cached(key, compute):
        if key not in cache:
            cache[key] = compute()
            args.cache.write_text(json.dumps(cache, indent=1))
            print(key, json.dumps(cache[key]), flush=True)
        return cache[key]

    rows = []
    for side in sides:
        for ckpt in (False, True):
            tag = f"{side}_{int(ckpt)}"
            m = cached(f"measured_{tag}", lambda: _sub(["--measure", str(side), "1" if ckpt else "0"]))  # noqa: B023
            e = cached(f"small_{tag}", lambda: estimate(SMALL, 1, side, ckpt, bf16=False))  # noqa: B023
            rows.append((m, e))
    sd = [cached(f"sd15_b4_{int(ckpt)}", lambda: estimate(SD15, 4, 512, ckpt, bf16=True))  # noqa: B023
          for ckpt in (False, True)]
    sd1 = cached("sd15_b1_1", lambda: estimate(SD15, 1, 512, True, bf16=True))
    frozen = cached("frozen_b4", lambda: frozen_parts(4, 512))
    args.out.write_text(report(rows, sd, sd1, frozen))
    print(f"wrote {args.out}")
    return 0


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f}"


def report(rows, sd, sd1, frozen) -> str:
    lines = [
        "# Training memory and time against resolution (benchmarks/train_memory.py)",
        "",
        f"Machine: {platform.machine()}, no GPU, torch {torch.__version__}, one CPU thread (shared machine: CPU "
        "seconds, not wall time).",
        "",
        "**Measured on CPU** (float32, batch 1, one training step: forward, MSE, backward, AdamW) with a small model: "
        f"SD1.5's channel width (320), text width (768) and attention, two levels of one res block, 9 input channels, "
        f"{rows[0][1]['params'] / 1e6:.1f} M parameters (weights {rows[0][1]['peak_mb']['PARAM']:.0f} MB, AdamW state "
        f"{rows[0][1]['peak_mb']['OPT']:.0f} MB). Step memory: the rise of the peak resident set size during the step "
        "(activations and temporaries) over the weights, gradients and optimizer state, which stay allocated. "
        "Estimate: PyTorch's MemTracker on fake tensors for the same step (activations + temporaries at its peak).",
        "",
        "| crop px | gradient checkpointing | CPU s / step | step memory measured MB | MemTracker estimate MB | "
        "GFLOP / step |",
        "|---|---|---|---|---|---|",
    ]
    for m, e in rows:
        est = e["peak_mb"]["ACT"] + e["peak_mb"]["TEMP"]
        lines.append(f"| {m['side']} | {'on' if m['checkpointing'] else 'off'} | {m['seconds']:.1f} | "
                     f"{m['step_mb']:.0f} | {est:.0f} | {e['tflop'] * 1e3:.0f} |")
    b4, b4c = sd
    fro = frozen["peak_mb"]
    frozen_total = fro["Total"]
    lines += [
        "",
        f"**Estimated for SD1.5 inpainting** ({b4['params'] / 1e6:.0f} M UNet parameters), 512 px, bf16 autocast, "
        "fp32 master weights, MemTracker on fake tensors. The frozen VAE encoder and CLIP-L in bf16 "
        f"({frozen['params'] / 1e6:.0f} M parameters) add {_gb(frozen_total)} GB at their encode peak "
        f"(weights {fro['PARAM']:.0f} MB). 8-bit AdamW (bitsandbytes) keeps 2 bytes of state per parameter instead "
        f"of 8 (computed, not traced: bitsandbytes needs CUDA).",
        "",
        "| batch | gradient checkpointing | weights GB | gradients GB | AdamW fp32 state GB | activations + temporaries GB | "
        "total with AdamW GB | total with 8-bit AdamW GB | TFLOP / step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in (b4, b4c, sd1):
        pk = e["peak_mb"]
        act = pk["ACT"] + pk["TEMP"]
        total = pk["PARAM"] + pk["GRAD"] + pk["OPT"] + act + frozen_total
        total8 = total - pk["OPT"] * 0.75
        lines.append(f"| {e['batch']} | {'on' if e['checkpointing'] else 'off'} | {_gb(pk['PARAM'])} | {_gb(pk['GRAD'])} | "
                     f"{_gb(pk['OPT'])} | {_gb(act)} | {_gb(total)} | {_gb(total8)} | "
                     f"{e['tflop'] + frozen['tflop'] * e['batch'] / 4:.2f} |")
    lo, hi = GPU_UTILISATION
    ratios = [m["step_mb"] / (e["peak_mb"]["ACT"] + e["peak_mb"]["TEMP"]) for m, e in rows if m["side"] >= 256]
    off_r = [r for (m, _), r in zip([x for x in rows if x[0]["side"] >= 256], ratios) if not m["checkpointing"]]
    on_r = [r for (m, _), r in zip([x for x in rows if x[0]["side"] >= 256], ratios) if m["checkpointing"]]
    lines += [
        "",
        f"How far to trust the memory estimate: on CPU the measured step memory was {min(off_r):.2f}..{max(off_r):.2f}x "
        f"MemTracker's activations without checkpointing and {min(on_r):.2f}..{max(on_r):.2f}x with it (probably "
        "temporaries inside kernels, such as the recomputed attention's, which fake tensors do not see). GPUs add allocator fragmentation and "
        "cuDNN workspace (typically 10-20 %). An EMA of the weights (`--ema-decay`) adds one fp32 copy "
        f"({_gb(b4['peak_mb']['PARAM'])} GB).",
        "",
        f"**Estimated GPU time per step** (batch 4, 512 px) = TFLOP per step / ({lo:.0%}..{hi:.0%} of the GPU's dense "
        "bf16 tensor peak, with fp32 accumulation, from the vendors' spec sheets). The share is an assumption, not a "
        "measurement; the CPU rows above show that the FLOP count itself predicts time well (their GFLOP per CPU "
        "second is nearly constant).",
        "",
        "| GPU | peak bf16 TFLOPS | s / step, checkpointing off | s / step, on | 10,000 steps, off |",
        "|---|---|---|---|---|",
    ]
    for name, tflops, _ in GPUS:
        off = [(b4["tflop"] + frozen["tflop"]) / (tflops * u) for u in (hi, lo)]
        on = [(b4c["tflop"] + frozen["tflop"]) / (tflops * u) for u in (hi, lo)]
        lines.append(f"| {name} | {tflops:.0f} | {off[0]:.2f}..{off[1]:.2f} | {on[0]:.2f}..{on[1]:.2f} | "
                     f"{off[0] * 10000 / 3600:.1f}..{off[1] * 10000 / 3600:.1f} h |")
    rates = [e["tflop"] * 1e3 / m["seconds"] for m, e in rows if m["seconds"] > 0]
    lines += ["", f"CPU GFLOP per CPU second over the measured rows: {min(rates):.1f} .. {max(rates):.1f}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
