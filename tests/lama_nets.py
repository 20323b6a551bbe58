"""spandrel's LaMa network with random weights, written in the file layouts users have (no downloads).

Used by the unit tests (tests/test_lama.py), the integration tests and the benchmarks. Needs spandrel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

LAYOUTS = ("safetensors", "lama-ckpt", "gen-state-dict", "torchscript")


def random_lama(seed: int = 0) -> torch.nn.Module:
    """spandrel's LaMa (big-lama architecture) with random weights and batch-norm statistics, deterministic for a seed."""
    from spandrel.architectures.LaMa import LaMa

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LaMa(in_nc=4, out_nc=3).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in net.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return net


def traced(module: torch.nn.Module, path, size: int = 32) -> dict[str, torch.Tensor]:
    """Save ``module(image, mask)`` traced as a TorchScript file (like IOPaint's big-lama.pt); its state dict."""
    x, m = torch.rand(1, 3, size, size), torch.ones(1, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.jit.trace(module.eval(), (x, m), check_trace=False).save(str(path))
        return torch.jit.load(str(path)).state_dict()


def write_lama(net: torch.nn.Module, path, layout: str = "safetensors") -> Path:
    """Write ``net``'s weights as a user's file would hold them:

    ``safetensors``: spandrel's names (``model.model.*``); ``lama-ckpt``: a LaMa training checkpoint
    (``state_dict`` with ``generator.model.*`` next to discriminator weights); ``gen-state-dict``: a bare
    generator under ``gen_state_dict`` (manga fine-tunes); ``torchscript``: the network traced.
    """
    path = Path(path)
    sd = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    if layout == "safetensors":
        save_file(sd, str(path))
    elif layout == "lama-ckpt":
        inner = {"generator." + k[len("model."):]: v for k, v in sd.items()}
        inner["discriminator.model.0.0.weight"] = torch.zeros(2, 2)
        torch.save({"state_dict": inner, "epoch": 3}, path)
    elif layout == "gen-state-dict":
        torch.save({"gen_state_dict": {k[len("model."):]: v for k, v in sd.items()}}, path)
    elif layout == "torchscript":
        traced(net, path)
    else:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    return path
