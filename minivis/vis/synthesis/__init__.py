"""Images by optimisation: an image (or its parameterisation) is optimised for an objective.

=====================  ==========================================================  ==========================
module                 what                                                        papers
=====================  ==========================================================  ==========================
``objectives``         what to maximise: a class logit, a unit, a channel, a layer  Erhan 2009
``parameterization``   pixels, or a decorrelated Fourier spectrum                  Olah 2017
``regularizers``       L2, alpha-norm, total variation, blur, clipping             Mahendran 2015; Yosinski 2015
``transforms``         random jitter, scale, rotation (transformation robustness)  Olah 2017
``optimize``           the one loop every method here runs (SGD, Adam, L-BFGS)
``class_model``        class-model visualisation                                   Simonyan 2014
``inversion``          feature inversion                                           Mahendran & Vedaldi 2015
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
from minivis.vis.synthesis.deepdream import deepdream
from minivis.vis.synthesis.fast_style import interpolate_styles, stylize
from minivis.vis.synthesis.inversion import InversionTable, inversion_table, invert
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

__all__ = ["AdversarialResult", "InversionTable", "SynthesisResult", "class_model", "content_loss", "deepdream",
           "efros_leung", "fgsm", "fooling_image", "gram_targets", "interpolate_styles", "inversion_table", "invert",
           "objectives", "optimize", "parameterization", "regularizers", "style_input", "style_loss",
           "style_transfer", "stylize", "targeted_attack", "texture_synthesis", "transforms"]
