"""Bad arguments found by a one-argument-at-a-time sweep over the public calls (each call's valid
arguments, one replaced by a hostile value): each is refused with a ValueError or TypeError that
names the call and the argument, where NumPy, SciPy or Python failed deep inside before, or the
call ran for ever. Cases that other test files already cover are not repeated here."""

import numpy as np
import pytest

import minivis as mv

RNG = np.random.default_rng(0)
IMAGE = np.zeros((1, 28, 28), np.float32)


@pytest.fixture(scope="module")
def model():
    return mv.models.load("fashion_cnn")


@pytest.fixture(scope="module")
def affinities():
    return mv.vis.tsne_affinities(RNG.random((12, 4)), 3.0, method="exact")[0]


CASES = [
    # counts that would need arrays larger than the machine
    ("infidelity n_samples", lambda m, p: mv.vis.infidelity(m, IMAGE, 0, np.zeros((1, 1, 28, 28)), n_samples=10**30),
     ValueError, r"infidelity: the perturbations would have shape \(1, 10+, 1, 28, 28\)"),
    ("max_sensitivity n_samples", lambda m, p: mv.vis.max_sensitivity(lambda z: z, IMAGE[None], n_samples=2**63),
     ValueError, r"max_sensitivity: the perturbations would have shape"),
    ("random_directions dim", lambda m, p: mv.vis.random_directions(10**30, 2), ValueError,
     r"random_directions: the directions would have shape \(2, 10+\)"),
    ("tsne_grid grid", lambda m, p: mv.vis.tsne_grid(RNG.standard_normal((12, 2)), RNG.random((12, 3, 3)), grid=2**40),
     ValueError, r"tsne_grid: the assignment cost matrix would have shape \(12, "),
    ("efros_leung size", lambda m, p: mv.vis.efros_leung(RNG.random((8, 8)), 10**30, window=3), ValueError,
     r"efros_leung: the output would have shape \(10+, 10+, 3\)"),
    ("texture_synthesis size", lambda m, p: mv.vis.texture_synthesis(m, IMAGE, size=10**12, layers=["features.1"],
                                                                     steps=1), ValueError,
     r"texture_synthesis: the output would have shape \(1, 1, 10+, 10+\)"),
    ("BatchNorm2d num_features", lambda m, p: mv.nn.BatchNorm2d(2**62), ValueError,
     r"BatchNorm2d: the running statistics would have shape \(4611686018427387904,\)"),
    # numbers that were used unchecked
    ("tsne_gradient exaggeration", lambda m, p: mv.vis.tsne_gradient(p, RNG.standard_normal((12, 2)), exaggeration="x"),
     TypeError, r"tsne_gradient: exaggeration must be a number, got str"),
    ("tsne_grid fill", lambda m, p: mv.vis.tsne_grid(RNG.standard_normal((12, 2)), RNG.random((12, 3, 3)), fill="x"),
     TypeError, r"tsne_grid: fill must be a number, got str"),
    ("fooling_image noise_std", lambda m, p: mv.vis.fooling_image(m, 1, noise_std=[0.5], max_steps=1), TypeError,
     r"fooling_image: noise_std must be a number, got list"),
    ("clip low", lambda m, p: mv.F.clip(mv.tensor(np.zeros(3)), low="x"), TypeError,
     r"clip: low must be a number or None, got 'x'"),
    ("clip high NaN", lambda m, p: mv.F.clip(mv.tensor(np.zeros(3)), high=float("nan")), TypeError,
     r"clip: high must be a number or None, got nan"),
    ("Dropout p", lambda m, p: mv.nn.Dropout(p="0.5"), TypeError, r"Dropout: p must be a number, got str"),
    # seeds
    ("Dropout seed", lambda m, p: mv.nn.Dropout(seed=-1), ValueError, r"Dropout: seed must be an int >= 0 or None"),
    ("random_crops seed", lambda m, p: mv.data.random_crops(np.zeros((8, 8, 3), np.uint8), 2, 2, seed=1.5),
     TypeError, r"random_crops: seed must be an int, a numpy Generator or None, got 1.5"),
    ("dropout rng", lambda m, p: mv.F.dropout(mv.tensor(np.zeros(3)), 0.5, True, rng=-1), ValueError,
     r"dropout: rng must be an int >= 0 or None, got -1"),
    # shapes and lists
    ("fooling_image empty target", lambda m, p: mv.vis.fooling_image(m, np.array([], np.int64), max_steps=1),
     ValueError, r"fooling_image: target must be a class index or a non-empty list of them"),
    ("gram_targets layers", lambda m, p: mv.vis.gram_targets(m, IMAGE, 3), TypeError,
     r"gram_targets: layers must be a list of layer names \(str\), got 3"),
    ("softmax empty axis", lambda m, p: mv.F.softmax(mv.tensor(np.zeros((2, 0)))), ValueError,
     r"softmax: axis -1 of the input \(2, 0\) is empty"),
    ("log_softmax empty axis", lambda m, p: mv.F.log_softmax(mv.tensor(np.zeros((0, 3))), axis=0), ValueError,
     r"log_softmax: axis 0 of the input \(0, 3\) is empty"),
    ("interpolate empty map", lambda m, p: mv.F.interpolate(mv.tensor(np.zeros((1, 2, 6, 0))), size=4, mode="bilinear"),
     ValueError, r"interpolate: input must have at least one row and one column to resample, got shape \(1, 2, 6, 0\)"),
    ("mean of nothing", lambda m, p: mv.F.mean(mv.tensor(np.zeros((2, 0))), axis=1), ValueError,
     r"mean: no values to average over axes \(1,\) of a tensor of shape \(2, 0\)"),
    ("adaptive_avg_pool2d empty map", lambda m, p: mv.F.adaptive_avg_pool2d(mv.tensor(np.zeros((2, 4, 0, 6))), 2),
     ValueError, r"adaptive_avg_pool2d: input must have at least one row and one column to average, "
                 r"got shape \(2, 4, 0, 6\)"),
    ("pad past the machine", lambda m, p: mv.F.pad(mv.tensor(np.zeros((2, 4, 6, 6))), (10**9, 1)), ValueError,
     r"pad: the output would have shape \(2, 4, 6, 1000000007\)"),
    # the divisor of local response norm must stay positive: NaN (negative) or infinite (zero) otherwise
    ("local_response_norm alpha", lambda m, p: mv.F.local_response_norm(mv.tensor(np.ones((1, 3, 2, 2))), 3,
                                                                          alpha=-1.0),
     ValueError, r"local_response_norm: alpha must be >= 0.0, got -1.0"),
    ("local_response_norm k", lambda m, p: mv.F.local_response_norm(mv.tensor(np.ones((1, 3, 2, 2))), 3, k=0.0),
     ValueError, r"local_response_norm: k must be > 0 \(the divisor is k \+ alpha/size \* sum x\^2\), got 0.0"),
    # options named by a string, given an array: NumPy's own "truth value is ambiguous" error before
    ("cross_entropy reduction array", lambda m, p: mv.F.cross_entropy(mv.tensor(np.zeros((3, 5))), np.arange(3),
                                                                       reduction=np.zeros(3)),
     TypeError, r"cross_entropy: reduction must be one of \('mean', 'sum', 'none'\), got ndarray"),
    ("mse_loss reduction array", lambda m, p: mv.F.mse_loss(mv.tensor(np.zeros(3)), np.zeros(3), reduction=np.zeros(2)),
     TypeError, r"mse_loss: reduction must be one of"),
    ("pad mode array", lambda m, p: mv.F.pad(mv.tensor(np.zeros((1, 1, 2, 2))), (1, 1), mode=np.zeros(2)),
     TypeError, r"pad: mode must be one of \('constant', 'reflect', 'replicate'\), got ndarray"),
    ("occlusion mode array", lambda m, p: mv.vis.occlusion(m, IMAGE, 0, patch=7, stride=7, mode=np.zeros(2)),
     TypeError, r"occlusion: mode must be one of"),
    ("smoothgrad method array", lambda m, p: mv.vis.smoothgrad(m, IMAGE, 0, method=np.zeros(2)),
     TypeError, r"smoothgrad: method must be one of"),
    ("cam score array", lambda m, p: mv.vis.cam(m, IMAGE, 0, "features.8", "grad_cam", score=np.zeros(2)),
     TypeError, r"cam: score must be one of"),
    ("road order array", lambda m, p: mv.vis.road(m, IMAGE, 0, np.ones((28, 28)), order=np.zeros(2)),
     TypeError, r"road: order must be one of \('morf', 'lerf', 'both'\), got ndarray"),
    ("model_randomisation mode array", lambda m, p: mv.vis.model_randomisation(m, IMAGE, 0, "saliency",
                                                                                 mode=np.zeros(2)),
     TypeError, r"model_randomisation: mode must be one of"),
    ("top_activations score array", lambda m, p: mv.vis.top_activations(m, IMAGE[None], "features.1", k=1,
                                                                        score=np.zeros(2)),
     TypeError, r"top_activations: score must be one of"),
    ("nearest_neighbours metric array", lambda m, p: mv.vis.nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 3)),
                                                                                metric=np.zeros(2)),
     TypeError, r"nearest_neighbours: metric must be one of"),
    ("style_transfer optimizer array", lambda m, p: mv.vis.style_transfer(m, IMAGE, IMAGE, "features.3", ["features.1"],
                                                                          steps=1, optimizer=np.zeros(2)),
     TypeError, r"style_transfer: optimizer must be one of \('lbfgs', 'adam'\), got ndarray"),
    ("fooling_image start array", lambda m, p: mv.vis.fooling_image(m, 3, start=np.zeros(2), max_steps=1),
     TypeError, r"fooling_image: start must be one of \('noise', 'zero'\), got ndarray"),
    ("photo name array", lambda m, p: mv.data.photo(np.zeros(2)), TypeError, r"photo: name must be one of"),
    ("tsne_affinities method array", lambda m, p: mv.vis.tsne_affinities(RNG.random((12, 4)), 3.0, method=np.zeros(2)),
     TypeError, r"tsne_affinities: method must be one of \('exact', 'barnes_hut'\), got ndarray"),
    ("insertion progress array", lambda m, p: mv.vis.insertion(m, IMAGE, 0, np.ones((28, 28)), pixels_per_step=392,
                                                               progress=np.zeros(2)),
     TypeError, r"insertion: progress must be True, False or None \(automatic\), got array"),
    ("road progress", lambda m, p: mv.vis.road(m, IMAGE, 0, np.ones((28, 28)), progress="yes"),
     TypeError, r"road: progress must be True, False or None"),
    ("tsne_affinities tol", lambda m, p: mv.vis.tsne_affinities(RNG.random((12, 4)), 3.0, tol="small"),
     TypeError, r"tsne_affinities: tol must be a number, got str"),
    ("max_sensitivity empty batch", lambda m, p: mv.vis.max_sensitivity(lambda z: z, np.zeros((0, 1, 4, 4))),
     ValueError, r"max_sensitivity: x must be a non-empty batch \(N, C, H, W\), got shape \(0, 1, 4, 4\)"),
    ("max_sensitivity text batch", lambda m, p: mv.vis.max_sensitivity(lambda z: z, np.zeros((1, 1, 4, 4), "U3")),
     TypeError, r"max_sensitivity: x must be a float array \(a batch of model inputs\), got dtype <U3"),
    ("occlusion_map size past the machine", lambda m, p: mv.vis.occlusion_map(np.ones((2, 2)), 10**30, 14, 14),
     ValueError, r"occlusion_map: the output would have shape"),
    ("a model called on None", lambda m, p: m(None), TypeError,
     r"FashionCNN: input must be a Tensor or an array \(N, 1, H, W\), got NoneType"),
    ("forward_to model", lambda m, p: mv.nn.forward_to("fashion_cnn", IMAGE[None], "features.3"), TypeError,
     r"forward_to: model must be a minivis nn.Module, got str"),
    ("forward_to layer", lambda m, p: mv.nn.forward_to(m, IMAGE[None], "features.99"), ValueError,
     r"forward_to: layer: 'features.99' is not a layer of FashionCNN"),
    ("capture layers", lambda m, p: mv.nn.capture(m, 3).__enter__(), TypeError,
     r"capture: layers must be a layer name or a list of names, got 3"),
    ("InstanceNorm2d num_features", lambda m, p: mv.nn.InstanceNorm2d("8"), ValueError,
     r"InstanceNorm2d: num_features must be a positive int, got '8'"),
    ("InstanceNorm2d affine", lambda m, p: mv.nn.InstanceNorm2d(8, affine=np.ones(2)), TypeError,
     r"InstanceNorm2d: affine must be True or False"),
    ("models.load checkpoint", lambda m, p: mv.models.load("fashion_cnn", checkpoint=10**30), ValueError,
     r"models.load: checkpoint must be one of the shipped epochs \[.*\], got 10+"),
    ("models.build name", lambda m, p: mv.models.build(np.zeros(2)), TypeError,
     r"models.build: name must be a string"),
    ("style_image size", lambda m, p: mv.data.style_image("mosaic", 2**62), ValueError,
     r"style_image: the output would have shape"),
    ("crop_patches top", lambda m, p: mv.vis.crop_patches(m, IMAGE[None], {"features.3": None}), TypeError,
     r"crop_patches: top must be a LayerTop \(a value of top_activations' result\), got dict"),
    ("crop_patches fill", lambda m, p: mv.vis.crop_patches(
        m, IMAGE[None].repeat(2, 0),
        mv.vis.top_activations(m, IMAGE[None].repeat(2, 0), "features.3", k=1)["features.3"], fill="grey"),
     TypeError, r"crop_patches: fill must be a number, got str"),
    ("interpolate_styles alphas", lambda m, p: mv.vis.interpolate_styles(
        mv.models.load_fast_style("mosaic"), np.zeros((8, 8, 3), np.uint8), 0, 0, alphas=0.5),
     TypeError, r"interpolate_styles: alphas must be a non-empty list of numbers in \[0, 1\], got 0.5"),
    ("ablation fill array", lambda m, p: mv.vis.ablation(m, IMAGE, 0, "features.1", fill=np.zeros(2)),
     TypeError, r"ablation: fill must be one of"),
]


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_by_name(model, affinities, call, error, match):
    with pytest.raises(error, match=match):
        call(model, affinities)


