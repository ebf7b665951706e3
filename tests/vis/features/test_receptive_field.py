"""Receptive fields: the arithmetic against the empirical support of the input gradient of a unit.

The reference: make every weight and bias positive and the input positive, so every activation
is positive and no gradient can cancel; replace max-pooling by average pooling over the same
windows (max-pooling reads its whole window, but its gradient only reaches the maximum). Then
d unit / d input is nonzero exactly on the pixels the unit depends on, and the box of those
pixels is the receptive field, clipped at the image border.
"""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.nn import AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential
from minivis.vis.features.receptive_field import Box, receptive_field, receptive_field_box


def _positive(model: mv.nn.Module, seed: int = 0) -> mv.nn.Module:
    """Positive weights (scaled by 1/fan_in so activations stay small: ReLU6 must not clip), positive
    biases, identity batch norm, max-pools swapped for average pools over the same windows."""
    rng = np.random.default_rng(seed)
    types = [type(m).__name__ for m in model.modules()]
    for _, module in model.named_modules():
        for name, child in list(module._modules.items()):
            if isinstance(child, MaxPool2d):
                assert child.dilation == 1
                avg = AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                module._modules[name] = avg  # in place: setattr would move the layer to the end of the Sequential
                object.__setattr__(module, name, avg)
    for module in model.modules():
        if isinstance(module, Conv2d | Linear):
            w = module.weight.data
            fan_in = int(np.prod(w.shape[1:]))
            module.weight.data = (rng.uniform(0.5, 1.0, w.shape) / fan_in).astype(np.float64)
            if module.bias is not None:
                module.bias.data = np.full(module.bias.shape, 0.01)
        elif isinstance(module, BatchNorm2d):
            module.weight.data = np.ones(module.weight.shape)
            module.bias.data = np.full(module.bias.shape, 0.01)
            module._set_buffer("running_mean", np.zeros(module.running_mean.shape))
            module._set_buffer("running_var", np.ones(module.running_var.shape) - module.eps)
    model.double().eval().requires_grad_(False)
    assert [type(m).__name__ for m in model.modules()] == [
        "AvgPool2d" if t == "MaxPool2d" else t for t in types], "the swap must keep the layer order"
    return model


def _supports(model, layer, input_shape, units, seed=0):
    """For each (c, y, x): the (H, W) mask of input pixels with a nonzero gradient, and the map size."""
    x = mv.tensor(np.random.default_rng(seed).uniform(0.1, 1.0, (1, *input_shape)), requires_grad=True)
    out = mv.nn.forward_to(model, x, layer)
    assert float(out.data.min()) > 0, "the construction needs every activation positive"
    masks = []
    for c, y, xx in units:
        x.grad = None
        out[0, c, y, xx].backward(retain_graph=True)
        masks.append((x.grad[0] != 0).any(axis=0))
    return masks, out.shape[2:]


def _units(out_hw, channels, rng, n_random=2):
    h, w = out_hw
    corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]
    randoms = [(int(rng.integers(h)), int(rng.integers(w))) for _ in range(n_random)]
    return [(int(rng.integers(channels)), y, x) for y, x in corners + randoms]


def _box_mask(box: Box, shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box.top:box.bottom, box.left:box.right] = True
    return mask


def _check_layer(model, layer, input_shape, holes=False, seed=0):
    rf = receptive_field(model, layer, input_shape[1:])
    probe = mv.nn.forward_to(model, mv.tensor(np.ones((1, *input_shape))), layer)
    assert rf.out_size == probe.shape[2:], f"{layer}: walked map size {rf.out_size}, forward gives {probe.shape[2:]}"
    units = _units(rf.out_size, probe.shape[1], np.random.default_rng(seed))
    masks, _ = _supports(model, layer, input_shape, units, seed)
    for (c, y, x), mask in zip(units, masks, strict=True):
        box = receptive_field_box(model, layer, y, x, input_shape[1:])
        expected = _box_mask(box, mask.shape)
        where = f"{layer} unit (c={c}, y={y}, x={x}), rf {rf}"
        if holes:  # dilation: the support has gaps, but lies in the box and (away from the border) spans it
            rows, cols = np.nonzero(mask)
            assert not (mask & ~expected).any(), where
            if box == rf.box(y, x, clip=False):
                assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == tuple(box), where
        else:
            np.testing.assert_array_equal(mask, expected, err_msg=where)


