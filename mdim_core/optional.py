"""Optional dependencies: import one where it is needed, or say which feature needs it and how to install it.

The ComfyUI nodes need only what ComfyUI itself installs. The command line's model steps need diffusers
and transformers, training needs accelerate, the learned text detector onnxruntime, PSD export psd-tools,
LaMa spandrel: each is an extra of the package (``pip install "mdim[cli]"`` etc., see pyproject.toml).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: import name -> (pip name, extra of this package that installs it)
PACKAGES = {
    "diffusers": ("diffusers", "cli"),
    "transformers": ("transformers", "cli"),
    "accelerate": ("accelerate", "train"),
    "onnxruntime": ("onnxruntime", "detector"),
    "psd_tools": ("psd-tools", "psd"),
    "spandrel": ("spandrel", "lama"),
}


class MissingDependency(ImportError):
    """An optional package a feature needs is not installed; the message says how to install it."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` (e.g. "SGIM with a local model"), or raise :class:`MissingDependency`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name, extra = PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
        how = f'pip install {pip_name}' + (f' (or pip install "mdim[{extra}]")' if extra else "")
        raise MissingDependency(f"{feature} needs the package {pip_name}, which is not installed: {how}") from exc
