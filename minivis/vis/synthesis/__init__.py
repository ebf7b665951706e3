"""Images by optimisation: an image (or its parameterisation) is optimised for an objective.

=====================  ==========================================================  ==========================
module                 what                                                        papers
=====================  ==========================================================  ==========================
``objectives``         what to maximise (or explain): a class logit, a unit, a      Erhan 2009; Szegedy 2014
                       channel, a direction, a layer
``parameterization``   pixels, or a decorrelated Fourier spectrum                  Olah 2017
``regularizers``       L2, alpha-norm, total variation, blur, clipping             Mahendran 2015; Yosinski 2015
``transforms``         random jitter, scale, rotation (transformation robustness)  Olah 2017
``optimize``           the one loop every method here runs (SGD, Adam, L-BFGS)
``class_model``        class-model visualisation                                   Simonyan 2014
``inversion``          feature inversion                                           Mahendran & Vedaldi 2015
``decoder_inversion``  inversion by a trained up-convolutional decoder, compared   Dosovitskiy & Brox 2016
``latent_class_model`` class models in a decoder's code space (mini DGN-AM)        Nguyen et al. 2016 (NeurIPS)
``multifaceted``       one class model per cluster of the class's codes            Nguyen, Yosinski & Clune 2016
``deepdream``          DeepDream, octaves                                          Mordvintsev 2015
``adversarial``        FGSM, targeted attacks, fooling images                      Goodfellow 2015; Nguyen 2015
=====================  ==========================================================  ==========================
"""

from minivis.vis.synthesis import objectives, parameterization, regularizers, transforms
from minivis.vis.synthesis.adversarial import AdversarialResult, fgsm, fooling_image, targeted_attack
from minivis.vis.synthesis.class_model import class_model
from minivis.vis.synthesis.decoder_inversion import (
    DecoderInversion,
    InversionComparison,
    compare_inversions,
    invert_with_decoder,
)
from minivis.vis.synthesis.deepdream import deepdream
from minivis.vis.synthesis.inversion import InversionTable, inversion_table, invert
from minivis.vis.synthesis.latent_class_model import latent_class_model
from minivis.vis.synthesis.multifaceted import Facets, MultifacetedResult, cluster_facets, multifaceted_class_model
from minivis.vis.synthesis.optimize import SynthesisResult, optimize

__all__ = ["AdversarialResult", "DecoderInversion", "Facets", "InversionComparison", "InversionTable",
           "MultifacetedResult", "SynthesisResult", "class_model", "cluster_facets", "compare_inversions",
           "deepdream", "fgsm", "fooling_image", "inversion_table", "invert", "invert_with_decoder",
           "latent_class_model", "multifaceted_class_model", "objectives", "optimize", "parameterization",
           "regularizers", "targeted_attack", "transforms"]
