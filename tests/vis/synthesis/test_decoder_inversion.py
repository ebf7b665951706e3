"""Inversion by a trained decoder (minivis/vis/synthesis/decoder_inversion.py): the reconstruction
and both errors against a direct computation, the comparison with the optimisation of
``mv.vis.invert`` on the shipped decoders, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv
from minivis.nn.hooks import forward_to


@pytest.fixture(scope="module")
def fashion():
    return mv.models.load("fashion_cnn")


@pytest.fixture(scope="module")
def test_images(fashion):
    images, _ = mv.data.fashion_mnist("test")
    return fashion.preprocess(images[:8, ..., None])


def test_reconstruction_and_errors_equal_a_direct_computation(fashion, test_images):
    mv.nn.init.seed(0)
    decoder = mv.models.build_decoder("features.4").eval()
    got = mv.vis.invert_with_decoder(fashion, decoder, test_images[:3])
    with mv.no_grad():
        code = forward_to(fashion, mv.tensor(test_images[:3]), "features.4").numpy().astype(np.float64)
        decoder.double()
        recon = decoder(mv.tensor(code)).numpy()
        decoder.float()
        fashion.double()
        code_back = forward_to(fashion, mv.tensor(recon), "features.4").numpy()
        fashion.float()
    np.testing.assert_allclose(got.x, recon, rtol=1e-4, atol=1e-5)
    x0 = test_images[:3].astype(np.float64).reshape(3, -1)
    image_error = np.linalg.norm(recon.reshape(3, -1) - x0, axis=1) / np.linalg.norm(x0, axis=1)
    feature_error = ((code_back - code) ** 2).reshape(3, -1).sum(1) / (code ** 2).reshape(3, -1).sum(1)
    np.testing.assert_allclose(got.image_error, image_error, rtol=1e-4)
    np.testing.assert_allclose(got.feature_error, feature_error, rtol=1e-3)
    assert got.image.shape == (3, 28, 28, 1)
    one = mv.vis.invert_with_decoder(fashion, decoder, test_images[0])  # one image in, one out
    assert one.x.shape == (1, 28, 28) and isinstance(one.image_error, float)
    np.testing.assert_allclose(one.x, got.x[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_decoder_beats_the_optimisation_at_the_early_layers(fashion, test_images):
    """Issue 15: at the early layers the trained decoder's image error on test images is below that of
    Mahendran & Vedaldi's optimisation (L-BFGS, the default priors). Measured in lesson 18."""
    decoders = {layer: mv.models.load_decoder(layer) for layer in ("features.1", "features.4")}
    comparison = mv.vis.compare_inversions(fashion, decoders, test_images, steps=100, progress=False)
    print("\n" + comparison.markdown())
    for row in comparison.rows():
        assert row["decoder_image_error"] < row["optimisation_image_error"], row
    assert comparison.layers == ["features.1", "features.4"]
    assert comparison.decoder_x["features.4"].shape == test_images.shape


def test_bad_input_is_refused(fashion, test_images):
    decoder = mv.models.build_decoder("features.9")
    with pytest.raises(TypeError, match="invert_with_decoder: decoder must be a minivis nn.Module"):
        mv.vis.invert_with_decoder(fashion, "features.9", test_images)
    with pytest.raises(ValueError, match="invert_with_decoder: layer: 'features.99' is not a layer of FashionCNN"):
        mv.vis.invert_with_decoder(fashion, decoder, test_images, layer="features.99")
    with pytest.raises(ValueError, match=r"CodeDecoder\('features.9'\): code must be \(N, 64, 7, 7\)"):
        mv.vis.invert_with_decoder(fashion, decoder, test_images, layer="features.4")
    with pytest.raises(ValueError, match="invert_with_decoder: batch_size must be a positive int, got 0"):
        mv.vis.invert_with_decoder(fashion, decoder, test_images, batch_size=0)
    with pytest.raises(ValueError, match=r"invert_with_decoder: image must be \(C, H, W\) or \(N, C, H, W\)"):
        mv.vis.invert_with_decoder(fashion, decoder, test_images[0, 0])
    anonymous = mv.nn.Sequential(mv.nn.Identity())
    with pytest.raises(ValueError, match="invert_with_decoder: the decoder does not say which layer it inverts"):
        mv.vis.invert_with_decoder(fashion, anonymous, test_images)
    with pytest.raises(TypeError, match=r"compare_inversions: decoders must be \{layer: decoder\}"):
        mv.vis.compare_inversions(fashion, decoder, test_images)
    with pytest.raises(ValueError, match="compare_inversions: give at least one decoder"):
        mv.vis.compare_inversions(fashion, {}, test_images)
    with pytest.raises(ValueError, match="^compare_inversions: images has 3 channels, the model expects 1$"):
        mv.vis.compare_inversions(fashion, [decoder], np.zeros((2, 3, 28, 28), np.float32))
