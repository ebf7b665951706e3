"""The visualisation methods (``mv.vis``), one subpackage per family, as the README's table:

* ``mv.vis.attribution``: which pixels? (saliency ... occlusion)
* ``mv.vis.features``: what do units respond to? (filters, activations, top patches, PCA, t-SNE)
* ``mv.vis.synthesis``: images by optimisation (class models, inversion, DeepDream, attacks)

Every public method is also here, as ``mv.vis.<name>``.
"""

from minivis.vis.attribution import (
    CAM_METHODS,
    COMPOSITES,
    Composite,
    ablation,
    ablation_cam,
    cam,
    canonized,
    deconvnet,
    deeplift,
    eigen_cam,
    eigen_grad_cam,
    grad_cam,
    grad_cam_pp,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    hires_cam,
    input_gradient,
    integrated_gradients,
    layer_cam,
    lrp,
    lrp_composite,
    occlusion,
    occlusion_attribution,
    occlusion_map,
    saliency,
    saliency_segmentation,
    score_cam,
    smoothgrad,
    xgrad_cam,
)
from minivis.vis.features import (
    Box,
    DeadFilterReport,
    GridLayout,
    LayerTop,
    PCAResult,
    ReceptiveField,
    TSNEResult,
    activations,
    crop_patches,
    dead_filters,
    feature_codes,
    filters,
    filters_over_training,
    first_layer_filters,
    kl_divergence,
    nearest_neighbours,
    pca,
    pca_fit,
    receptive_field,
    receptive_field_box,
    top_activations,
    tsne,
    tsne_affinities,
    tsne_fit,
    tsne_gradient,
    tsne_grid,
)
from minivis.vis.synthesis import (
    AdversarialResult,
    InversionTable,
    SynthesisResult,
    class_model,
    deepdream,
    fgsm,
    fooling_image,
    inversion_table,
    invert,
    objectives,
    optimize,
    parameterization,
    regularizers,
    targeted_attack,
)
from minivis.vis.synthesis import transforms as transforms_robust  # the name it had before the families

