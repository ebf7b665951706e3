"""Data for minivis: offline datasets, photos, mini-batches, image transforms and ImageNet labels.

    images, labels = mv.data.fashion_mnist("train")        # uint8 (60000, 28, 28), int64 (60000,)
    for xb, yb in mv.data.batches(images, labels, batch_size=64, shuffle=True, seed=0): ...
    img = mv.data.photo("chelsea")                         # uint8 (300, 451, 3)
    cat = mv.data.photo_mask("chelsea")                    # bool (300, 451), the cat's face
    style = mv.data.style_image("mosaic")                  # uint8 (256, 256, 3), textures and styles
    x = mv.data.to_nchw(mv.data.to_float(mv.data.center_crop(img, 224))[None])
"""

from minivis.data.batches import Batches, batches
from minivis.data.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    clear_cache,
    digits,
    fashion_mnist,
    load_dataset,
    mnist_5k,
)
from minivis.data.idx import read_idx
from minivis.data.labels import imagenet_labels
from minivis.data.photo_masks import MASKED_PHOTOS, photo_mask, photo_objects
from minivis.data.photos import PHOTOS, photo
from minivis.data.styles import STYLES, style_image
from minivis.data.transforms import center_crop, random_crops, resize, resize_shorter_side, to_float, to_nchw

__all__ = [
    "DATASETS", "FASHION_MNIST_CLASSES", "MASKED_PHOTOS", "PHOTOS", "STYLES", "Batches", "batches", "center_crop",
    "clear_cache", "digits", "fashion_mnist", "imagenet_labels", "load_dataset", "mnist_5k", "photo", "photo_mask",
    "photo_objects", "random_crops", "read_idx", "resize", "resize_shorter_side", "style_image", "to_float", "to_nchw",
]
