"""Data randomisation (Adebayo et al. 2018, section 5): fashion_cnn against the same network trained on
permuted labels (shipped as ``fashion_cnn_permuted_labels.npz``). The shipped model is checked to have
memorised its shuffled labels and to be at chance on the test set; the similarities are checked
against SciPy on maps computed outside ``data_randomisation``; and the paper's finding is asserted
on eight test images: the gradient of the random-label model has little in common with the true
model's, guided backprop keeps much more of it (though, unlike its near-copy under the top-layer
randomisation, not most of it: training on noise changes the lower filters guided backprop
reflects too; measured rank correlation of |map| 0.12 for the gradient, 0.53 for guided backprop)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import minivis as mv
from minivis.models import WEIGHTS_DIR
from minivis.train import PERMUTED_NAME, accuracy, permuted, train_fashion_cnn
from minivis.vis.attribution import sanity

N_IMAGES = 8


@pytest.fixture(scope="module")
def models():
    return mv.models.load("fashion_cnn").double(), mv.models.load("fashion_cnn", weights="permuted_labels").double()


@pytest.fixture(scope="module")
def batch(models):
    images, labels = mv.data.fashion_mnist("test")
    return models[0].preprocess(images[:N_IMAGES]).astype(np.float64), labels[:N_IMAGES]


def test_the_random_label_model_memorised_its_labels_and_is_at_chance_on_the_test_set(models):
    log = json.loads((WEIGHTS_DIR / f"{PERMUTED_NAME}_train_log.json").read_text())
    assert log["permute_labels"] is True and log["command"].startswith("minivis train fashion_cnn --permute-labels")
    _, random_labels = models
    n = log["train_images"]
    images, labels = mv.data.fashion_mnist("train")
    x = random_labels.preprocess(images[:n]).astype(np.float64)
    shuffled = permuted(labels[:n], log["seed"])
    assert (shuffled != labels[:n]).mean() > 0.85  # a permutation of the labels, not the labels
    train_acc = accuracy(random_labels, x, shuffled)
    assert train_acc == pytest.approx(log["train_accuracy"], abs=1e-3)  # float64 here, float32 in training
    assert train_acc > 0.9
    test_images, test_labels = mv.data.fashion_mnist("test")
    test_acc = accuracy(random_labels, random_labels.preprocess(test_images[:2000]).astype(np.float64),
                        test_labels[:2000])
    assert test_acc < 0.15, test_acc  # chance is 0.1


def test_similarities_are_those_of_the_two_models_maps(models, batch):
    model, random_labels = models
    x, target = batch
    res = mv.vis.data_randomisation(model, random_labels, x, target, "input_gradient")
    assert res.mode == "data" and res.steps == ["random labels"]
    assert res.maps.shape == (2, N_IMAGES, 1, 28, 28)
    assert all(v.shape == (1, N_IMAGES) for v in res.scores.values()) and list(res.scores) == list(sanity.MEASURES)
    a = mv.vis.input_gradient(model, x, target)[:, 0]
    b = mv.vis.input_gradient(random_labels, x, target)[:, 0]
    np.testing.assert_allclose(res.maps[0, :, 0], a, rtol=1e-12)
    np.testing.assert_allclose(res.maps[1, :, 0], b, rtol=1e-12)
    want_abs = [spearmanr(np.abs(p).ravel(), np.abs(q).ravel())[0] for p, q in zip(a, b, strict=True)]
    want = [spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(a, b, strict=True)]
    np.testing.assert_allclose(res.scores["spearman_abs"][0], want_abs, rtol=1e-10)
    np.testing.assert_allclose(res.scores["spearman"][0], want, rtol=1e-10)
    # SSIM and HOG: the functions model_randomisation uses (checked against scikit-image in test_sanity.py)
    unit = [(np.abs(p) - np.abs(p).min()) / np.ptp(np.abs(p)) for p in (a[0], b[0])]
    assert res.scores["ssim"][0, 0] == pytest.approx(sanity.ssim(*unit), rel=1e-12)
    assert res.scores["hog"][0, 0] == pytest.approx(np.corrcoef(sanity.hog(np.abs(a[0])),
                                                                 sanity.hog(np.abs(b[0])))[0, 1], rel=1e-12)
    only = mv.vis.data_randomisation(model, random_labels, x, target, "input_gradient", measures=("spearman",))
    assert list(only.scores) == ["spearman"]
    np.testing.assert_array_equal(only.scores["spearman"], res.scores["spearman"])
    assert "random labels" in res.table()


def test_the_papers_finding_gradient_changes_guided_backprop_keeps_more(models, batch):
    model, random_labels = models
    x, target = batch
    grad = mv.vis.data_randomisation(model, random_labels, x, target, "saliency")
    guided = mv.vis.data_randomisation(model, random_labels, x, target, "guided_backprop")
    print("\ngradient (saliency)\n" + grad.table() + "\nguided backprop\n" + guided.table())
    assert grad.scores["spearman_abs"].mean() < 0.3
    assert guided.scores["spearman_abs"].mean() > grad.scores["spearman_abs"].mean() + 0.2
    assert guided.scores["ssim"].mean() > grad.scores["ssim"].mean() + 0.1
    assert (guided.scores["spearman_abs"] > grad.scores["spearman_abs"]).mean() >= 0.75


def test_bad_input(models):
    model, random_labels = models
    x = np.zeros((1, 1, 28, 28))
    with pytest.raises(ValueError, match="data_randomisation: random_label_model must be a second model"):
        mv.vis.data_randomisation(model, model, x, 0, "saliency")
    with pytest.raises(TypeError, match="data_randomisation: random_label_model must be a minivis Module, got str"):
        mv.vis.data_randomisation(model, "permuted_labels", x, 0, "saliency")
    small = mv.models.FashionCNN(widths=(8, 16)).double().eval()
    with pytest.raises(ValueError, match="data_randomisation: random_label_model must have model's architecture"):
        mv.vis.data_randomisation(model, small, x, 0, "saliency")
    with pytest.raises(ValueError, match=r"data_randomisation: measures must be a non-empty selection of"):
        mv.vis.data_randomisation(model, random_labels, x, 0, "saliency", measures=("pearson",))
    with pytest.raises(ValueError, match="data_randomisation: method must be a callable"):
        mv.vis.data_randomisation(model, random_labels, x, 0, "salience")
    with pytest.raises(ValueError, match=r"models.load: weights must be a weights file or one of \['permuted_labels'"):
        mv.models.load("fashion_cnn", weights="permuted")
    with pytest.raises(ValueError, match="models.load: checkpoint and weights='permuted_labels' exclude each other"):
        mv.models.load("fashion_cnn", weights="permuted_labels", checkpoint=1)


@pytest.mark.slow
def test_training_on_permuted_labels_writes_its_own_files_and_log(tmp_path):
    log = train_fashion_cnn(tmp_path, epochs=1, batch_size=64, limit=256, progress=False, permute_labels=True,
                            command="minivis train fashion_cnn --permute-labels --train-images 256")
    assert {p.name for p in tmp_path.iterdir()} == {f"{PERMUTED_NAME}.npz", f"{PERMUTED_NAME}_train_log.json"}
    saved = json.loads((tmp_path / f"{PERMUTED_NAME}_train_log.json").read_text())
    assert saved["permute_labels"] is True and saved["command"].endswith("--train-images 256")
    assert 0 <= saved["train_accuracy"] <= 1 and saved == log
    labels = mv.data.fashion_mnist("train")[1][:256]
    assert sorted(permuted(labels, 0)) == sorted(labels) and (permuted(labels, 0) != labels).any()
    np.testing.assert_array_equal(permuted(labels, 0), permuted(labels, 0))


def test_the_sanity_figure_shows_both_models_and_only_the_measures_computed(models, batch):
    model, random_labels = models
    x, target = batch
    res = mv.vis.data_randomisation(model, random_labels, x[:2], target[:2], "saliency", measures=("spearman_abs",))
    fig = mv.plot.sanity_figure([res])
    assert len(fig.axes) == 3 and "permuted labels" in fig._suptitle.get_text()
    assert [line.get_label() for line in fig.axes[-1].get_lines()] == ["rank |map|"]
    assert fig.axes[1].get_title() == "random labels"
