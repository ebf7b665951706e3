"""The visualisation methods (``mv.vis``), one module per family."""

from minivis.vis.ablation import ablation
from minivis.vis.occlusion import occlusion, occlusion_attribution, occlusion_map
from minivis.vis.segmentation import saliency_segmentation
