"""Projections of single units (Zeiler & Fergus): the projection equals the seeded gradient of that
unit under the rule and the literal DeconvNet (unpool with switches, rectify, transposed
convolution), is zero outside the unit's receptive field, the top-k it projects equals a brute
force over all activations, the crops equal direct slicing; feature evolution; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.vis import objectives as ob
from minivis.vis.features.projections import project_top_activations, project_units, projections_over_training
from tests.vis.attribution.test_occlusion import small_efficientnet

WIDTHS, HIDDEN = (6, 8), 16


def small_fashion(seed=0):
    mv.nn.init.seed(seed)
    return mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN).double().eval()


@pytest.fixture(scope="module")
def model():
    return small_fashion()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).standard_normal((40, 1, 28, 28))


UNITS = {"features.8": np.array([[3, 5, 6], [0, 13, 2], [7, 0, 0], [3, 9, 9]]),
         "features.3": np.array([[1, 20, 4], [5, 0, 27], [2, 14, 14], [4, 3, 3]])}


# --------------------------------------------------------------------------- one unit
@pytest.mark.parametrize("layer", list(UNITS))
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_projection_is_the_unit_gradient_under_the_rule_times_the_activation(model, images, layer, rule):
    units = UNITS[layer]
    x = images[:4]
    maps, values = project_units(model, x, layer, units, rule)
    acts = mv.vis.activations(model, x, layer)
    np.testing.assert_array_equal(values, acts[np.arange(4), units[:, 0], units[:, 1], units[:, 2]])
    for b, (c, y, xx) in enumerate(units):
        grad = mv.vis.input_gradient(model, x[b], ob.unit(layer, int(c), int(y), int(xx)), rule=rule)
        np.testing.assert_allclose(maps[b], values[b] * grad, rtol=1e-12, atol=1e-14)
    assert np.abs(maps[values > 0]).max() > 0


def literal_deconvnet(model, x, seed):
    """Zeiler & Fergus's mirror network from features.8 down: rectify, transposed conv, unpool."""
    f = model.features
    with mv.no_grad():
        model(mv.tensor(x))  # records the pool switches
        s = mv.tensor(seed)
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[7].weight, padding=1)
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[5].weight, padding=1)
        s = mv.F.max_unpool2d(s, f[4].switches, 2, output_size=(28, 28))
        s = mv.F.conv_transpose2d(mv.F.relu(s), f[2].weight, padding=1)
        return mv.F.conv_transpose2d(mv.F.relu(s), f[0].weight, padding=1).numpy()


def test_deconvnet_projection_equals_the_literal_deconvnet(model, images):
    units = UNITS["features.8"]
    x = images[:4]
    maps, values = project_units(model, x, "features.8", units, "deconvnet")
    seed = np.zeros((4, WIDTHS[1], 14, 14))
    seed[np.arange(4), units[:, 0], units[:, 1], units[:, 2]] = values
    want = literal_deconvnet(model, x, seed)
    np.testing.assert_allclose(maps, want, rtol=1e-10, atol=1e-13 * np.abs(want).max())
    assert np.abs(want).max() > 0


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_projection_is_zero_outside_the_receptive_field(model, images, rule):
    for layer, units in UNITS.items():
        maps, values = project_units(model, images[:4], layer, units, rule)
        rf = mv.vis.receptive_field(model, layer, (28, 28))
        for b, (_, y, x) in enumerate(units):
            box = rf.box(int(y), int(x))
            inside = np.zeros((28, 28), bool)
            inside[box.top:box.bottom, box.left:box.right] = True
            assert np.all(maps[b, :, ~inside] == 0), (layer, b)
            if values[b] > 0 and rule == "deconvnet":
                assert np.abs(maps[b, :, inside]).max() > 0


def test_projection_on_efficientnet_stays_in_the_receptive_field_with_same_padding():
    net = small_efficientnet()
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40))
    layer = "_blocks.2"
    rf = mv.vis.receptive_field(net, layer, (40, 40))
    units = np.array([[3, 1, 2], [7, rf.out_size[0] - 1, 0]])
    maps, _ = project_units(net, x, layer, units, ["deconvnet", "guided"])
    for rule in maps:
        for b, (_, y, xx) in enumerate(units):
            box = rf.box(int(y), int(xx))
            outside = np.ones((40, 40), bool)
            outside[box.top:box.bottom, box.left:box.right] = False
            assert np.all(maps[rule][b][:, outside] == 0), rule
            assert np.abs(maps[rule][b]).max() > 0


