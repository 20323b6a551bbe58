"""mdim_core: the host-independent algorithms of ComfyUI-MDIM.

Never imports ``comfy``. Images use ComfyUI's convention everywhere inside:
float32 tensors/arrays ``[B, H, W, C]`` in 0..1; masks ``[B, H, W]`` with 1 = repaint.
Conversions happen at the edges only (file I/O, hosts).
"""

__version__ = "0.1.0"