# --------------------------------------------------------------------------- gradient support
@pytest.mark.parametrize("layer", ["features.2", "features.4", "features.7", "features.9"])
def test_fashion_cnn_matches_gradient_support(layer):
    mv.nn.init.seed(0)
    _check_layer(_positive(mv.models.FashionCNN()), layer, (1, 28, 28))


def _toy_net() -> Sequential:
    return Sequential(
        Conv2d(2, 3, 3, stride=2, padding=1), ReLU(),                      # 0, 1
        Conv2d(3, 3, 3, dilation=2, padding=2), ReLU(),                    # 2: dilated after strided: holes
        MaxPool2d(3, stride=2, padding=1),                                 # 4
        Conv2d(3, 2, (3, 5), stride=(1, 2), padding=(0, 1)),               # 5: non-square, asymmetric
        BatchNorm2d(2),                                                    # 6
        AvgPool2d(2, ceil_mode=True),                                      # 7: ceil mode
        Conv2d(2, 2, 3, padding="same"),                                   # 8
        Conv2d(2, 2, 4, stride=3, padding=(2, 1, 0, 3)),                   # 9: even kernel, 4-tuple padding
    )


@pytest.mark.parametrize("layer,holes", [("0", False), ("2", True), ("4", True), ("5", True), ("7", True),
                                         ("8", True), ("9", True)])
def test_dilated_strided_toy_net_matches_gradient_support(layer, holes):
    mv.nn.init.seed(1)
    _check_layer(_positive(_toy_net()), layer, (2, 45, 67), holes=holes)


def test_dilation_without_stride_has_no_holes_and_stride_gaps_are_real():
    mv.nn.init.seed(2)
    net = _positive(Sequential(Conv2d(1, 1, 3, dilation=2, padding=2), Conv2d(1, 1, 3, dilation=3)))
    _check_layer(net, "0", (1, 20, 20), holes=True)  # a single dilated conv reads every other pixel
    masks, _ = _supports(net, "0", (1, 20, 20), [(0, 5, 5)])
    assert masks[0].sum() == 9


def test_stride_larger_than_kernel_leaves_gaps_between_units():
    mv.nn.init.seed(3)
    net = _positive(Sequential(Conv2d(1, 1, 2, stride=3)))
    rf = receptive_field(net, "0", (12, 12))
    assert tuple(rf) == ((2, 2), (3, 3), (0, 0))
    _check_layer(net, "0", (1, 12, 12))


@pytest.mark.parametrize("layer", ["_conv_stem", "_blocks.1._depthwise_conv", "_blocks.2", "_blocks.4",
                                   "_blocks.5._act1"])
def test_efficientnet_layers_match_gradient_support(layer):
    mv.nn.init.seed(4)
    # Odd, non-square input: TensorFlow SAME puts the odd padding pixel at the bottom/right.
    _check_layer(_positive(mv.models.EfficientNetLite()), layer, (3, 45, 39))


