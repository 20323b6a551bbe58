"""Automatic text masks: a classical detector (no weights), refinement of rough masks, and an
optional learned detector (ONNX; onnxruntime is imported only when a detector is loaded).

``find_text(page, settings, rough=None, detector=None)`` is the entry point; ``preview`` draws the
mask over the page.
"""

from .auto import find_text, preview
from .classical import KINDS, TextBlock, TextMaskResult, TextMaskSettings, detect_text
from .common import MIN_PAGE_SIDE
from .refine import refine_mask

__all__ = ["KINDS", "MIN_PAGE_SIDE", "TextBlock", "TextMaskResult", "TextMaskSettings", "detect_text", "find_text", "preview",
           "refine_mask"]
