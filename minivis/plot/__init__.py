"""Matplotlib figures for minivis results (``mv.plot``), saved as PNG.

``core`` holds the building blocks (grids, overlays, saving); each method family adds its
figures in a module of its own.
"""

from minivis.plot.attribution import (
    attribution_image,
    curve_figure,
    relevance_image,
    sanity_figure,
    show_attributions,
    show_cams,
    show_grad_cam,
    show_relevance,
)
from minivis.plot.core import image_grid, normalize, overlay, save, to_image
from minivis.plot.embedding import embedding_mosaic, embedding_scatter, explained_variance
from minivis.plot.features import (
    activation_grid,
    dead_filter_report,
    filter_channels,
    filter_grid,
    filter_history,
    neighbour_grid,
    projections_over_training,
    receptive_field_boxes,
    top_patches,
    top_projections,
)
from minivis.plot.occlusion import ablation_figure, occlusion_figure, segmentation_figure
from minivis.plot.style import interpolation_strip, style_grid, texture_figure, weight_sweep
from minivis.plot.synthesis import history_plot, inversion_comparison_figure, inversion_figure, synthesis_grid

__all__ = ["ablation_figure", "activation_grid", "attribution_image", "curve_figure", "dead_filter_report",
           "embedding_mosaic", "embedding_scatter", "explained_variance", "filter_channels", "filter_grid",
           "filter_history", "history_plot", "image_grid", "interpolation_strip", "inversion_comparison_figure",
           "inversion_figure", "neighbour_grid", "normalize", "occlusion_figure", "overlay",
           "projections_over_training", "receptive_field_boxes", "relevance_image", "sanity_figure", "save",
           "segmentation_figure", "show_attributions", "show_cams", "show_grad_cam", "show_relevance", "style_grid",
           "synthesis_grid", "texture_figure", "to_image", "top_patches", "top_projections", "weight_sweep"]
