"""Shared by the attribution tests: a small float64 ``fashion_cnn`` and its PyTorch twin on identical weights."""

import pytest
import torch

import minivis as mv
from tests.torch_twins import TorchFashionCNN, twin_from_state

WIDTHS, HIDDEN = (8, 16), 32


@pytest.fixture(scope="module")
def nets():
    mv.nn.init.seed(11)
    model = mv.models.FashionCNN(widths=WIDTHS, hidden=HIDDEN).double().eval()
    twin = twin_from_state(TorchFashionCNN(widths=WIDTHS, hidden=HIDDEN), model.state_dict(), torch.float64)
    return model, twin
