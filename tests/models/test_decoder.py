"""The code decoder (minivis/models/decoder.py): its architecture against a PyTorch twin, its code
shapes against fashion_cnn's layers, the shipped weights, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.models import DECODER_CODE_SHAPES, DECODER_LAYERS
from minivis.models.decoder import CodeDecoder
from minivis.nn.hooks import forward_to
from tests import torch_twins


@pytest.mark.parametrize("layer", DECODER_LAYERS)
def test_decoder_matches_a_pytorch_twin(layer, rng):
    mv.nn.init.seed(3)
    decoder = mv.models.build_decoder(layer).double()
    decoder.register_buffer("code_scale", np.asarray(0.7))
    z = rng.standard_normal((2, *DECODER_CODE_SHAPES[layer]))
    ours = decoder(mv.tensor(z)).numpy()
    twin = torch_twins.twin_from_state(torch_twins.TorchCodeDecoder(DECODER_CODE_SHAPES[layer]), decoder.state_dict(),
                                       torch.float64)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(z)).numpy()
    assert ours.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_code_shapes_are_fashion_cnns():
    model = mv.models.build("fashion_cnn").eval()
    with mv.no_grad():
        for layer in DECODER_LAYERS:
            code = forward_to(model, mv.tensor(np.zeros((1, 1, 28, 28), np.float32)), layer)
            assert tuple(code.shape[1:]) == DECODER_CODE_SHAPES[layer], layer


@pytest.mark.parametrize("layer", DECODER_LAYERS)
def test_every_decoder_ships_and_inverts_better_than_the_mean_image(layer):
    """The shipped weights load, and reconstruct held-out images closer than the mean image (error 1)."""
    assert layer in mv.models.available_decoders()
    decoder = mv.models.load_decoder(layer)
    model = mv.models.load("fashion_cnn")
    images, _ = mv.data.fashion_mnist("test")
    x = model.preprocess(images[-32:, ..., None])  # the decoders' logs score the first 2,000 test images
    result = mv.vis.invert_with_decoder(model, decoder, x)
    assert result.image_error.mean() < 0.8


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"models.load_decoder: layer must be one of features.1, .* got 'features.2'"):
        mv.models.load_decoder("features.2")
    with pytest.raises(FileNotFoundError, match="train it with `minivis train decoder --layer features.4`"):
        mv.models.load_decoder("features.4", weights=tmp_path / "none.npz")
    with pytest.raises(ValueError, match=r"CodeDecoder: code_shape must be \(C, h, w\) or \(D,\)"):
        CodeDecoder((3, 4))
    with pytest.raises(ValueError, match="the code's side 6 must be image_size 28 / 2"):
        CodeDecoder((8, 6, 6))
    decoder = mv.models.build_decoder("features.9")
    with pytest.raises(ValueError, match=r"CodeDecoder\('features.9'\): code must be \(N, 64, 7, 7\), got shape"):
        decoder(mv.tensor(np.zeros((1, 32, 7, 7), np.float32)))
    with pytest.raises(TypeError, match="CodeDecoder: code must be a Tensor, got ndarray"):
        decoder(np.zeros((1, 64, 7, 7), np.float32))
