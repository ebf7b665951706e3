"""Matplotlib figures for minivis results (``mv.plot``), saved as PNG.

``core`` holds the building blocks (grids, overlays, saving); each method family adds its
figures in a module of its own.
"""

from minivis.plot.core import image_grid, normalize, overlay, save, to_image
from minivis.plot.occlusion import ablation_figure, occlusion_figure, segmentation_figure

__all__ = ["ablation_figure", "image_grid", "normalize", "occlusion_figure", "overlay", "save", "segmentation_figure",
           "to_image"]
