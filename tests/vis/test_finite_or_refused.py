"""Scalar settings must be finite and in range, and an optimisation that diverges stops with an error:
no public method returns or stores NaN/inf silently (issue: hostile input)."""

import numpy as np
import pytest

import minivis as mv


@pytest.fixture(scope="module")
def model_and_image():
    model = mv.models.load("fashion_cnn")
    return model, model.preprocess(np.full((1, 28, 28, 1), 30, np.uint8))


@pytest.mark.parametrize("baseline, message", [
    (float("nan"), "baseline must be a finite number, got nan"),
    (float("inf"), "baseline must be a finite number, got inf"),
    (1e39, r"baseline must fit the model's float32 \(magnitude <= 3.4e\+38\)"),
    (10**400, "baseline must be a finite number"),
    ("np.full", r"baseline contains NaN or infinite values \(in the model's float32\)"),
])
def test_integrated_gradients_refuses_non_finite_baselines(model_and_image, baseline, message):
    model, x = model_and_image
    if baseline == "np.full":
        baseline = np.full(x.shape, 1e39)  # finite in float64, infinite in the model's float32
    with pytest.raises(ValueError, match="integrated_gradients: " + message):
        mv.vis.integrated_gradients(model, x, 1, baseline=baseline, steps=2)


@pytest.mark.parametrize("fill, message", [
    (1e39, r"fill must fit the model's float32"), (float("nan"), "fill must be finite"), ([0.0, np.inf], "fill must")])
def test_occlusion_refuses_fills_the_model_cannot_hold(model_and_image, fill, message):
    model, x = model_and_image
    with pytest.raises(ValueError, match="occlusion: " + message):
        mv.vis.occlusion(model, x, 1, patch=8, stride=8, fill=fill)


@pytest.mark.parametrize("method", ["fgsm", "targeted_attack"])
@pytest.mark.parametrize("epsilon, message", [
    (float("inf"), "must be a finite number"), (float("nan"), "must be a finite number"),
    (1e39, r"must be in \[0, 1\] \(pixel units"), (-0.1, r"must be in \[0, 1\]")])
def test_attacks_refuse_epsilons_outside_the_pixel_scale(model_and_image, method, epsilon, message):
    model, x = model_and_image
    with pytest.raises(ValueError, match=f"{method}: epsilon {message}"):
        getattr(mv.vis, method)(model, x, 1, epsilon)


def test_a_diverging_class_model_stops_naming_the_step_and_the_setting(model_and_image):
    model, _ = model_and_image
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(ValueError, match=r"class_model: the optimisation diverged at step \d+ of 5 .*lower lr "
                                             r"\(now 1e\+30\)"):
            mv.vis.class_model(model, 1, steps=5, lr=1e30, seed=0, progress=False)


@pytest.mark.parametrize("call", [
    lambda m: mv.vis.class_model(m, 1, steps=2, lr=float("nan"), progress=False),
    lambda m: mv.vis.deepdream(m, np.zeros((28, 28, 1), np.uint8), "features.3", steps=2, lr=float("inf")),
    lambda m: mv.vis.class_model(m, 1, steps=2, lr=0.1, l2=float("nan"), progress=False),
])
def test_non_finite_settings_are_refused_up_front(model_and_image, call):
    with pytest.raises((ValueError, TypeError), match="finite|must be"):
        call(model_and_image[0])
