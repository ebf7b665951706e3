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
``nonparametric``      texture synthesis by copying matching neighbourhoods        Efros & Leung 1999; Wei 2000
``style``              Gram-matrix textures, neural style transfer                 Gatys 2015, 2016, 2017
``fast_style``         feed-forward stylisation, style interpolation               Johnson 2016; Dumoulin 2017
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
from minivis.vis.synthesis.fast_style import interpolate_styles, stylize
from minivis.vis.synthesis.inversion import InversionTable, inversion_table, invert
from minivis.vis.synthesis.latent_class_model import latent_class_model
from minivis.vis.synthesis.multifaceted import Facets, MultifacetedResult, cluster_facets, multifaceted_class_model
from minivis.vis.synthesis.nonparametric import efros_leung
from minivis.vis.synthesis.optimize import SynthesisResult, optimize
from minivis.vis.synthesis.style import (
    content_loss,
    gram_targets,
    style_input,
    style_loss,
    style_transfer,
    texture_synthesis,
)

__all__ = ["AdversarialResult", "DecoderInversion", "Facets", "InversionComparison", "InversionTable",
           "MultifacetedResult", "SynthesisResult", "class_model", "cluster_facets", "compare_inversions",
           "content_loss", "deepdream", "efros_leung", "fgsm", "fooling_image", "gram_targets", "interpolate_styles",
           "inversion_table", "invert", "invert_with_decoder", "latent_class_model", "multifaceted_class_model",
           "objectives", "optimize", "parameterization", "regularizers", "style_input", "style_loss", "style_transfer",
           "stylize", "targeted_attack", "texture_synthesis", "transforms"]
