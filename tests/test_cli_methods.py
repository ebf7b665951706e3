"""`minivis explain | classviz | dream | invert | attack` on a small image with --fast, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from minivis import cli
from minivis.cli_methods import read_image, resolve_class
from minivis.models import load


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[0].startswith("minivis ") and ": error: " in err[0], err
    assert "Traceback" not in "\n".join(err)
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


@pytest.fixture
def shoe(tmp_path):
    """A 40x30 JPEG: a bright shoe-like bar on black, like a Fashion-MNIST sneaker, upright."""
    img = np.zeros((30, 40, 3), np.uint8)
    img[18:25, 5:36] = 220
    img[12:18, 22:36] = 200
    path = tmp_path / "shoe.jpg"
    Image.fromarray(img).save(path, quality=95)
    return path


FASHION = ["--model", "fashion_cnn", "--fast"]


def test_explain_writes_one_png_per_method(shoe, tmp_path, capsys):
    out = tmp_path / "ex"
    assert cli.main(["explain", str(shoe), "--out", str(out), "--target", "sneaker", *FASHION]) == 0
    keys = ("saliency", "smoothgrad", "guided_backprop", "deconvnet", "integrated_gradients", "grad_cam",
            "guided_grad_cam", "cam_variants", "gradient_x_input", "lrp", "deeplift", "occlusion")
    assert {p.name for p in out.glob("*.png")} == {f"shoe_{k}.png" for k in keys}
    printed = capsys.readouterr().out
    assert "explaining Sneaker (class 7" in printed and "mv.vis.grad_cam(model, x, 7, layer='features.7')" in printed
    assert "mv.vis.lrp(model, x, 7, composite='epsilon_gamma_box')" in printed
    assert "mv.vis.cam(model, x, 7, 'features.7', method=m) for m in ('grad_cam_pp'," in printed
    assert cli.main(["explain", str(shoe), "--out", str(out / "two"), "--method", "saliency, deconvnet",
                     *FASHION]) == 0
    assert {p.name for p in (out / "two").glob("*.png")} == {"shoe_saliency.png", "shoe_deconvnet.png"}


def test_explain_map_is_the_methods_result(shoe, tmp_path, monkeypatch):
    """The verb draws what mv.vis.saliency returns for the preprocessed image and the named class."""
    from minivis import plot, vis

    drawn = {}
    monkeypatch.setattr(plot, "save", lambda fig, path: drawn.setdefault(path.name, fig))
    assert cli.main(["explain", str(shoe), "--method", "saliency", "--target", "3", "--out", str(tmp_path),
                     *FASHION]) == 0
    model = load("fashion_cnn")
    expected = vis.saliency(model, model.preprocess(read_image(shoe)), 3)[0]
    shown = np.asarray(drawn["shoe_saliency.png"].axes[1].images[-1].get_array())  # the heat layer of the overlay
    assert expected.shape == (28, 28)
    np.testing.assert_allclose(shown, plot.attribution_image(expected, "heat"), rtol=1e-6, atol=1e-6)


def test_classviz_dream_invert_attack(shoe, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["classviz", "--target", "Trouser", "--out", str(out), *FASHION]) == 0
    assert (out / "class_1_Trouser.png").is_file() and (out / "class_1_Trouser_history.png").is_file()
    logits = capsys.readouterr().out.split("logit ")[1].split(" -> ")
    assert float(logits[1].split()[0]) > float(logits[0])  # the ascent raised the class logit
    assert cli.main(["dream", str(shoe), "--out", str(out), *FASHION]) == 0
    assert (out / "shoe_dream_features.5.png").is_file()
    assert cli.main(["invert", str(shoe), "--layer", "features.2", "--out", str(out), *FASHION]) == 0
    assert (out / "shoe_inverted_features.2.png").is_file()
    assert cli.main(["attack", str(shoe), "--out", str(out), *FASHION]) == 0
    assert "mv.vis.fgsm(model, x," in capsys.readouterr().out
    assert cli.main(["attack", str(shoe), "--target", "bag", "--epsilon", "16/255", "--out", str(out / "t"),
                     *FASHION]) == 0
    assert "mv.vis.targeted_attack(model, x, 8, epsilon=0.062745" in capsys.readouterr().out
    assert (out / "t" / "shoe_attack.png").is_file()


@pytest.mark.parametrize("verb", ["explain", "dream", "invert", "attack"])
def test_missing_and_unreadable_images(verb, tmp_path, capsys):
    assert cli.main([verb, str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"), *FASHION]) == 2
    _one_error_line(capsys, f"IMAGE {tmp_path / 'nope.jpg'}: no such file")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a PNG")
    assert cli.main([verb, str(junk), "--out", str(tmp_path / "o"), *FASHION]) == 2
    _one_error_line(capsys, "not an image Pillow can read")
    assert cli.main([verb, str(tmp_path), "--out", str(tmp_path / "o"), *FASHION]) == 2
    _one_error_line(capsys, "not a file")
    assert not (tmp_path / "o").exists()  # nothing written before the input was checked


def test_bad_methods_classes_layers_and_numbers(shoe, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert cli.main(["explain", str(shoe), "--method", "saliancy", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--method 'saliancy' is unknown", "did you mean 'saliency'")
    assert cli.main(["explain", str(shoe), "--target", "snaeker", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--target 'snaeker' is not a class of this model", "did you mean 'Sneaker'")
    assert cli.main(["explain", str(shoe), "--target", "10", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--target 10 is out of range: this model has classes 0..9")
    assert cli.main(["explain", str(shoe), "--layer", "features.77", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--layer 'features.77' is not a layer of fashion_cnn", "did you mean 'features.7'")
    assert cli.main(["dream", str(shoe), "--steps", "0", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--steps must be >= 1, got 0")
    assert cli.main(["classviz", "--target", "Bag", "--steps", "-3", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "--steps must be >= 1, got -3")
    assert cli.main(["attack", str(shoe), "--epsilon", "2", "--out", out, *FASHION]) == 2
    _one_error_line(capsys, "fgsm: epsilon")
    with pytest.raises(SystemExit):
        cli.main(["attack", str(shoe), "--epsilon", "eight", "--out", out])
    assert "expected a number such as 0.03 or 8/255" in capsys.readouterr().err


def test_bad_model_choices(shoe, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert cli.main(["explain", str(shoe), "--model", "vgg16", "--out", out]) == 2
    _one_error_line(capsys, "--model vgg16: no weights ship for it", "--weights FILE --arch vgg16")
    assert cli.main(["explain", str(shoe), "--model", "fashion_cn", "--out", out]) == 2
    _one_error_line(capsys, "--model 'fashion_cn' is unknown", "did you mean 'fashion_cnn'")
    assert cli.main(["explain", str(shoe), "--weights", str(shoe), "--out", out]) == 2
    _one_error_line(capsys, "--weights needs --arch NAME")
    assert cli.main(["explain", str(shoe), "--weights", str(tmp_path / "w.pth"), "--arch", "vgg16", "--out", out]) == 2
    _one_error_line(capsys, "no such file")
    assert cli.main(["explain", str(shoe), "--weights", str(shoe), "--arch", "resnet", "--out", out]) == 2
    _one_error_line(capsys, "--arch 'resnet' is not an architecture minivis knows")
    assert cli.main(["explain", str(shoe), "--arch", "vgg16", "--out", out]) == 2
    _one_error_line(capsys, "--arch goes with --weights FILE")
    assert not (tmp_path / "o").exists()


def test_own_weights_file(shoe, tmp_path, capsys):
    """--weights FILE --arch NAME loads a state dict written by the user (here: the shipped one, saved again)."""
    state = load("fashion_cnn").state_dict()
    weights = tmp_path / "mine.npz"
    np.savez(weights, **{k: np.asarray(v) for k, v in state.items()})
    assert cli.main(["explain", str(shoe), "--weights", str(weights), "--arch", "fashion_cnn", "--method",
                     "saliency", "--out", str(tmp_path / "o"), "--fast"]) == 0
    assert (tmp_path / "o" / "shoe_saliency.png").is_file()


def test_unwritable_output_folder(shoe, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["explain", str(shoe), "--out", str(blocker / "sub"), *FASHION]) == 2
    _one_error_line(capsys, "cannot create the folder", "--out")


def test_help_has_examples(capsys):
    for verb in ("explain", "classviz", "dream", "invert", "attack", "gallery", "style"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([verb, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"minivis {verb} " in text


def test_read_image_modes_and_exif_orientation(tmp_path):
    base = np.zeros((20, 30, 3), np.uint8)
    base[:5, :, 0] = 255  # a red band along the top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "turned.jpg"
    Image.fromarray(base).save(path, exif=exif, quality=95)
    upright = read_image(path)
    assert upright.shape == (30, 20, 3) and upright.dtype == np.uint8
    assert upright[:, -5:, 0].mean() > 200 and upright[:, :5, 0].mean() < 30  # the band is now on the right
    for mode in ("L", "P", "RGBA", "CMYK", "I;16", "1"):
        img = Image.fromarray(base).convert(mode) if mode != "I;16" else Image.fromarray(
            base[..., 0].astype(np.uint16) * 257)  # 16-bit grey
        assert img.mode == mode
        p = tmp_path / f"m{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        img.save(p)
        arr = read_image(p)
        assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8, mode
        assert arr[:5].mean() > arr[5:].mean() + 20, mode  # the band survives every conversion


def test_resolve_class_by_name_index_and_suggestion():
    model = load("fashion_cnn")
    assert resolve_class(model, "ankle boot") == 9 and resolve_class(model, " 4 ") == 4
    with pytest.raises(ValueError, match="did you mean 'Pullover'"):
        resolve_class(model, "pulover")
    with pytest.raises(ValueError, match="give a class index 0..9 or a name such as 'T-shirt/top'"):
        resolve_class(model, "zebra")
