"""Procedural manga pages with exact ground truth (see :mod:`.page`).

``generate_page(seed, size="A5", dpi=300)`` returns a :class:`SynthPage`: the page, its text-free
clean version, masks, panel boxes, the screentone-region map and metadata. Pages are float32
``[H, W]`` grayscale in 0..1 (0 = ink, 1 = paper).
"""

from .page import MASK_KINDS, PAPER_SIZES_MM, SynthPage, generate_page, page_size

__all__ = ["MASK_KINDS", "PAPER_SIZES_MM", "SynthPage", "generate_page", "page_size"]
