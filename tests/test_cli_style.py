"""`minivis style`: the shipped feed-forward networks (one style, a multi-style style, a blend), Gatys
style transfer with --optimize, and one-line errors for every mistake, checked before any output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from minivis import cli, vis
from minivis.cli_methods import read_image
from minivis.cli_style import _resized, network_styles
from minivis.models import load_fast_style
from tests.test_cli_methods import _one_error_line


@pytest.fixture
def photo(tmp_path):
    """A 30x40 JPEG with a bright diagonal, rotated by its EXIF tag (displayed 40 high, 30 wide)."""
    img = np.full((30, 40, 3), 40, np.uint8)
    for i in range(30):
        img[i, i:i + 8] = (230, 180, 60)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    return path


def _png(path):
    with Image.open(path) as img:
        return img.format, img.size


def test_shipped_style_is_one_forward_pass(photo, tmp_path, capsys):
    out = tmp_path / "styled"
    assert cli.main(["style", str(photo), "--style", "mosaic", "--fast", "--out", str(out)]) == 0
    assert _png(out / "photo_style_mosaic.png") == ("PNG", (96, 128))  # upright: 30 wide -> shorter side 96
    assert _png(out / "photo_style_mosaic_figure.png")[0] == "PNG"
    printed = capsys.readouterr().out
    assert "mv.vis.stylize(mv.models.load_fast_style('mosaic'), photo)" in printed
    content = _resized(read_image(photo), 96)
    expected = vis.stylize(load_fast_style("mosaic"), content, 0)
    written = np.asarray(Image.open(out / "photo_style_mosaic.png"), np.float64) / 255
    np.testing.assert_allclose(written, expected, atol=0.5 / 255 + 1e-6)


def test_multi_style_name_and_mix(photo, tmp_path, capsys):
    singles, multi = network_styles()
    assert "mosaic" in singles and "immunohistochemistry" in multi
    out = tmp_path / "styled"
    assert cli.main(["style", str(photo), "--style", "immunohistochemistry", "--fast", "--out", str(out)]) == 0
    assert (out / "photo_style_immunohistochemistry.png").is_file()
    assert cli.main(["style", str(photo), "--mix", "mosaic=3, waves=1", "--fast", "--out", str(out)]) == 0
    path = out / "photo_style_mosaic0.75_waves0.25.png"
    assert path.is_file(), sorted(p.name for p in out.iterdir())
    assert "{'mosaic': 0.75, 'waves': 0.25}" in capsys.readouterr().out
    net = load_fast_style()
    content = _resized(read_image(photo), 96)
    expected = vis.stylize(net, content, {"mosaic": 0.75, "waves": 0.25})
    np.testing.assert_allclose(np.asarray(Image.open(path), np.float64) / 255, expected, atol=0.5 / 255 + 1e-6)
    # the blend is the convex combination of the norms' rows: halfway between the two pure styles' settings
    halfway = vis.interpolate_styles(net, content, "mosaic", "waves", alphas=(0.25,))[0]
    np.testing.assert_allclose(expected, halfway, atol=1e-6)


def test_optimize_runs_gatys(photo, tmp_path, capsys):
    out = tmp_path / "styled"
    assert cli.main(["style", str(photo), "--style", "stripes", "--optimize", "--steps", "2", "--size", "32",
                     "--out", str(out)]) == 0
    assert _png(out / "photo_style_stripes.png") == ("PNG", (32, 42))
    assert "mv.vis.style_transfer(m, mv.vis.style_input(m, photo), mv.vis.style_input(m, style), " \
           "style_weight=10, steps=2)" in capsys.readouterr().out


def test_errors_are_one_line_and_nothing_is_written(photo, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["--out", str(out), "--fast"]
    assert cli.main(["style", str(tmp_path / "nope.jpg"), "--style", "mosaic", *base]) == 2
    _one_error_line(capsys, f"IMAGE {tmp_path / 'nope.jpg'}: no such file")
    assert cli.main(["style", str(photo), "--style", "mosiac", *base]) == 2
    _one_error_line(capsys, "--style 'mosiac': no trained network for it", "did you mean 'mosaic'")
    assert cli.main(["style", str(photo), "--style", "checkerboard", *base]) == 2
    _one_error_line(capsys, "no trained network", "(or any style image with --optimize)")
    assert cli.main(["style", str(photo), "--style", "nosuch", "--optimize", *base]) == 2
    _one_error_line(capsys, "--style 'nosuch' is neither a style image name")
    assert cli.main(["style", str(photo), "--mix", "mosaic:0.5", *base]) == 2
    _one_error_line(capsys, "--mix 'mosaic:0.5': expected NAME=WEIGHT")
    assert cli.main(["style", str(photo), "--mix", "mosaik=1", *base]) == 2
    _one_error_line(capsys, "--mix: 'mosaik' is not a style of the multi-style network", "did you mean 'mosaic'")
    assert cli.main(["style", str(photo), "--mix", "mosaic=-1", *base]) == 2
    _one_error_line(capsys, "weights must be >= 0")
    assert cli.main(["style", str(photo), "--mix", "mosaic=0,waves=0", *base]) == 2
    _one_error_line(capsys, "give at least one positive weight")
    assert cli.main(["style", str(photo), "--mix", "mosaic=1", "--optimize", *base]) == 2
    _one_error_line(capsys, "--mix blends the trained networks' styles")
    assert cli.main(["style", str(photo), "--style", "mosaic", "--steps", "3", *base]) == 2
    _one_error_line(capsys, "--steps, --model and --weights go with --optimize")
    assert cli.main(["style", str(photo), "--style", "mosaic", "--size", "8", *base]) == 2
    _one_error_line(capsys, "--size must be at least 16 pixels, got 8")
    assert cli.main(["style", str(photo), "--style", "waves", "--optimize", "--model", "fashion_cnn", *base]) == 2
    _one_error_line(capsys, "--optimize needs a model with style layers")
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["style", str(photo), "--style", "mosaic", "--out", str(blocker / "sub"), "--fast"]) == 2
    _one_error_line(capsys, "cannot create the folder", "--out")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["style", str(photo), "--out", str(out)])
    assert exit_info.value.code == 2 and "one of the arguments --style --mix is required" in capsys.readouterr().err
