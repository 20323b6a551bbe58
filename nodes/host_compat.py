"""What differs between the ComfyUI versions the pack supports (0.8.0 is the oldest, 0.28.0 the newest tested).

Use a newer host's feature only through here, so the same pack still loads on 0.8.0 (which rejects
schema fields and input keywords it does not know).
"""

from __future__ import annotations

import inspect
import re

from comfy_api.latest import io


def _takes(cls, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - a host without introspectable inputs
        return False


#: keyword arguments that mark an input "advanced" (hidden until the user expands the node) on hosts that
#: support it; nothing on older hosts. Spread into an input: ``io.Int.Input("x", ..., **ADVANCED)``.
ADVANCED: dict = {"advanced": True} if _takes(io.Int.Input, "advanced") else {}


def _host_version() -> tuple[int, int, int] | None:
    """The running ComfyUI's version (``comfyui_version.__version__`` of its source tree), None if unknown."""
    try:
        from comfyui_version import __version__
    except ImportError:  # pragma: no cover - a packaging without the version module
        return None
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", str(__version__))
    return tuple(int(part) for part in match.groups()) if match else None


#: The host's version as (major, minor, patch), or None when it cannot be read.
HOST_VERSION: tuple[int, int, int] | None = _host_version()

#: Core Load Image reads images with PyAV since ComfyUI 0.21.0; before, with Pillow, a 16-bit grayscale
#: PNG/TIFF scan (mode I;16) came out all white (verified on 0.8.0; read correctly on 0.28.0).
LOAD_IMAGE_WHITENS_16_BIT: bool = HOST_VERSION is not None and HOST_VERSION < (0, 21, 0)
