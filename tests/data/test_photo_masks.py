"""Hand-drawn object masks of the offline photos: shapes at native resolution, non-trivial, on the object
(brighter/different than the rest where that is checkable), bad names, and the pointing game with
EfficientNet-Lite0's Grad-CAM on them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import minivis as mv
from minivis import data

pytest.importorskip("skimage", reason="the masked photos come with scikit-image")


@pytest.mark.parametrize("name", data.MASKED_PHOTOS)
def test_masks_match_their_photo_and_are_non_trivial(name):
    img = data.photo(name)
    for obj in data.photo_objects(name):
        mask = data.photo_mask(name, obj)
        assert mask.dtype == bool and mask.shape == img.shape[:2]
        assert 0.01 < mask.mean() < 0.6  # an object, not the whole frame
        assert not mask[0].all() and not mask[:, 0].all()
        _, count = ndimage.label(mask)
        assert count == 1  # one connected region per object
    np.testing.assert_array_equal(data.photo_mask(name), data.photo_mask(name, data.photo_objects(name)[0]))


def test_rocket_mask_is_on_the_bright_rocket():
    """The only check against the pixels themselves: the white launcher against the evening sky."""
    grey = data.photo("rocket").mean(axis=2)
    mask = data.photo_mask("rocket")
    assert grey[mask].mean() > 2 * grey[~mask].mean()


def test_bad_names():
    with pytest.raises(ValueError, match="photo_mask: name must be one of 'chelsea'"):
        data.photo_mask("dog")
    with pytest.raises(ValueError, match="photo_mask: obj for 'coffee' must be one of 'cup', got 'spoon'"):
        data.photo_mask("coffee", "spoon")
    with pytest.raises(ValueError, match="photo_objects: name must be one of"):
        data.photo_objects("camera")


def _to_model_input(mask, model, size):
    """The photo's mask through the model's own geometry (shorter side, centre crop), then to size."""
    m = data.center_crop(data.resize_shorter_side(mask.astype(np.float32), model.resize_size), model.input_size)
    return data.resize(m, size) > 0.5


@pytest.mark.slow
def test_pointing_game_with_lite0_grad_cam():
    """A trained Lite0's Grad-CAM for its top class points at the cat's face and into the cup; a map
    peaking off the object loses (the game can fail)."""
    effnet = mv.models.load("efficientnet_lite0")
    effnet.requires_grad_(False)
    size = 128
    maps, masks = [], []
    for name in ("chelsea", "coffee"):
        x = effnet.preprocess(data.photo(name))
        x = mv.F.interpolate(mv.tensor(x), size=(size, size), mode="bilinear").numpy()
        with mv.no_grad():
            top = int(effnet(mv.tensor(x)).numpy()[0].argmax())
        maps.append(np.asarray(mv.vis.grad_cam(effnet, x, top, "_act_head"))[0])
        masks.append(_to_model_input(data.photo_mask(name), effnet, size))
    maps, masks = np.stack(maps), np.stack(masks)
    assert mv.vis.pointing_game(maps, masks).all()
    far = np.zeros_like(maps)  # a map whose peak is off the object must lose
    for i, mask in enumerate(masks):
        r, c = np.argwhere(~mask)[0]
        far[i, r, c] = 1.0
    assert not mv.vis.pointing_game(far, masks).any()
