"""Old scan -> clean page with a Symmetric VAE, one numpy page at a time.

:func:`restore_page` works on one page of any size (tiled when large); the ``restore`` command
(``python -m mdim_core restore --vae ... --adapters ...``) calls it for every page of a volume.
The ComfyUI node calls ``SymmetricVAE.restore`` directly.
"""

from __future__ import annotations

import numpy as np
import torch

from ..imaging import checks
from .model import DEFAULT_OVERLAP, DEFAULT_TILE, SymmetricVAE


def restore_page(
    sym: SymmetricVAE,
    page: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    grayscale: bool = True,
    name: str = "page",
) -> np.ndarray:
    """Restore one page: ``page`` float32 ``[H, W]`` or ``[H, W, C]`` in 0..1 (or uint8).

    Returns float32 ``[H, W]`` (``grayscale``) or ``[H, W, 3]`` in 0..1, same size. Pages larger
    than ``tile`` px are processed in overlapping tiles (``tile=0``: never tile). ``name`` names
    the page in error messages.
    """
    x = checks.page_array(page, name, finite=True)
    t = torch.from_numpy(np.ascontiguousarray(x[..., :3]))[None]
    with torch.no_grad():
        out = sym.restore(t, tile=tile, overlap=overlap)[0].numpy()
    return out.mean(axis=-1) if grayscale else out
