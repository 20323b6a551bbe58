"""Symmetric VAE: skip-connected decoding on top of the SD VAE already in memory.

See :mod:`mdim_core.symvae.model` for the Python API (``SymmetricVAE.decode(latent,
source, mask)`` is what the SGIM engine and the ComfyUI nodes call) and
:mod:`mdim_core.symvae.weights` for the adapter file format. Training:
``python -m mdim_core train-symvae --help``; restoring scans: ``python -m mdim_core restore
--vae ... --adapters ...``.
"""

from .layout import DiffusersLayout, LDMLayout, VAELayout, detect_layout
from .model import Adapter, SymmetricVAE
from .weights import load_adapters, read_adapter_file, save_adapters

__all__ = [
    "Adapter",
    "DiffusersLayout",
    "LDMLayout",
    "SymmetricVAE",
    "VAELayout",
    "detect_layout",
    "load_adapters",
    "read_adapter_file",
    "save_adapters",
]
