"""Automatic text masks: a classical detector (no weights), refinement of rough masks, and an
optional learned detector (ONNX, needs onnxruntime; imported only when used)."""

from .classical import KINDS, TextBlock, TextMaskResult, TextMaskSettings, detect_text

__all__ = ["KINDS", "TextBlock", "TextMaskResult", "TextMaskSettings", "detect_text"]
