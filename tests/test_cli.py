"""The `minivis` command line: user errors print one line and exit 2; nothing is half-done."""

import numpy as np
import pytest

from minivis import cli, train
from minivis.models import WEIGHTS_DIR


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("minivis ") and ": error: " in err[0], err
    assert "Traceback" not in "\n".join(err)
    for fragment in fragments:
        assert fragment in err[0]


def test_unknown_photo_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "site"
    assert cli.main(["gallery", "--out", str(out), "chelsea", "nosuch"]) == 2
    _one_error_line(capsys, "unknown photo(s) 'nosuch'", "choose from chelsea")
    assert not out.exists()


def test_unwritable_output_folder_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["gallery", "--out", str(blocker / "sub"), "chelsea"]) == 2
    _one_error_line(capsys, "cannot create the folder", "--out")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(cli.UsageError, match="unknown photo"):
        cli.main(["gallery", "nosuch", "--debug"])
    with pytest.raises(cli.UsageError, match="unknown photo"):
        cli.main(["--debug", "gallery", "nosuch"])


def test_train_without_the_dataset_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIVIS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "fashion_cnn"]) == 2
    _one_error_line(capsys, "'test' split was not found", "dataset-fashion-mnist")
    assert not (tmp_path / "runs").exists()


def test_train_writes_under_the_current_folder_unless_asked(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(train, "train_fashion_cnn",
                        lambda out, *args, **kwargs: calls.append(out) or {"test_accuracy": 0.5, "total_seconds": 1})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "fashion_cnn", "--epochs", "1"]) == 0
    assert calls[-1] == cli.TRAIN_OUT / "fashion_cnn" and (tmp_path / "runs" / "fashion_cnn").is_dir()
    assert calls[-1].resolve() != WEIGHTS_DIR.resolve()
    assert cli.main(["train", "fashion_cnn", "--into-package", "--out", "x"]) == 2
    _one_error_line(capsys, "--into-package and --out exclude each other")
    assert cli.main(["train", "fashion_cnn", "--epochs", "0"]) == 2
    _one_error_line(capsys, "epochs and batch_size must be >= 1")


def test_train_permute_labels_reaches_the_loop_with_the_command(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(train, "train_fashion_cnn", lambda out, *args, **kwargs: calls.append(kwargs) or {
        "test_accuracy": 0.1, "train_accuracy": 0.95, "total_seconds": 1})
    monkeypatch.setattr(cli.sys, "argv", ["minivis", "train", "fashion_cnn", "--permute-labels"])
    assert cli.main(["train", "fashion_cnn", "--permute-labels", "--out", str(tmp_path / "w")]) == 0
    assert calls[-1]["permute_labels"] is True
    assert calls[-1]["command"] == "minivis train fashion_cnn --permute-labels"
    assert "train accuracy 0.9500" in capsys.readouterr().out
    assert cli.main(["train", "decoder", "--layer", "features.4", "--permute-labels"]) == 2
    _one_error_line(capsys, "--permute-labels is for `minivis train fashion_cnn` only")


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1"])
def test_train_refuses_a_non_finite_or_out_of_range_lr(tmp_path, capsys, lr):
    assert cli.main(["train", "fashion_cnn", "--lr", lr, "--out", str(tmp_path / "w")]) == 2
    _one_error_line(capsys, "lr must be a finite number in (0, 1)")
    assert not (tmp_path / "w").exists()


def test_a_diverging_run_stops_and_never_saves_non_finite_weights(tmp_path, monkeypatch):
    real = train.F.cross_entropy
    calls = []

    def poisoned(logits, labels):  # the third step's loss is NaN, as a diverging run's would be
        calls.append(1)
        loss = real(logits, labels)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(train.F, "cross_entropy", poisoned)
    with pytest.raises(ValueError, match=r"diverged: the loss became nan at epoch 1, step 3 \(lr=0.001\)"):
        train.train_fashion_cnn(tmp_path, epochs=1, batch_size=32, limit=256, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"fashion_cnn_epoch00.npz"}  # the untrained start only
    assert all(np.isfinite(v).all() for v in np.load(tmp_path / "fashion_cnn_epoch00.npz").values())


def test_train_decoder_checks_its_layer_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "decoder"]) == 2
    _one_error_line(capsys, "train decoder needs --layer")
    assert cli.main(["train", "decoder", "--layer", "features.2"]) == 2
    _one_error_line(capsys, "--layer must be one of features.1, features.4, features.9, classifier.1, classifier.3",
                    "got 'features.2'")
    assert cli.main(["train", "fashion_cnn", "--layer", "features.4"]) == 2
    _one_error_line(capsys, "--layer is for `minivis train decoder` only")
    assert cli.main(["train", "decoder", "--layer", "features.4", "--train-images", "10"]) == 2
    _one_error_line(capsys, "--train-images must be at least the batch size (64), got 10")
    assert not (tmp_path / "runs").exists()


def test_train_decoder_writes_under_runs_decoder(tmp_path, monkeypatch, capsys):
    from minivis import train_decoder

    calls = []
    monkeypatch.setattr(train_decoder, "train_decoder", lambda out, layer, *args, **kw: calls.append(
        (out, layer, args, kw)) or {"test_image_error": 0.5, "total_seconds": 1})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "decoder", "--layer", "classifier.1", "--train-images", "1000"]) == 0
    out, layer, args, kw = calls[-1]
    assert out == cli.TRAIN_OUT / "decoder" and layer == "classifier.1"
    assert args == (2, 64, 1e-3, 0) and kw == {"limit": 1000}  # the decoder's defaults
    assert "test image error 0.5000" in capsys.readouterr().out


def test_gallery_flags_reach_the_site_builder(tmp_path, monkeypatch, capsys):
    import minivis.site

    calls = []
    monkeypatch.setattr(minivis.site, "build_site", lambda out, **kw: calls.append((out, kw)) or out / "index.html")
    out = tmp_path / "site"
    assert cli.main(["gallery", "--out", str(out)]) == 0
    assert calls[-1] == (out, {"mode": "default", "photos": None, "cache": True, "workers": cli.default_workers()})
    assert cli.main(["gallery", "--fast", "--no-cache", "--workers", "3", "--out", str(out), "coffee"]) == 0
    assert calls[-1][1] == {"mode": "fast", "photos": ["coffee"], "cache": False, "workers": 3}
    assert cli.main(["gallery", "--workers", "0", "--out", str(out)]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main(["gallery", "--full", "--out", str(out)]) == 0
    assert calls[-1][1]["mode"] == "full"
    assert "site written: open" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["gallery", "--fast", "--full"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_overview_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for verb in ("gallery", "explain", "classviz", "dream", "invert", "attack", "style", "lessons", "train"):
        assert f"minivis {verb} " in text, verb
    assert cli.default_workers() in (1, 2)
