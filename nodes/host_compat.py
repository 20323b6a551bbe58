"""What differs between the ComfyUI versions the pack supports (0.8.0 is the oldest, 0.28.0 the newest tested).

Use a newer host's feature only through here, so the same pack still loads on 0.8.0 (which rejects
schema fields and input keywords it does not know).
"""

from __future__ import annotations

import inspect

from comfy_api.latest import io


def _takes(cls, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - a host without introspectable inputs
        return False


#: keyword arguments that mark an input "advanced" (hidden until the user expands the node) on hosts that
#: support it; nothing on older hosts. Spread into an input: ``io.Int.Input("x", ..., **ADVANCED)``.
ADVANCED: dict = {"advanced": True} if _takes(io.Int.Input, "advanced") else {}