# --------------------------------------------------------------------------- known values
def test_alexnet_and_vgg16_published_values():
    # Araujo, Norris & Sim (Distill 2019): AlexNet pool5 195 px, VGG-16 pool5 212 px, both jump 32.
    alexnet = Sequential(Conv2d(1, 1, 11, 4, 2), ReLU(), MaxPool2d(3, 2), Conv2d(1, 1, 5, padding=2), ReLU(),
                         MaxPool2d(3, 2), Conv2d(1, 1, 3, padding=1), ReLU(), Conv2d(1, 1, 3, padding=1), ReLU(),
                         Conv2d(1, 1, 3, padding=1), ReLU(), MaxPool2d(3, 2))
    assert tuple(receptive_field(alexnet, "0")) == ((11, 11), (4, 4), (-2, -2))
    assert tuple(receptive_field(alexnet, "12")) == ((195, 195), (32, 32), (-66, -66))
    layers = []
    for item in mv.models.VGG_CONFIGS["vgg16"]:
        layers += [MaxPool2d(2, 2)] if item == "M" else [Conv2d(1, 1, 3, padding=1), ReLU()]
    vgg = Sequential(*layers)
    sizes = [receptive_field(vgg, str(i), (224, 224)).size[0] for i, m in enumerate(layers) if not isinstance(m, ReLU)]
    assert sizes == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert receptive_field(vgg, str(len(layers) - 1), (224, 224)).out_size == (7, 7)


def test_fashion_cnn_values_box_and_unpacking():
    model = mv.models.FashionCNN()
    size, jump, start = receptive_field(model, "features.9")
    assert (size, jump, start) == ((16, 16), (4, 4), (-6, -6))
    assert receptive_field(model, "features.4").out_size == (14, 14)
    assert receptive_field_box(model, "features.9", 0, 0) == Box(0, 0, 10, 10)     # clipped at the top-left
    assert receptive_field_box(model, "features.9", 3, 2) == Box(6, 2, 22, 18)
    assert receptive_field_box(model, "features.9", 6, 6) == Box(18, 18, 28, 28)   # clipped at the bottom-right
    assert receptive_field(model, "features.9").box(0, 0, clip=False) == Box(-6, -6, 10, 10)
    assert receptive_field(model, "features.9").center(3, 2) == (13.5, 9.5)
    # A fully connected layer sees the whole image: the box of its one position covers all of it.
    whole = receptive_field(model, "classifier.3")
    assert whole.out_size == (1, 1) and whole.box(0, 0) == Box(0, 0, 28, 28)
    assert tuple(receptive_field(model, "")) == tuple(whole)


def test_residual_block_output_equals_its_main_path():
    model = mv.models.EfficientNetLite()
    assert model.get_submodule("_blocks.2").skip
    block = receptive_field(model, "_blocks.2", (64, 64))
    main = receptive_field(model, "_blocks.2._bn2", (64, 64))
    assert block == main


# --------------------------------------------------------------------------- bad input
def test_bad_inputs():
    model = mv.models.FashionCNN()
    with pytest.raises(TypeError, match="receptive_field: model must be a minivis nn.Module, got str"):
        receptive_field("fashion_cnn", "features.0")
    with pytest.raises(ValueError, match="receptive_field: layer: 'features.99' is not a layer"):
        receptive_field(model, "features.99")
    with pytest.raises(TypeError, match="receptive_field: layer must be a dotted layer name"):
        receptive_field(model, 3)
    with pytest.raises(TypeError, match="input_size must be an int or a pair of ints, got 'big'"):
        receptive_field(model, "features.0", "big")
    with pytest.raises(ValueError, match="layer '0' leaves no output position for a map of 3"):
        receptive_field(Sequential(Conv2d(1, 1, 5)), "0", (3, 3))
    same = Sequential(Conv2d(1, 1, 3, stride=2, padding="same"))
    with pytest.raises(ValueError, match="uses padding='same', which depends on the map size; pass input_size"):
        receptive_field(same, "0")
    with pytest.raises(ValueError, match="a global layer .* pass input_size"):
        receptive_field(Sequential(Conv2d(1, 1, 3), mv.nn.Flatten()), "1")
    with pytest.raises(TypeError, match=r"don't know how layer '0' \(ConvTranspose2d\)"):
        receptive_field(Sequential(mv.nn.ConvTranspose2d(1, 1, 3)), "0", (8, 8))
    with pytest.raises(ValueError, match=r"adaptive pooling to 2 has bins of unequal size"):
        receptive_field(Sequential(mv.nn.AdaptiveAvgPool2d(2)), "0", (9, 9))
    with pytest.raises(ValueError, match="receptive_field_box: y=14 is outside layer 'features.4'"):
        receptive_field_box(model, "features.4", 14, 0)
    with pytest.raises(ValueError, match="receptive_field_box: x=-1 is outside"):
        receptive_field_box(model, "features.4", 0, -1)
    with pytest.raises(TypeError, match="receptive_field_box: y must be an int, got 1.5"):
        receptive_field_box(model, "features.4", 1.5, 0)
    with pytest.raises(ValueError, match="receptive_field_box: pass image_size"):
        receptive_field_box(Sequential(Conv2d(1, 1, 3)), "0", 0, 0)
    with pytest.raises(ValueError, match=r"^ReceptiveField\.box: clipping needs the image size"):
        receptive_field(Sequential(Conv2d(1, 1, 3)), "0").box(0, 0)


