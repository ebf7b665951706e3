"""The visualisation methods (``mv.vis``), one module per family."""

from minivis.vis import objectives, parameterization, regularizers, transforms_robust
from minivis.vis.ablation import ablation
from minivis.vis.activations import DeadFilterReport, activations, dead_filters
from minivis.vis.adversarial import AdversarialResult, fgsm, fooling_image, targeted_attack
from minivis.vis.attribution import (
    deconvnet,
    guided_backprop,
    input_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from minivis.vis.cam import grad_cam, guided_grad_cam
from minivis.vis.class_model import class_model
from minivis.vis.deepdream import deepdream
from minivis.vis.embedding import (
    GridLayout,
    PCAResult,
    TSNEResult,
    kl_divergence,
    pca,
    pca_fit,
    tsne,
    tsne_affinities,
    tsne_fit,
    tsne_gradient,
    tsne_grid,
)
from minivis.vis.filters import filters, filters_over_training, first_layer_filters
from minivis.vis.inversion import InversionTable, inversion_table, invert
from minivis.vis.mining import LayerTop, crop_patches, top_activations
from minivis.vis.neighbours import feature_codes, nearest_neighbours
from minivis.vis.occlusion import occlusion, occlusion_attribution, occlusion_map
from minivis.vis.optimize import SynthesisResult, optimize
from minivis.vis.receptive_field import Box, ReceptiveField, receptive_field, receptive_field_box
from minivis.vis.segmentation import saliency_segmentation
