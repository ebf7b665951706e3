"""The CAM family (minivis/vis/attribution/cam.py) against pytorch-grad-cam on identical weights.

pytorch-grad-cam's final maps are min-max scaled, resized with OpenCV and cast to float32, so the
parity is checked where the methods differ: its own ``get_cam_image`` (the weights and the
weighted sum, float64) on the activation and gradient it records itself, against
``mv.vis.cam(..., upsample=False, relu=False)``. Score-CAM and Ablation-CAM cast their scores to
float32 inside pytorch-grad-cam, so those two agree to float32 precision (1e-6), not 1e-10.
Where pytorch-grad-cam departs from the papers (Score-CAM's score, Eigen-CAM's sign) the
difference is tested explicitly."""

from __future__ import annotations

import numpy as np
import pytest

import minivis as mv

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam", reason="CAM parity needs grad-cam (test extra)")

from pytorch_grad_cam import (  # noqa: E402
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGETS = [3, 0, 7]
LAYERS = ["features.3", "features.8"]  # a ReLU at 28x28, the last ReLU at 14x14
GRADIENT_BASED = {"grad_cam": GradCAM, "grad_cam_pp": GradCAMPlusPlus, "xgrad_cam": XGradCAM,
                  "hires_cam": HiResCAM, "layer_cam": LayerCAM}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).standard_normal((3, 1, 28, 28))


def recorded(twin, layer, x):
    """pytorch-grad-cam's own activation and gradient of the layer (float64 arrays)."""
    module = twin.get_submodule(layer)
    record = ActivationsAndGradients(twin, [module], None)
    out = record(torch.from_numpy(x))
    twin.zero_grad()
    sum(ClassifierOutputTarget(t)(o) for t, o in zip(TARGETS, out, strict=True)).backward()
    acts, grads = record.activations[0].numpy(), record.gradients[0].numpy()
    record.release()
    return module, acts, grads


def close(ours, ref, rtol=1e-10):
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("method", list(GRADIENT_BASED))
def test_gradient_variants_match_pytorch_grad_cam(nets, images, layer, method):
    model, twin = nets
    module, acts, grads = recorded(twin, layer, images)
    ref_cam = GRADIENT_BASED[method](model=twin, target_layers=[module])
    targets = [ClassifierOutputTarget(t) for t in TARGETS]
    ref = ref_cam.get_cam_image(torch.from_numpy(images), module, targets, acts, grads, False)
    close(mv.vis.cam(model, images, TARGETS, layer, method, upsample=False, relu=False), ref)
    # and the upsampled, rectified map is ReLU then bilinear (half-pixel centres) of the same thing
    up = mv.F.interpolate(mv.tensor(np.maximum(ref, 0)[:, None]), size=(28, 28), mode="bilinear").numpy()[:, 0]
    close(mv.vis.cam(model, images, TARGETS, layer, method), up)


@pytest.mark.parametrize("method,cls", [("eigen_cam", EigenCAM), ("eigen_grad_cam", EigenGradCAM)])
def test_eigen_variants_match_up_to_the_sign_pytorch_grad_cam_leaves_open(nets, images, method, cls):
    """Same principal direction, to float32 (pytorch-grad-cam returns float32 projections). Its sign is
    the SVD's; ours makes the map correlate positively with sum_k A^k, so ours = s * theirs, s = +-1."""
    model, twin = nets
    layer = "features.8"
    module, acts, grads = recorded(twin, layer, images)
    ref = cls(model=twin, target_layers=[module]).get_cam_image(torch.from_numpy(images), module, None, acts,
                                                                 grads, False)
    ours = mv.vis.cam(model, images, TARGETS, layer, method, upsample=False, relu=False)
    a = acts if method == "eigen_cam" else acts * grads
    for i in range(len(images)):
        sign = np.sign((ref[i] * ours[i]).sum())
        close(ours[i], sign * ref[i], rtol=2e-6)
        assert (ours[i] * a[i].sum(axis=0)).sum() > 0  # our sign convention