def test_receptive_field_box_refuses_under_its_own_name():
    """Its model, layer and image_size were refused as receptive_field's (and image_size as input_size)."""
    model = mv.models.FashionCNN()
    with pytest.raises(TypeError, match="receptive_field_box: model must be a minivis nn.Module, got str"):
        receptive_field_box("fashion_cnn", "features.0", 0, 0)
    with pytest.raises(ValueError, match="receptive_field_box: layer: 'features.99' is not a layer"):
        receptive_field_box(model, "features.99", 0, 0)
    with pytest.raises(ValueError, match="receptive_field_box: image_size must be >= 1, got -3"):
        receptive_field_box(model, "features.0", 0, 0, image_size=-3)
    with pytest.raises(ValueError, match="receptive_field_box: a global layer .* pass image_size"):
        receptive_field_box(Sequential(Conv2d(1, 1, 3), mv.nn.Flatten()), "1", 0, 0)


def test_receptive_field_box_method_refuses_under_its_own_name():
    """ReceptiveField.box once called itself receptive_field_box, and took any y, x and clip."""
    rf = receptive_field(mv.models.FashionCNN(), "features.4", 28)  # a 14 x 14 map
    assert rf.out_size == (14, 14)
    assert rf.box(np.int64(13), 0) == rf.box(13, 0) == receptive_field_box(mv.models.FashionCNN(), "features.4", 13, 0)
    assert receptive_field(Sequential(Conv2d(1, 1, 3)), "0").box(2, 1, clip=False) == Box(2, 1, 5, 4)  # no size known
    for args, error, message in [
        ((1.5, 0), TypeError, "y must be an int, got 1.5"),
        ((0, "1"), TypeError, "x must be an int, got '1'"),
        ((True, 0), TypeError, "y must be an int, got True"),
        ((14, 0), ValueError, r"y=14 is outside the layer's map \(0\.\.13\)"),
        ((0, -1), ValueError, r"x=-1 is outside the layer's map \(0\.\.13\)"),
        ((0, 0, "yes"), TypeError, "clip must be True or False"),
    ]:
        with pytest.raises(error, match=rf"^ReceptiveField\.box: {message}"):
            rf.box(*args)


def test_boxes_figure(tmp_path):
    import matplotlib.pyplot as plt

    from minivis.plot import features as fplot

    model = mv.models.FashionCNN()
    boxes = [receptive_field_box(model, layer, 3, 3) for layer in ("features.2", "features.7", "features.9")]
    fig = fplot.receptive_field_boxes(np.zeros((28, 28)), boxes, labels=["conv2", "conv4", "pool2"], title="fields")
    assert isinstance(fig, plt.Figure) and mv.plot.save(fig, tmp_path / "b.png").stat().st_size > 0
