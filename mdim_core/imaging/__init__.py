"""Pixels and geometry shared by every algorithm: boxes, padding, tiles, resampling, masks, compositing, files."""
