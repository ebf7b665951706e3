"""What do units respond to? Methods that look at the network's weights and codes.

===================  =====================================================  ==============================
module               methods                                                papers
===================  =====================================================  ==============================
``filters``          first-layer filters, any layer's filters, over training  Krizhevsky 2012
``activations``      activation maps, dead-filter statistics                Yosinski 2015
``receptive_field``  the input box one unit sees                            Araujo 2019
``top_activations``  maximally activating images and patches, streamed      Girshick 2014; Zeiler & Fergus
``projections``      the top activations projected to pixels (DeconvNet,    Zeiler & Fergus 2014;
                     guided backprop), and over training checkpoints        Springenberg 2015
``directions``       top images along random directions of a code           Szegedy 2014
``sparsity``         how sparse and localised activations are               Hoyer 2004 (measure)
``neighbours``       nearest neighbours in feature space                    Krizhevsky 2012
``pca``              PCA by (randomised) SVD                                Halko 2011
``tsne``             exact and Barnes-Hut t-SNE                             van der Maaten 2008, 2014
``embedding_grid``   a t-SNE map laid out on an image grid                  Karpathy (CS231n)
``distributed``      the dataset-level methods on Dask, merged exactly      (client= or a dask.array)
===================  =====================================================  ==============================
"""

from minivis.vis.features.activations import DeadFilterReport, activations, dead_filters
from minivis.vis.features.directions import DirectionTop, random_directions, top_images_along
from minivis.vis.features.embedding_grid import GridLayout, tsne_grid
from minivis.vis.features.filters import filters, filters_over_training, first_layer_filters
from minivis.vis.features.neighbours import feature_codes, nearest_neighbours
from minivis.vis.features.pca import PCAResult, pca, pca_fit
from minivis.vis.features.projections import (
    LayerProjections,
    project_top_activations,
    project_units,
    projections_over_training,
)
from minivis.vis.features.receptive_field import Box, ReceptiveField, receptive_field, receptive_field_box
from minivis.vis.features.sparsity import SparsityReport, activation_sparsity, hoyer_sparsity
from minivis.vis.features.top_activations import LayerTop, crop_patches, top_activations
from minivis.vis.features.tsne import TSNEResult, kl_divergence, tsne, tsne_affinities, tsne_fit, tsne_gradient

__all__ = ["Box", "DeadFilterReport", "DirectionTop", "GridLayout", "LayerProjections", "LayerTop", "PCAResult",
           "ReceptiveField", "SparsityReport", "TSNEResult", "activation_sparsity", "activations", "crop_patches",
           "dead_filters", "feature_codes", "filters", "filters_over_training", "first_layer_filters",
           "hoyer_sparsity", "kl_divergence", "nearest_neighbours", "pca", "pca_fit", "project_top_activations",
           "project_units", "projections_over_training", "random_directions", "receptive_field", "receptive_field_box",
           "top_activations", "top_images_along", "tsne", "tsne_affinities", "tsne_fit", "tsne_gradient", "tsne_grid"]
