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


def test_a_short_decoder_run_learns_and_writes_weights_and_log(tmp_path):
    from minivis.train_decoder import train_decoder

    log = train_decoder(tmp_path, "features.9", epochs=2, batch_size=32, lr=3e-3, limit=256, test_limit=64,
                        progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"fashion_cnn_decoder_features.9.npz",
                                                   "fashion_cnn_decoder_features.9_train_log.json"}
    saved = json.loads((tmp_path / "fashion_cnn_decoder_features.9_train_log.json").read_text())
    assert saved["layer"] == "features.9" and saved["code_shape"] == [64, 7, 7] and len(saved["history"]) == 2
    assert log["history"][1]["train_loss"] < log["history"][0]["train_loss"]
    assert log["test_image_error"] < 1.0  # closer than the mean image after 16 steps
    decoder = mv.models.load_decoder("features.9", weights=tmp_path / "fashion_cnn_decoder_features.9.npz")
    model = mv.models.load("fashion_cnn")
    images, _ = mv.data.fashion_mnist("test")
    x = model.preprocess(images[:64, ..., None])
    errors = mv.vis.invert_with_decoder(model, decoder, x).image_error
    np.testing.assert_allclose(errors.mean(), log["test_image_error"], rtol=1e-5)  # the log's number is real
    assert float(decoder.code_scale) > 0


def test_train_decoder_rejects_bad_arguments(tmp_path):
    from minivis.train_decoder import train_decoder

    with pytest.raises(ValueError, match="train decoder: --layer must be one of features.1, .*got 'logits'"):
        train_decoder(tmp_path, "logits")
    with pytest.raises(ValueError, match=r"train decoder: limit must be an int >= batch_size \(64\) or None, got 5"):
        train_decoder(tmp_path, "features.4", limit=5)
    assert not any(tmp_path.iterdir())
