"""Which pixels? Methods that attribute one output (a logit, or any objective) to the input.

=====================  ==============================================================  =========================
module                 methods                                                         papers
=====================  ==============================================================  =========================
``gradients``          saliency, SmoothGrad, integrated gradients, guided backprop,
                       gradient x input, DeepLIFT (rescale: ``backward_rule("rescale")``),    Simonyan 2014; Smilkov
                       DeconvNet: one backward pass each, differing only in the ReLU    2017; Sundararajan 2017;
                       rule in force (``minivis.rules``)                               Springenberg 2015; Zeiler
                                                                                       & Fergus 2014
``cam``                the CAM family as one formula with different channel weights:   Selvaraju 2017; and the
                       Grad-CAM(++), XGrad-, HiRes-, Layer-, Score-, Ablation-,        table in cam.py
                       Eigen(-Grad)-CAM; guided Grad-CAM
``occlusion``          occlusion maps (naive and exact incremental)                    Zeiler & Fergus 2014
``occlusion_incremental``  re-running only the cone a patch changes                    Abdelzad 2019 (idea)
``ablation``           switching channels off                                          Zhou 2018
``lrp``                layer-wise relevance propagation: rules in force during         Bach 2015; Montavon 2017,
                       backward(), composites, batch-norm canonisation                 2019
``metrics``            deletion / insertion AUC, infidelity, max-sensitivity, pointing  Petsiuk 2018; Yeh 2019;
                       game, with their known biases                                   Zhang 2016
``road``               ROAD: MoRF/LeRF with noisy linear imputation                    Rong 2022
``sanity``             model-parameter randomisation (cascading, independent) and data  Adebayo 2018
                       randomisation (a random-label model) with rank correlation,
                       SSIM and HOG similarity
``segmentation``       GrabCut from a saliency map                                     Simonyan 2014
=====================  ==============================================================  =========================
"""

from minivis.vis.attribution.ablation import ablation
from minivis.vis.attribution.cam import (
    CAM_METHODS,
    ablation_cam,
    cam,
    eigen_cam,
    eigen_grad_cam,
    grad_cam,
    grad_cam_pp,
    guided_grad_cam,
    hires_cam,
    layer_cam,
    score_cam,
    xgrad_cam,
)
from minivis.vis.attribution.gradients import (
    deconvnet,
    deeplift,
    gradient_x_input,
    guided_backprop,
    input_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from minivis.vis.attribution.lrp import COMPOSITES, Composite, canonized, lrp, lrp_composite
from minivis.vis.attribution.metrics import (
    CurveResult,
    deletion,
    infidelity,
    insertion,
    max_sensitivity,
    pointing_game,
)
from minivis.vis.attribution.occlusion import occlusion, occlusion_attribution, occlusion_map
from minivis.vis.attribution.road import RoadResult, noisy_linear_imputation, removal_mask, road
from minivis.vis.attribution.sanity import SanityResult, data_randomisation, model_randomisation
from minivis.vis.attribution.segmentation import saliency_segmentation

__all__ = [
    "RoadResult", "SanityResult", "data_randomisation", "model_randomisation", "noisy_linear_imputation",
    "removal_mask", "road",
    "CAM_METHODS", "COMPOSITES", "Composite", "CurveResult", "ablation", "ablation_cam", "cam", "canonized",
    "deconvnet", "deeplift", "deletion", "eigen_cam", "eigen_grad_cam", "grad_cam", "grad_cam_pp",
    "gradient_x_input", "guided_backprop", "guided_grad_cam", "hires_cam", "infidelity", "input_gradient",
    "insertion", "integrated_gradients", "layer_cam", "lrp", "lrp_composite", "max_sensitivity", "occlusion",
    "occlusion_attribution", "occlusion_map", "pointing_game", "saliency", "saliency_segmentation", "score_cam",
    "smoothgrad", "xgrad_cam",
]
