"""Top-k mining: the one-pass miner against a brute-force pass that stores every activation, the
receptive-field crops against direct slicing, bad input. The streaming kernel against its NumPy
twin: tests/kernels/test_cpu_topk.py."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.kernels.cpu_topk import naive_topk
from minivis.vis.features.top_activations import crop_boxes, crop_patches, top_activations


# --------------------------------------------------------------------------- miner == brute force
def _brute_force(model, x, layers, batch_size, k, score):
    """Every activation stored (same batches as the miner, so the floats are identical), then sorted."""
    acts = {name: [] for name in layers}
    with mv.no_grad():
        for start in range(0, len(x), batch_size):
            with mv.nn.capture(model, layers) as got:
                model(mv.tensor(x[start:start + batch_size]))
            for name in layers:
                acts[name].append(got[name].data)
    out = {}
    for name in layers:
        a = np.concatenate(acts[name])
        a = a.reshape(a.shape[0], a.shape[1], -1)  # (N, C, P)
        n, c, p = a.shape
        patch_val, patch_idx = naive_topk(a.transpose(1, 0, 2).reshape(c, -1), k)
        scores = a.max(axis=2) if score == "max" else a.sum(axis=2, dtype=np.float64) / p
        image_val, image_idx = naive_topk(scores.T, k)
        arg = a.argmax(axis=2)[image_idx, np.arange(c)[:, None]]
        out[name] = dict(patch_val=patch_val, patch_img=patch_idx // p, patch_pos=patch_idx % p,
                         image_val=image_val, image_idx=image_idx, image_pos=arg)
    return out


@pytest.fixture(scope="module")
def fashion():
    mv.nn.init.seed(0)
    model = mv.models.FashionCNN().eval()
    images = mv.data.fashion_mnist("test")[0][:40]
    return model, images


@pytest.mark.parametrize("score", ["max", "mean"])
def test_fashion_cnn_miner_equals_brute_force(fashion, score):
    model, images = fashion
    layers = ["features.1", "features.8", "classifier.1"] if score == "max" else ["features.8"]
    got = top_activations(model, images, layers, k=5, batch_size=16, score=score, crop=False)
    want = _brute_force(model, model.preprocess(images), layers, 16, 5, score)
    for name in layers:
        g, w = got[name], want[name]
        width = g.map_size[1]
        np.testing.assert_array_equal(g.patch_index, w["patch_img"], err_msg=name)
        np.testing.assert_array_equal(g.patch_location[..., 0] * width + g.patch_location[..., 1], w["patch_pos"])
        np.testing.assert_array_equal(g.patch_value, w["patch_val"])
        np.testing.assert_array_equal(g.image_index, w["image_idx"], err_msg=name)
        np.testing.assert_allclose(g.image_score, w["image_val"], rtol=1e-12)
        np.testing.assert_array_equal(g.image_location[..., 0] * width + g.image_location[..., 1], w["image_pos"])
        assert g.count == 40 and g.patches is None


def test_raw_images_and_model_inputs_agree_and_state_is_restored(fashion):
    model, images = fashion
    model.train()
    raw = top_activations(model, images, "features.3", k=3, batch_size=32)["features.3"]
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    inputs = top_activations(model, model.preprocess(images), ["features.3"], k=3, batch_size=7)["features.3"]
    np.testing.assert_array_equal(raw.patch_index, inputs.patch_index)
    np.testing.assert_array_equal(raw.image_index, inputs.image_index)
    np.testing.assert_array_equal(raw.patches, inputs.patches)


def test_crops_are_receptive_field_windows(fashion):
    model, images = fashion
    top = top_activations(model, images, ["features.7"], k=4, batch_size=40)["features.7"]
    x = model.preprocess(images)
    rf = top.rf
    assert top.patches.shape == (64, 4, 1, *rf.size) == (64, 4, 1, 14, 14)
    padded = np.pad(x, ((0, 0), (0, 0), (20, 20), (20, 20)), constant_values=np.nan)
    for c in (0, 17, 63):
        for j in range(4):
            n, (y, xx) = top.patch_index[c, j], top.patch_location[c, j]
            t, left = rf.start[0] + y * rf.jump[0] + 20, rf.start[1] + xx * rf.jump[1] + 20
            np.testing.assert_array_equal(top.patches[c, j], padded[n, :, t:t + 14, left:left + 14])
    boxes = top.boxes()
    assert boxes.shape == (64, 4, 4) and boxes.min() >= 0 and boxes[..., 2:].max() <= 28
    images_crops = crop_patches(model, images, top, channels=[5, 6], which="images", fill=0.0)
    assert images_crops.shape == (2, 4, 1, 14, 14) and not np.isnan(images_crops).any()


def test_crop_of_a_field_larger_than_the_image_is_the_whole_image(fashion):
    model, images = fashion
    top = top_activations(model, images, "classifier.1", k=2, batch_size=40)["classifier.1"]
    x = model.preprocess(images)
    assert top.rf.size == (40, 40) and top.patches.shape == (128, 2, 1, 28, 28)
    np.testing.assert_array_equal(top.patches[3, 1], x[top.patch_index[3, 1]])


def test_crop_boxes_pads_with_fill():
    x = np.arange(2 * 1 * 4 * 5, dtype=np.float32).reshape(2, 1, 4, 5)
    crops = crop_boxes(x, np.array([-1, 2]), np.array([3, -2]), (3, 3), fill=-1.0)
    np.testing.assert_array_equal(crops[0, 0], [[-1, -1, -1], [3, 4, -1], [8, 9, -1]])
    np.testing.assert_array_equal(crops[1, 0], [[-1, -1, 30], [-1, -1, 35], [-1, -1, -1]])


def test_efficientnet_on_random_photo_crops_equals_brute_force():
    mv.nn.init.seed(5)
    model = mv.models.EfficientNetLite().eval()
    crops = mv.data.random_crops(mv.data.photo("chelsea"), 40, 10, seed=0)
    # uint8 crops would be resized to 224 by model.preprocess: pass model inputs at 40 px instead
    x = ((mv.data.to_float(crops) - 127 / 255) / (128 / 255)).transpose(0, 3, 1, 2).astype(np.float32)
    layers = ["_blocks.1._act1", "_blocks.2"]
    got = top_activations(model, x, layers, k=3, batch_size=4, crop=False)
    want = _brute_force(model, x, layers, 4, 3, "max")
    for name in layers:
        np.testing.assert_array_equal(got[name].patch_index, want[name]["patch_img"])
        np.testing.assert_array_equal(got[name].image_index, want[name]["image_idx"])
        np.testing.assert_array_equal(got[name].patch_value, want[name]["patch_val"])
    crops_ = crop_patches(model, x, got["_blocks.2"], channels=[0, 1])
    assert crops_.shape == (2, 3, 3, *got["_blocks.2"].rf.size)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs(fashion):
    model, images = fashion
    with pytest.raises(ValueError, match="top_activations: k must be a positive int, got 0"):
        top_activations(model, images, "features.1", k=0)
    with pytest.raises(ValueError, match=r"top_activations: k=50 is larger than the dataset \(40 images\)"):
        top_activations(model, images, "features.1", k=50)
    with pytest.raises(ValueError, match=r"top_activations: score must be one of \('max', 'mean'\), got 'sum'"):
        top_activations(model, images, "features.1", score="sum")
    with pytest.raises(ValueError, match="top_activations: layer: 'features.42' is not a layer"):
        top_activations(model, images, ["features.1", "features.42"])
    with pytest.raises(ValueError, match="top_activations: layers has duplicates"):
        top_activations(model, images, ["features.1", "features.1"])
    with pytest.raises(TypeError, match="top_activations: layers must be a layer name or a non-empty list"):
        top_activations(model, images, [])
    with pytest.raises(ValueError, match="top_activations: batch_size must be a positive int, got 0"):
        top_activations(model, images, "features.1", batch_size=0)
    with pytest.raises(ValueError, match=r"top_activations: images must be model inputs \(N, C, H, W\) float or "
                                         r"uint8 images \(N, H, W\[, C\]\), got shape \(40, 784\)"):
        top_activations(model, images.reshape(40, -1), "features.1")
    with pytest.raises(TypeError, match="top_activations: images must be an array"):
        top_activations(model, list(images), "features.1")
    with pytest.raises(ValueError, match="top_activations: images has 3 channels, the model expects 1"):
        top_activations(model, np.zeros((4, 3, 28, 28), np.float32), "features.1", k=2)
    with pytest.raises(ValueError, match=r"top_activations: images is empty \(0 images\)"):
        top_activations(model, images[:0], "features.1")
    top = top_activations(model, images, "features.1", k=2, crop=False)["features.1"]
    with pytest.raises(ValueError, match=r"crop_patches: channels must be ints in 0..31"):
        crop_patches(model, images, top, channels=[32])
    with pytest.raises(ValueError, match="crop_patches: which must be 'patches' or 'images', got 'units'"):
        crop_patches(model, images, top, which="units")


def test_top_patches_figure(fashion, tmp_path):
    import matplotlib.pyplot as plt

    from minivis.plot import features as fplot

    model, images = fashion
    top = top_activations(model, images, "features.7", k=3, batch_size=40)["features.7"]
    fig = fplot.top_patches(top.patches[:4], channels=[0, 1, 2, 3], values=top.patch_value[:4], model=model)
    assert isinstance(fig, plt.Figure) and mv.plot.save(fig, tmp_path / "p.png").stat().st_size > 0
    rgb = np.random.default_rng(0).uniform(-1, 1, (2, 3, 3, 8, 8))
    rgb[0, 0, :, :2] = np.nan                                   # outside the image: drawn grey, no error
    assert isinstance(fplot.top_patches(rgb), plt.Figure)
    plt.close("all")
    with pytest.raises(ValueError, match=r"top_patches: patches must be \(C, k, C_in, h, w\), got shape \(4, 3\)"):
        fplot.top_patches(np.zeros((4, 3)))
