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
``deepdream``          DeepDream, octaves                                          Mordvintsev 2015
``adversarial``        FGSM, targeted attacks, fooling images                      Goodfellow 2015; Nguyen 2015
=====================  ==========================================================  ==========================
"""

from minivis.vis.synthesis import objectives, parameterization, regularizers, transforms
from minivis.vis.synthesis.adversarial import AdversarialResult, fgsm, fooling_image, targeted_attack
from minivis.vis.synthesis.class_model import class_model
from minivis.vis.synthesis.deepdream import deepdream
from minivis.vis.synthesis.inversion import InversionTable, inversion_table, invert
from minivis.vis.synthesis.optimize import SynthesisResult, optimize

__all__ = ["AdversarialResult", "InversionTable", "SynthesisResult", "class_model", "deepdream", "fgsm",
           "fooling_image", "inversion_table", "invert", "objectives", "optimize", "parameterization",
           "regularizers", "targeted_attack", "transforms"]
