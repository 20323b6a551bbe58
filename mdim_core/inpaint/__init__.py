"""Inpainting: the SGIM engine, its planner, the host protocol and the hosts that live outside ComfyUI."""
