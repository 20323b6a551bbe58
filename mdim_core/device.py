"""The torch device a command runs its models on: ``resolve_device("auto")`` or a name the user gave."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else Apple's MPS, else the CPU.

    Any other name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"xpu"`` ...) must be a torch
    device this machine has; otherwise a ``ValueError`` names it and lists the ones it has.
    """
    if isinstance(name, str) and name.strip().lower() == "auto":
        for kind in ("cuda", "mps"):
            if _count(kind):
                return torch.device(kind)
        return torch.device("cpu")
    if isinstance(name, torch.device):
        device = name
    elif isinstance(name, str):
        try:
            device = torch.device(name.strip())
        except RuntimeError:
            raise ValueError(f"device: {name!r} is not a torch device; expected one of {_choices()}") from None
    else:
        raise TypeError(f"device: expected a device name such as 'auto', 'cpu' or 'cuda', got {type(name).__name__}")
    count = _count(device.type)
    if count == 0 or (device.index is not None and device.index >= count):
        raise ValueError(f"device: {str(device)!r} is not available on this machine; expected one of {_choices()}")
    return device


def _count(kind: str) -> int:
    """How many devices of ``kind`` this machine has (0 when torch or the machine lacks it)."""
    if kind == "cpu":
        return 1
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return int(mps is not None and mps.is_available())
    backend = getattr(torch, kind, None)
    try:
        if backend is None or not backend.is_available():
            return 0
        return int(backend.device_count())
    except (AttributeError, RuntimeError):
        return 0


def _choices() -> str:
    names = ["auto", "cpu"]
    for kind in ("cuda", "xpu"):
        n = _count(kind)
        names += [kind] + [f"{kind}:{i}" for i in range(n)] if n else []
    if _count("mps"):
        names.append("mps")
    return ", ".join(names)