def test_score_cam_matches_pytorch_grad_cams_logit_softmax_and_follows_the_paper_by_default(nets, images):
    """pytorch-grad-cam weights channel k by a softmax over channels of the masked logits; the paper
    (Wang et al. 2020, eq. 3-5) by the increase of the class *probability* over a baseline image.
    ``score="logit_softmax"`` reproduces the former (to float32: it casts the scores), the default
    the latter, checked against a direct computation."""
    model, twin = nets
    layer = "features.8"
    module, acts, grads = recorded(twin, layer, images)
    targets = [ClassifierOutputTarget(t) for t in TARGETS]
    ref_cam = ScoreCAM(model=twin, target_layers=[module])
    with torch.no_grad():
        ref = ref_cam.get_cam_image(torch.from_numpy(images), module, targets, acts, grads, False)
    ours = mv.vis.cam(model, images, TARGETS, layer, "score_cam", upsample=False, relu=False, score="logit_softmax",
                      batch_size=5)
    close(ours, ref, rtol=1e-6)
    paper = mv.vis.cam(model, images, TARGETS, layer, "score_cam", upsample=False, relu=False, batch_size=7)
    # the paper's weights, directly: upsample (corner-aligned), min-max scale, mask, softmax probability
    x = torch.from_numpy(images)
    up = torch.nn.functional.interpolate(torch.from_numpy(acts), size=(28, 28), mode="bilinear", align_corners=True)
    lo, hi = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    with torch.no_grad():
        base = torch.softmax(twin(torch.zeros_like(x)), 1)
        want = []
        for i, t in enumerate(TARGETS):
            p = torch.softmax(twin(x[i:i + 1] * masks[i][:, None]), 1)[:, t] - base[i, t]
            want.append(np.tensordot(p.numpy(), acts[i], axes=1))
    close(paper, np.stack(want))
    assert np.abs(paper / np.abs(paper).max() - ours / np.abs(ours).max()).max() > 1e-3  # they differ


def test_ablation_cam_matches_pytorch_grad_cam(nets, images):
    model, twin = nets
    layer = "features.8"
    module, acts, grads = recorded(twin, layer, images)
    targets = [ClassifierOutputTarget(t) for t in TARGETS]
    ref_cam = AblationCAM(model=twin, target_layers=[module], batch_size=6)
    ref = ref_cam.get_cam_image(torch.from_numpy(images), module, targets, acts, grads, False)
    ours = mv.vis.cam(model, images, TARGETS, layer, "ablation_cam", upsample=False, relu=False, batch_size=5)
    close(ours, ref, rtol=1e-6)  # pytorch-grad-cam holds the unablated scores in float32


def test_streamed_methods_do_not_depend_on_batch_size(nets, images):
    model, _ = nets
    for method in ("score_cam", "ablation_cam"):
        a = mv.vis.cam(model, images[:1], [3], "features.8", method, batch_size=1)
        b = mv.vis.cam(model, images[:1], [3], "features.8", method, batch_size=16)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_grad_cam_through_cam_is_grad_cam(nets, images):
    model, _ = nets
    np.testing.assert_array_equal(mv.vis.cam(model, images, TARGETS, "features.8"),
                                  mv.vis.grad_cam(model, images, TARGETS, "features.8"))


def test_cam_bad_input(nets, images):
    model, _ = nets
    with pytest.raises(ValueError, match="cam: method must be one of"):
        mv.vis.cam(model, images, 0, "features.8", "gradcam")
    with pytest.raises(ValueError, match="score_cam: batch_size must be a positive int, got 0"):
        mv.vis.score_cam(model, images, 0, "features.8", batch_size=0)
    with pytest.raises(ValueError, match="cam: score must be one of"):
        mv.vis.score_cam(model, images, 0, "features.8", score="logits")
    with pytest.raises(TypeError, match="ablation_cam: target must be a class index"):
        mv.vis.ablation_cam(model, images, lambda out: out[:, 0], "features.8")
    with pytest.raises(ValueError, match="layer_cam: .*'features.99' is not a layer"):
        mv.vis.layer_cam(model, images, 0, "features.99")
    with pytest.raises(ValueError, match="Grad-CAM needs a convolutional layer"):
        mv.vis.cam(model, images, 0, "classifier.0", "xgrad_cam")