def test_what_the_checks_must_still_let_through():
    """Infinite clip bounds and numpy Generators as seeds are valid, and keep working."""
    np.testing.assert_array_equal(mv.F.clip(mv.tensor(np.array([-2.0, 0.5, 3.0])), low=-np.inf, high=1.0).numpy(),
                                  [-2.0, 0.5, 1.0])
    a = mv.data.random_crops(np.arange(192, dtype=np.uint8).reshape(8, 8, 3), 2, 3, seed=np.random.default_rng(4))
    b = mv.data.random_crops(np.arange(192, dtype=np.uint8).reshape(8, 8, 3), 2, 3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert len(list(mv.data.batches(np.zeros(4), batch_size=2, shuffle=True, seed=np.random.default_rng(0)))) == 2
    # flattening an empty batch keeps the merged size (a -1 there was undefined)
    assert mv.F.flatten(mv.tensor(np.zeros((0, 2, 6, 6))), 1).shape == (0, 72)
    # local response norm on no channels is empty, forward and backward (its window once reached past -1)
    x = mv.tensor(np.zeros((2, 0, 3, 3)), requires_grad=True)
    y = mv.F.local_response_norm(x, 3)
    y.backward(np.ones(y.shape))
    assert y.shape == x.grad.shape == (2, 0, 3, 3)
