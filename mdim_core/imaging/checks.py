"""Input checks shared by every entry point: pages and image batches, and the memory a page will need.

Each check either returns the input in the one convention of ``mdim_core`` or raises ``ValueError``
(``TypeError`` for a wrong kind of object) whose message names the input and what was expected, so
nothing fails later from deep inside a library.

- :func:`image_batch`: torch/numpy ``[B, H, W, C]`` (C = 1, 3 or 4) float pixels, finite -> torch.
- :func:`page_array`: numpy ``[H, W]`` / ``[H, W, C]`` float (0..1) or uint8 (0..255) -> ``[H, W, C]``.
- :func:`require_memory`: refuse work that would not fit in the memory free now, before allocating it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

log = logging.getLogger("MDIM")

CHANNELS = (1, 3, 4)


def image_batch(image, name: str = "image", *, rgb: bool = False, min_side: int = 1) -> torch.Tensor:
    """A batch of images as a torch tensor ``[B, H, W, C]`` with C = 1 or 3 (alpha dropped, logged).

    Accepts torch tensors and numpy arrays of floats. ``rgb``: grayscale is expanded to 3 channels
    (a view). ``min_side``: the smallest height and width accepted. NaN or infinite values are refused.
    The result is the input itself or a view of it: never write into it.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected an image batch [B, H, W, C] (torch tensor or numpy array), "
                        f"got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] not in CHANNELS:
        raise ValueError(f"{name}: expected shape [B, H, W, C] with C = 1, 3 or 4, got {tuple(image.shape)}")
    if min(image.shape[:3]) < 1:
        raise ValueError(f"{name}: empty image batch {tuple(image.shape)}")
    if min(image.shape[1:3]) < min_side:
        raise ValueError(f"{name}: expected at least {min_side}x{min_side} pixels, "
                         f"got {image.shape[2]}x{image.shape[1]}")
    if not image.is_floating_point():
        raise ValueError(f"{name}: expected float pixels in 0..1, got dtype {image.dtype}")
    lo, hi = (float(v) for v in torch.aminmax(image.detach()))  # one fast pass; NaN propagates
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"{name}: contains {bad} NaN or infinite value(s); expected finite values in 0..1")
    if image.shape[-1] == 4:
        log.info("[MDIM] %s: RGBA input, alpha channel dropped (the result is RGB)", name)
        image = image[..., :3]
    if rgb and image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    return image


def page_array(image, name: str = "image", *, keep_uint8: bool = False) -> np.ndarray:
    """One page as numpy ``[H, W, C]`` (C = 1, 3 or 4): float32 in 0..1, or uint8 with ``keep_uint8``.

    Accepts ``[H, W]`` and ``[H, W, C]`` arrays of floats (0..1) or uint8 (0..255). A view when no
    conversion is needed: never write into it.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array [H, W] or [H, W, C], got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in CHANNELS:
        raise ValueError(f"{name}: expected shape [H, W] or [H, W, C] with C = 1, 3 or 4, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty page (zero-size image), shape {image.shape}")
    if image.dtype == np.uint8:
        return image if keep_uint8 else image.astype(np.float32) * np.float32(1 / 255)
    if image.dtype.kind != "f":
        raise ValueError(f"{name}: expected float (0..1) or uint8 (0..255) pixels, got dtype {image.dtype}")
    return image.astype(np.float32, copy=False)


def available_memory() -> int | None:
    """Bytes of memory free for new allocations now (None when the system does not say)."""
    try:
        import psutil  # ComfyUI has it; optional here

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - missing or failing: fall back
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def require_memory(nbytes: int, what: str, *, available: int | None = None) -> None:
    """Raise ``MemoryError`` before work that needs ``nbytes`` when less memory than that is free.

    ``what`` names the work and its size (e.g. ``"cleanup of page.png (7016x4961 px)"``); the message
    says how much is needed and how much is free, so the user can free memory or work on a smaller page.
    """
    free = available_memory() if available is None else available
    if free is not None and nbytes > free:
        raise MemoryError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB of memory but only {free / 2**30:.1f} GiB is free; "
            f"close other programs, or work on a smaller page"
        )
