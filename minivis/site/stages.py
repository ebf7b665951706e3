"""The stages of the default site, in index order. Later work adds a stage here (one line), or a row to
``photos.PHOTO_METHODS``, ``microscope.CHANNEL_PANELS`` or ``synthesis.SYNTHESIS_PAGES``."""

from __future__ import annotations

from minivis.site.core import Stage
from minivis.site.embeddings import embedding_stage
from minivis.site.microscope import FASHION, LITE0, microscope_stage
from minivis.site.photos import photo_stage
from minivis.site.synthesis import synthesis_stage


def default_stages() -> list[Stage]:
    """Photos, the microscope of fashion_cnn and EfficientNet-Lite0, embeddings, synthesis."""
    return [photo_stage("efficientnet_lite0", cam_layer="_blocks.15"), microscope_stage(FASHION),
            microscope_stage(LITE0), embedding_stage(), synthesis_stage()]
