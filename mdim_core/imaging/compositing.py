"""Pixel-exact compositing: new content inside the mask, the original outside it, bit for bit.

Images ``[B, H, W, C]``, masks/weights ``[B, H, W]`` (torch). Nothing is edited in place.
"""

from __future__ import annotations

import torch

Box = tuple[int, int, int, int]


def composite(
    original: torch.Tensor,
    new: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``new`` inside ``mask``, ``original`` outside it, in ``original``'s dtype.

    ``mask`` is binary (1 = repaint; float or bool). ``weight`` (optional, from ``masks.feather``) blends
    inside the mask only: where it is 1 the result is ``new`` exactly, where the mask is 0
    the result is ``original`` exactly whatever ``weight`` says.
    """
    if original.shape != new.shape:
        raise ValueError(f"new: expected shape {tuple(original.shape)} like the original, got {tuple(new.shape)}")
    if mask.shape != original.shape[:3]:
        raise ValueError(f"mask: expected shape {tuple(original.shape[:3])}, got {tuple(mask.shape)}")
    new = new.to(original.dtype)
    inside = (mask if mask.dtype == torch.bool else mask > 0.5)[..., None]
    if weight is None:
        return torch.where(inside, new, original)
    if weight.shape != mask.shape:
        raise ValueError(f"weight: expected shape {tuple(mask.shape)}, got {tuple(weight.shape)}")
    w = weight.clamp(0.0, 1.0)[..., None]
    blend = (original.float() + w * (new.float() - original.float())).to(original.dtype)
    blend = torch.where(w >= 1.0, new, blend)
    return torch.where(inside & (w > 0), blend, original)


def paste_into(out: torch.Tensor, crop: torch.Tensor, box: Box, rows: list[int] | None = None) -> None:
    """Write ``crop`` into ``out`` at ``box`` (rows of the batch, or all), in place.

    Only for buffers the caller owns (the engine's output copy), never for inputs.
    """
    y0, x0, y1, x1 = box
    if rows is None:
        out[:, y0:y1, x0:x1] = crop.to(out.dtype)
    else:
        out[rows, y0:y1, x0:x1] = crop.to(out.dtype)