# --------------------------------------------------------------------------- the top activations, projected
def test_top_k_projections_equal_a_brute_force(model, images):
    layer, k, channels = "features.8", 3, [0, 5, 7]
    got = project_top_activations(model, images, layer, channels=channels, k=k, batch_size=16)
    acts = mv.vis.activations(model, images, layer)  # (N, C, 14, 14): every activation at once
    rf = mv.vis.receptive_field(model, layer, (28, 28))
    for row, c in enumerate(channels):
        flat = acts[:, c].reshape(-1)
        order = np.lexsort((np.arange(flat.size), -flat))[:k]  # best first, ties to the earlier index
        n, pos = np.divmod(order, 14 * 14)
        y, x = np.divmod(pos, 14)
        np.testing.assert_array_equal(got.image_index[row], n)
        np.testing.assert_array_equal(got.location[row], np.stack([y, x], axis=1))
        np.testing.assert_array_equal(got.values[row], flat[order])
        maps, _ = project_units(model, images[n], layer, np.column_stack([np.full(k, c), y, x]),
                                ["deconvnet", "guided"])
        for j in range(k):
            top, left = rf.start[0] + y[j] * rf.jump[0], rf.start[1] + x[j] * rf.jump[1]
            padded = np.pad(images[n[j]], ((0, 0), (14, 14), (14, 14)), constant_values=np.nan)
            window = (slice(None), slice(top + 14, top + 28), slice(left + 14, left + 28))
            np.testing.assert_array_equal(got.patches[row, j], padded[window].astype(np.float32))
            for rule in ("deconvnet", "guided"):
                full = np.pad(maps[rule][j], ((0, 0), (14, 14), (14, 14)), constant_values=np.nan)
                np.testing.assert_allclose(got.projections[rule][row, j], full[window].astype(np.float32),
                                           rtol=1e-6, atol=1e-7 * np.nanmax(np.abs(full)))
    # reusing a mining result gives the same projections without a second pass
    top = mv.vis.top_activations(model, images, layer, k=k, crop=False)[layer]
    again = project_top_activations(model, images, layer, channels=channels, k=k, top=top)
    np.testing.assert_array_equal(again.projections["deconvnet"], got.projections["deconvnet"])


def test_fully_connected_layer_and_raw_images(model):
    raw = np.random.default_rng(2).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    got = project_top_activations(model, raw, "classifier.1", channels=[2, 9], k=2, rules="guided")
    x = model.preprocess(raw[got.image_index[0, 0]]).astype(np.float64)
    grad = mv.vis.guided_backprop(model, x[0], ob.unit("classifier.1", 2))
    np.testing.assert_allclose(got.projections["guided"][0, 0], (got.values[0, 0] * grad).astype(np.float32),
                               rtol=1e-5, atol=1e-6 * np.abs(grad).max() * got.values[0, 0])
    assert got.patches.shape == (2, 2, 1, 28, 28)  # an fc unit sees the whole image


def test_projections_over_training_mine_each_checkpoint(images):
    first, second = small_fashion(0), small_fashion(1)
    evolution = projections_over_training({"init": first, "later": second}, images[:20], "features.3",
                                          channels=[1, 4])
    assert list(evolution) == ["init", "later"]
    for label, net in (("init", first), ("later", second)):
        alone = project_top_activations(net, images[:20], "features.3", channels=[1, 4], k=1, rules="deconvnet")
        np.testing.assert_array_equal(evolution[label].projections["deconvnet"], alone.projections["deconvnet"])
        assert evolution[label].values.shape == (2, 1)
    assert not np.array_equal(evolution["init"].values, evolution["later"].values)
    assert list(projections_over_training([first], images[:5], "features.3", channels=0)) == ["0"]


# --------------------------------------------------------------------------- bad input
def test_bad_input(model, images):
    x = images[:10]
    with pytest.raises(ValueError, match="project_top_activations: .*features.99"):
        project_top_activations(model, x, "features.99")
    with pytest.raises(ValueError, match=r"project_top_activations: channel 8 is out of range for layer "
                                         r"'features.8' with 8 channels \(0..7\)"):
        project_top_activations(model, x, "features.8", channels=[0, 8], k=1)
    with pytest.raises(ValueError, match="project_top_activations: k must be an int >= 1, got 0"):
        project_top_activations(model, x, "features.8", k=0)
    with pytest.raises(ValueError, match="project_top_activations: rules must be a rule or a non-empty list"):
        project_top_activations(model, x, "features.8", k=1, rules=["lrp"])
    top = mv.vis.top_activations(model, x, "features.3", k=2, crop=False)["features.3"]
    with pytest.raises(ValueError, match="project_top_activations: top must be the LayerTop of layer 'features.8'"):
        project_top_activations(model, x, "features.8", k=2, top=top)
    with pytest.raises(ValueError, match="project_top_activations: k=3 is more than the 2 activations kept"):
        project_top_activations(model, x, "features.3", k=3, top=top)
    with pytest.raises(ValueError, match=r"project_units: unit \(8, 0, 0\) is out of range for layer 'features.8'"):
        project_units(model, x[:1], "features.8", [[8, 0, 0]])
    with pytest.raises(ValueError, match="project_units: units has 2 rows for a batch of 1 images"):
        project_units(model, x[:1], "features.8", [[0, 0, 0], [1, 1, 1]])
    with pytest.raises(TypeError, match=r"project_units: units must be an int array \(B, 3\)"):
        project_units(model, x[:1], "features.8", [[0.5, 0, 0]])
    with pytest.raises(ValueError, match="project_units: x must be a batch"):
        project_units(model, x[0], "features.8", [[0, 0, 0]])
    with pytest.raises(TypeError, match="projections_over_training: models must be a dict"):
        projections_over_training(model, x, "features.8")
