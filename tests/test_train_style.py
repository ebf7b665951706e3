"""Training the feed-forward style network (minivis/train_style.py) and `minivis train style`: a tiny
run writes weights, checkpoints and a log that load back; the perceptual loss equals its parts;
bad settings and names are refused before any folder is made."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minivis as mv
from minivis import cli, train_style
from minivis.vis.synthesis import style as st


def test_a_tiny_run_writes_weights_checkpoints_and_a_log_that_load(tmp_path) -> None:
    log = train_style.train_style(tmp_path, ["stripes", "waves"], steps=2, batch_size=2, crop=32, channels=4,
                                  blocks=1, checkpoint_every=1, progress=False)
    assert log["styles"] == ["stripes", "waves"] and log["steps"] == 2 and np.isfinite(log["final_loss"])
    assert [(r["photo"], r["style"]) for r in log["held_out"]][:2] == [("chelsea", "stripes"), ("chelsea", "waves")]
    weights = tmp_path / "fast_style_multi.npz"
    assert weights.is_file() and (tmp_path / "checkpoints" / "fast_style_multi_step00001.npz").is_file()
    assert json.loads((tmp_path / "fast_style_multi_train_log.json").read_text())["channels"] == 4
    net = mv.models.load("fast_style_multi", weights=weights)
    assert net.styles == ["stripes", "waves"] and net.num_styles == 2
    assert mv.vis.stylize(net, np.zeros((32, 32, 3), np.uint8), "waves").shape == (32, 32, 3)


def test_perceptual_loss_is_content_plus_style_plus_tv(rng) -> None:
    lite0 = mv.models.load("efficientnet_lite0")
    y = mv.tensor(rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32))
    x = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    grams = {k: np.stack([v, 2 * v]) for k, v in
             st.gram_targets(lite0, st.to_input(lite0, x[0]), train_style.STYLE_LAYERS).items()}
    with mv.no_grad():
        content = mv.nn.forward_to(lite0, mv.tensor(st.to_input(lite0, x)), train_style.CONTENT_LAYER).data
        index = np.array([1, 0])
        total = train_style.perceptual_loss(lite0, y, content, grams, (1.0, 3.0, 5.0), index).numpy()
        acts = {k: mv.nn.forward_to(lite0, mv.tensor(st.to_input(lite0, y.data)), k)
                for k in train_style.STYLE_LAYERS}
        weights = {k: 0.25 for k in train_style.STYLE_LAYERS}
        expected = (st.content_loss(acts[train_style.CONTENT_LAYER], content).numpy()
                    + 3.0 * st.style_loss(acts, {k: g[index] for k, g in grams.items()}, weights).numpy()
                    + 5.0 * st.tv_penalty(y).numpy())
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_bad_settings_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown style"):
        train_style.train_style(tmp_path / "a", ["zebra"], progress=False)
    with pytest.raises(ValueError, match="a style is named twice"):
        train_style.train_style(tmp_path / "a", ["waves", "waves"], progress=False)
    with pytest.raises(ValueError, match="crop must be a multiple of 4"):
        train_style.train_style(tmp_path / "a", ["waves"], crop=30, progress=False)
    with pytest.raises(ValueError, match="loss weights must be finite and >= 0"):
        train_style.train_style(tmp_path / "a", ["waves"], style_weight=-1.0, progress=False)
    with pytest.raises(ValueError, match="lr must be"):
        train_style.train_style(tmp_path / "a", ["waves"], lr=float("nan"), progress=False)
    assert not (tmp_path / "a").exists()


def test_cli_train_style(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "style"]) == 2
    assert "needs --style NAME" in capsys.readouterr().err
    assert cli.main(["train", "style", "--style", "zebra"]) == 2
    assert "unknown style(s) 'zebra'" in capsys.readouterr().err
    assert cli.main(["train", "style", "--style", "waves", "--steps", "0"]) == 2
    assert "steps must be a positive int" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    calls = []
    monkeypatch.setattr(train_style, "train_style",
                        lambda out, styles, **kw: calls.append((out, styles, kw)) or {"final_loss": 1.0,
                                                                                     "total_seconds": 1})
    assert cli.main(["train", "style", "--style", "mosaic", "waves", "--steps", "5"]) == 0
    out, styles, kw = calls[-1]
    assert out == cli.TRAIN_OUT / "fast_style_multi" and styles == ["mosaic", "waves"] and kw["steps"] == 5
    assert kw["crop"] == 64 and kw["upsample"] == "transpose" and kw["batch_size"] == 4
