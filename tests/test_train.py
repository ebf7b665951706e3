"""The training loop and the `minivis` command line."""

import json

import numpy as np
import pytest

import minivis as mv
from minivis import cli
from minivis.train import accuracy, train_fashion_cnn


@pytest.mark.slow
def test_short_training_run_learns_and_writes_checkpoints(tmp_path):
    log = train_fashion_cnn(tmp_path, epochs=1, batch_size=64, limit=1024, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {
        "fashion_cnn_epoch00.npz", "fashion_cnn_epoch01.npz", "fashion_cnn.npz", "fashion_cnn_train_log.json"}
    assert json.loads((tmp_path / "fashion_cnn_train_log.json").read_text())["epochs"] == 1
    # 1,024 images are enough to beat chance (10%) clearly
    assert log["test_accuracy"] > 0.3
    model = mv.models.FashionCNN()
    model.load_state_dict(mv.io.load_npz(tmp_path / "fashion_cnn.npz"))
    first = mv.io.load_npz(tmp_path / "fashion_cnn_epoch00.npz")["features.0.weight"]
    assert not np.allclose(first, model.features[0].weight.numpy())  # the weights moved


def test_accuracy_counts_correct_predictions():
    model = mv.models.FashionCNN().eval()
    images = model.preprocess(np.zeros((5, 28, 28, 1), np.uint8))
    with mv.no_grad():
        predicted = model(mv.tensor(images)).numpy().argmax(axis=1)
    assert accuracy(model, images, predicted) == 1.0
    assert accuracy(model, images, (predicted + 1) % 10) == 0.0


def test_train_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="train: epochs and batch_size must be >= 1, got 0, 128"):
        train_fashion_cnn(tmp_path, epochs=0)


def test_cli_rejects_unknown_verbs_and_models(capsys):
    with pytest.raises(SystemExit):
        cli.main(["paint"])
    with pytest.raises(SystemExit):
        cli.main(["train", "resnet"])
    assert "invalid choice" in capsys.readouterr().err
