"""Matplotlib figures for minivis results (``mv.plot``), saved as PNG.

``core`` holds the building blocks (grids, overlays, saving); each method family adds its
figures in a module of its own.
"""

from minivis.plot.core import image_grid, normalize, overlay, save, to_image

__all__ = ["image_grid", "normalize", "overlay", "save", "to_image"]
