"""One bad argument at a time: every public call below, with valid arguments, is run again with one
argument replaced by each value of a hostile vocabulary (wrong types, signs, huge or non-finite
numbers; empty, wrongly shaped or wrongly typed arrays). A call may return, or refuse with a
ValueError or TypeError whose message starts with its own name, as a whole word (``pca:`` does
not name ``pca_fit``), or the name of the op it is documented to forward to (``nn.Conv2d`` ->
``conv2d``). Anything else (another exception, a message that does not say which call failed, a
hang) is a finding.

Run as a script (``python tests/fuzz/one_bad_argument.py``) by ``test_one_bad_argument.py``, in a
child process, since a regression here can be an out-of-bounds access that kills the interpreter.
Prints one JSON line per finding, then a summary line ``calls N returned R refused E findings M``.

Not in the vocabulary, on purpose: targets given as callables that raise (their own exception
passes through, as it should).
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

import minivis as mv  # noqa: E402

SECONDS = 20  # per call: far more than any of these takes with valid arguments


class Opaque:
    """An object of no type any call expects."""


SCALARS: list[tuple[str, Any]] = [
    ("None", None), ("str", "bogus"), ("list", []), ("dict", {}), ("True", True), ("complex", 1 + 2j),
    ("object", Opaque()), ("-1", -1), ("0", 0), ("1e30", 10**30), ("2**63", 2**63), ("nan", float("nan")),
    ("inf", float("inf")), ("-0.5", -0.5), ("1.5", 1.5), ("tuple3", (1, 2, 3)), ("bytes", b"x"),
    ("array", np.array([1, 2])), ("empty array", np.empty(0)),
]


def array_variants(b: np.ndarray) -> list[tuple[str, Callable[[], Any]]]:
    out: list[tuple[str, Callable[[], Any]]] = [
        ("empty batch", lambda: b[:0]), ("one dim less", lambda: b[0]), ("one dim more", lambda: b[None]),
        ("0-d", lambda: np.asarray(b.flat[0])), ("flat", lambda: b.ravel()),
    ]
    if b.ndim >= 2:
        out.append(("zero width", lambda: b[..., :0]))
    for dtype in ("bool", "complex64", "object", "U3"):
        out.append((f"dtype {dtype}", lambda dtype=dtype: b.astype(dtype)))
    for dtype in ("datetime64[s]", "timedelta64[s]"):  # where the cast works (not from floats in older NumPy)
        try:
            b.ravel()[:1].astype(dtype)
        except (TypeError, ValueError):
            continue
        out.append((f"dtype {dtype}", lambda dtype=dtype: b.astype(dtype)))
    if b.dtype.kind == "f":
        def with_value(value: float) -> np.ndarray:
            c = b.copy()
            c.flat[0] = value
            return c
        out += [("nan inside", lambda: with_value(np.nan)), ("inf inside", lambda: with_value(np.inf))]
    return out


def calls() -> dict[str, tuple[Callable[..., Any], dict[str, Any], tuple[str, ...]]]:
    """name -> (function, valid keyword arguments, the names its errors may start with)."""
    rng = np.random.default_rng(0)
    F, V, D, nn = mv.F, mv.vis, mv.data, mv.nn
    x4 = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    v2 = rng.standard_normal((2, 4)).astype(np.float32)
    img = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    model = mv.models.load("fashion_cnn")
    x1 = model.preprocess(rng.integers(0, 255, (1, 28, 28, 1), dtype=np.uint8))
    attribution = rng.standard_normal((1, 28, 28)).astype(np.float32)
    T = mv.tensor
    b: dict[str, tuple[Callable[..., Any], dict[str, Any], tuple[str, ...]]] = {}

    def add(name: str, fn: Callable[..., Any], kwargs: dict[str, Any], *aliases: str) -> None:
        b[name] = (fn, kwargs, (name, name.split(".")[-1]) + aliases)

    # ops
    add("conv2d", F.conv2d, dict(x=x4, weight=w, bias=np.zeros(3, np.float32), stride=1, padding=1, dilation=1,
                                 groups=1))
    add("conv_transpose2d", F.conv_transpose2d, dict(x=x4, weight=np.swapaxes(w, 0, 1).copy(), stride=2, padding=1,
                                                     output_padding=1, dilation=1))
    add("max_pool2d", F.max_pool2d, dict(x=T(x4), kernel_size=2, stride=2, padding=0, dilation=1))
    add("avg_pool2d", F.avg_pool2d, dict(x=T(x4), kernel_size=2, stride=2, padding=0))
    add("adaptive_avg_pool2d", F.adaptive_avg_pool2d, dict(x=T(x4), output_size=3))
    add("max_unpool2d", F.max_unpool2d, dict(x=T(np.ones((1, 2, 3, 3), np.float32)),
                                             switches=np.zeros((1, 2, 3, 3), np.int64), kernel_size=2, stride=2))
    add("interpolate", F.interpolate, dict(x=T(x4), size=(12, 12), mode="bilinear"))
    add("linear", F.linear, dict(x=v2, weight=rng.standard_normal((3, 4)).astype(np.float32)))
    add("batch_norm", F.batch_norm, dict(x=x4, running_mean=np.zeros(2, np.float32), running_var=np.ones(2, np.float32),
                                         momentum=0.1, eps=1e-5))
    add("local_response_norm", F.local_response_norm, dict(x=x4, size=3, alpha=1e-4, beta=0.75, k=1.0))
    add("dropout", F.dropout, dict(x=x4, p=0.5, training=True, rng=0))
    add("cross_entropy", F.cross_entropy, dict(logits=v2, target=np.array([1, 2]), reduction="none"))
    add("softmax", F.softmax, dict(x=v2, axis=-1))
    add("clip", F.clip, dict(x=T(v2), low=-1.0, high=1.0))
    add("sum", F.sum, dict(x=T(v2), axis=1))
    add("reshape", F.reshape, dict(x=T(x4), shape=(1, -1)))
    add("flatten", F.flatten, dict(x=T(x4), start_dim=1, end_dim=-1))
    add("getitem", F.getitem, dict(x=T(v2), index=(0, slice(None))))
    add("add", F.add, dict(a=T(v2), b=v2 + 5))
    add("matmul", F.matmul, dict(a=T(v2), b=v2.T.copy()))
    add("mse_loss", F.mse_loss, dict(input=T(v2), target=v2 + 1, reduction="sum"))
    add("pad", F.pad, dict(x=T(x4), pad=(1, 2, 0, 1), mode="reflect", value=0.0))
    add("mean", F.mean, dict(x=T(x4), axis=(2, 3), keepdims=True))
    add("max", F.max, dict(x=T(x4), axis=1, keepdims=False))
    add("log_softmax", F.log_softmax, dict(x=v2, axis=0))
    add("leaky_relu", F.leaky_relu, dict(x=T(x4), negative_slope=0.1))
    add("pow", F.pow, dict(x=T(np.abs(x4)), exponent=1.5))
    add("gram_matrix", F.gram_matrix, dict(x=x4))
    add("global_avg_pool2d", F.global_avg_pool2d, dict(x=T(x4)))
    add("relu_max_pool2d", F.relu_max_pool2d, dict(x=T(x4), return_switches=True))
    add("instance_norm", F.instance_norm, dict(x=x4, weight=np.ones(2, np.float32), bias=np.zeros(2, np.float32),
                                               eps=1e-5))
    add("conditional_instance_norm", F.conditional_instance_norm,
        dict(x=x4, style=1, weight=np.ones((3, 2), np.float32), bias=np.zeros((3, 2), np.float32), eps=1e-5))
    add("batch_norm_relu", F.batch_norm_relu, dict(x=x4, running_mean=np.zeros(2, np.float32),
                                                   running_var=np.ones(2, np.float32), eps=1e-5, max_value=6.0))
    add("conv2d_bn_relu", F.conv2d_bn_relu, dict(x=x4, weight=w, bias=np.zeros(3, np.float32), stride=1, padding=1,
                                                 running_mean=np.zeros(3, np.float32),
                                                 running_var=np.ones(3, np.float32), bn_weight=np.ones(3, np.float32),
                                                 bn_bias=np.zeros(3, np.float32), eps=1e-5, max_value=6.0))
    add("conv2d_relu", F.conv2d_relu, dict(x=x4, weight=w, bias=np.zeros(3, np.float32), stride=1, padding=1,
                                           dilation=1, groups=1, max_value=6.0))
    add("conv2d_relu_max_pool2d", F.conv2d_relu_max_pool2d,
        dict(x=x4, weight=w, bias=np.zeros(3, np.float32), stride=1, padding=1, dilation=1, groups=1,
             max_value=np.inf, return_switches=True))

    # layers: constructed, then called
    def layer(cls: type, inp: np.ndarray) -> Callable[..., Any]:
        return lambda **kwargs: cls(**kwargs)(mv.tensor(inp))

    add("nn.Conv2d", layer(nn.Conv2d, x4), dict(in_channels=2, out_channels=3, kernel_size=3, stride=1, padding=1),
        "Conv2d", "conv2d")
    add("nn.Linear", layer(nn.Linear, v2), dict(in_features=4, out_features=3), "Linear", "linear")
    add("nn.MaxPool2d", layer(nn.MaxPool2d, x4), dict(kernel_size=2, stride=2), "MaxPool2d", "max_pool2d")
    add("nn.BatchNorm2d", layer(nn.BatchNorm2d, x4), dict(num_features=2, eps=1e-5, momentum=0.1), "BatchNorm2d",
        "batch_norm")
    add("nn.Dropout", layer(nn.Dropout, x4), dict(p=0.3, seed=0), "Dropout", "dropout")

    # data
    add("resize", D.resize, dict(img=img, size=(5, 6)))
    add("center_crop", D.center_crop, dict(img=img, size=4))
    add("random_crops", D.random_crops, dict(img=img, size=4, n=2, seed=0))

    # methods
    for name in ("saliency", "input_gradient", "guided_backprop"):
        add(name, getattr(V, name), dict(model=model, x=x1, target=1))
    add("smoothgrad", V.smoothgrad, dict(model=model, x=x1, target=1, n=2, noise=0.1, batch_size=2, seed=0,
                                         method="saliency"))
    add("integrated_gradients", V.integrated_gradients, dict(model=model, x=x1, target=1, steps=2, batch_size=2))
    add("grad_cam", V.grad_cam, dict(model=model, x=x1, target=1, layer="features.8"))
    add("occlusion", V.occlusion, dict(model=model, x=x1, target=1, patch=14, stride=14, batch_size=4,
                                       mode="incremental"))
    add("deletion", V.deletion, dict(model=model, x=x1, target=1, attribution=attribution, pixels_per_step=392))
    add("removal_mask", V.removal_mask, dict(attribution=attribution[0], fraction=0.5))
    add("pointing_game", V.pointing_game, dict(attribution=attribution, mask=np.ones((1, 28, 28), bool), tolerance=1))
    add("random_directions", V.random_directions, dict(dim=8, count=2, seed=0))
    add("nearest_neighbours", V.nearest_neighbours, dict(queries=rng.random((2, 5)), database=rng.random((6, 5)), k=2,
                                                         metric="cosine"))
    add("tsne_grid", V.tsne_grid, dict(embedding=rng.standard_normal((4, 2)), images=rng.random((4, 3, 3)), fill=0.0))
    add("class_model", V.class_model, dict(model=model, target=1, steps=1, jitter=2, seed=0, progress=False))
    add("fgsm", V.fgsm, dict(model=model, x=x1, label=1, epsilon=0.1))
    for name in ("grad_cam_pp", "layer_cam", "score_cam", "eigen_cam"):
        add(name, getattr(V, name), dict(model=model, x=x1, target=1, layer="features.8"))
    add("cam", V.cam, dict(model=model, x=x1, target=1, layer="features.8", method="xgrad_cam", score="probability"),
        "xgrad_cam")  # cam forwards to the method it names
    add("model_randomisation", V.model_randomisation, dict(model=model, x=x1, target=1, method="saliency",
                                                           mode="independent", progress=False),
        "saliency")  # the target is the method's to check
    add("lrp", V.lrp, dict(model=model, x=x1, target=1, composite="epsilon_gamma_box", epsilon=1e-6, gamma=0.25))
    add("deeplift", V.deeplift, dict(model=model, x=x1, target=1))
    add("gradient_x_input", V.gradient_x_input, dict(model=model, x=x1, target=1))
    add("infidelity", V.infidelity, dict(model=model, x=x1, target=1, attribution=attribution[None], n_samples=2,
                                         noise=0.1, seed=0))
    add("road", V.road, dict(model=model, x=x1, target=1, attribution=attribution, fractions=(0.5,), seed=0,
                             order="lerf"))
    add("ablation", V.ablation, dict(model=model, x=x1, target=1, layer="features.8", units=[0, 1], fill="mean"))
    add("activations", V.activations, dict(model=model, x=x1, layer="features.3"))
    add("top_activations", V.top_activations, dict(model=model, images=x1.repeat(3, 0), layers="features.3", k=2,
                                                   batch_size=2, score="max"))
    add("dead_filters", V.dead_filters, dict(model=model, images=x1.repeat(3, 0), layer="features.3", batch_size=2))
    add("filters", V.filters, dict(model=model, layer="features.0"))
    add("receptive_field", V.receptive_field, dict(model=model, layer="features.8", input_size=28))
    add("receptive_field_box", V.receptive_field_box, dict(model=model, layer="features.8", y=0, x=0, image_size=28))
    add("pca", V.pca, dict(X=rng.random((6, 4)), k=2, seed=0))
    add("pca_fit", V.pca_fit, dict(X=rng.random((6, 4)), k=2, method="randomized", seed=0))
    add("tsne", V.tsne, dict(X=rng.random((12, 4)), perplexity=3.0, n_iter=10, exaggeration_iter=5, seed=0,
                             progress=False))
    add("tsne_fit", V.tsne_fit, dict(X=rng.random((12, 4)), perplexity=3.0, n_iter=10, exaggeration_iter=5, seed=0,
                                     progress=False))
    add("filters_over_training", V.filters_over_training, dict(checkpoints=[model], layer="features.0",
                                                               normalize="minmax"))
    add("plot.top_patches", mv.plot.top_patches, dict(patches=rng.random((2, 2, 1, 5, 5)), model=model))
    add("hoyer_sparsity", V.hoyer_sparsity, dict(x=rng.random((3, 5))))
    add("invert", V.invert, dict(model=model, image=x1[0], layer="features.3", steps=1, seed=0, progress=False))
    add("deepdream", V.deepdream, dict(model=model, image=img, layer="features.3", steps=1, octaves=1, jitter=2, seed=0,
                                       progress=False))
    add("efros_leung", V.efros_leung, dict(sample=rng.random((8, 8)), size=9, window=3, seed=0, progress=False))
    add("texture_synthesis", V.texture_synthesis, dict(model=model, sample=x1[0], size=28, layers=["features.1"],
                                                       steps=1, seed=0, progress=False))
    # more methods: the evaluation metrics, projections, facets, attacks, t-SNE's pieces, style
    images = x1.repeat(6, 0) + rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    add("insertion", V.insertion, dict(model=model, x=x1, target=1, attribution=attribution, pixels_per_step=392,
                                       start="blur", probability=True, batch_size=4, progress=False))
    add("occlusion_attribution", V.occlusion_attribution, dict(model=model, x=x1, target=1, patch=14, stride=14,
                                                               fill="model_mean", batch_size=4, mode="naive"))
    add("occlusion_map", V.occlusion_map, dict(grid=rng.random((2, 2)), size=(28, 28), patch=14, stride=14))
    add("deconvnet", V.deconvnet, dict(model=model, x=x1, target=1))
    add("guided_grad_cam", V.guided_grad_cam, dict(model=model, x=x1, target=1, layer="features.8"))
    add("project_units", V.project_units, dict(model=model, x=x1, layer="features.3", units=[0, 2], rules="guided"))
    add("project_top_activations", V.project_top_activations, dict(model=model, images=images, layer="features.3",
                                                                   channels=[0, 1], k=2, rules="deconvnet",
                                                                   batch_size=4), "top_activations")  # mines first
    add("saliency_segmentation", V.saliency_segmentation, dict(model=model, x=x1, target=1, fg_quantile=0.9,
                                                               bg_quantile=0.3, iterations=1))
    add("max_sensitivity", V.max_sensitivity, dict(explain=lambda z: np.asarray(z) * 2, x=x1, radius=0.02,
                                                   n_samples=2, seed=0))
    add("noisy_linear_imputation", V.noisy_linear_imputation,
        dict(image=rng.random((3, 6, 6)), removed=rng.random((6, 6)) > 0.5, noise=0.01, seed=0))
    add("lrp_composite", V.lrp_composite, dict(name="epsilon_gamma_box", epsilon=1e-6, gamma=0.25, stabilizer=1e-6,
                                               low=-1.0, high=1.0), "lrp", "LRPRule")  # what lrp() calls
    add("tsne_affinities", V.tsne_affinities, dict(X=rng.random((12, 4)), perplexity=3.0, method="exact", tol=1e-5))
    p12 = V.tsne_affinities(rng.random((12, 4)), 3.0, method="exact")[0]
    add("tsne_gradient", V.tsne_gradient, dict(P=p12, Y=rng.standard_normal((12, 2)), exaggeration=4.0, method="exact",
                                               theta=0.5))
    add("kl_divergence", V.kl_divergence, dict(P=p12, Y=rng.standard_normal((12, 2))))
    add("fooling_image", V.fooling_image, dict(model=model, target=3, start="noise", confidence=0.5, max_steps=1,
                                               step_size=0.01, noise_std=0.5, seed=0, progress=False),
        "targeted_attack")  # the attack it runs
    add("targeted_attack", V.targeted_attack, dict(model=model, x=x1, target=3, epsilon=0.1, steps=1, step_size=0.01,
                                                   confidence=0.9, progress=False))
    add("gram_targets", V.gram_targets, dict(model=model, image=x1[0], layers=["features.1"]))
    add("top_images_along", V.top_images_along, dict(model=model, images=images, layer="features.3",
                                                     directions=rng.standard_normal((2, 32)), k=2, score="mean",
                                                     batch_size=4))
    add("cluster_facets", V.cluster_facets, dict(model=model, images=images, layer="features.8", k=2, n_mean=2,
                                                 seed=0, batch_size=4))
    add("feature_codes", V.feature_codes, dict(model=model, images=images, layer="features.3", batch_size=4))
    add("activation_sparsity", V.activation_sparsity, dict(model=model, images=images, layers="features.3",
                                                           batch_size=4))
    add("first_layer_filters", V.first_layer_filters, dict(model=model, layer="features.0", normalize="minmax"))
    add("data_randomisation", V.data_randomisation, dict(model=model, random_label_model=model, x=x1, target=1,
                                                         method="saliency", measures=("spearman",)), "saliency")
    add("style_transfer", V.style_transfer, dict(model=model, content=x1[0], style=x1[0], content_layer="features.3",
                                                 style_layers=["features.1"], content_weight=1.0, style_weight=1.0,
                                                 tv_weight=0.0, init="content", steps=1, optimizer="adam", lr=0.05,
                                                 param="pixel", seed=0, progress=False))
    # figures, data, models and layers
    P, M = mv.plot, mv.models
    heat = rng.random((28, 28)).astype(np.float32)
    add("plot.attribution_image", P.attribution_image, dict(attribution=rng.standard_normal((3, 8, 8)), kind="sign",
                                                            percentile=99.0))
    add("plot.relevance_image", P.relevance_image, dict(relevance=rng.standard_normal((8, 8)), percentile=99.0))
    add("plot.normalize", P.normalize, dict(array=rng.random((4, 4)), symmetric=True))
    add("plot.to_image", P.to_image, dict(array=rng.random((3, 5, 5))))
    add("plot.overlay", P.overlay, dict(image=img, heatmap=rng.random((10, 12)), alpha=0.4, cmap="viridis"))
    add("plot.activation_grid", P.activation_grid, dict(maps=rng.random((4, 6, 6)), ncols=2, size=0.5))
    add("plot.filter_grid", P.filter_grid, dict(filters=rng.standard_normal((4, 3, 3, 3)), ncols=2, size=0.5))
    add("plot.image_grid", P.image_grid, dict(images=[img, img], titles=["a", "b"], ncols=2))
    add("plot.embedding_scatter", P.embedding_scatter, dict(embedding=rng.standard_normal((6, 2)),
                                                            labels=np.arange(6) % 2))
    add("plot.occlusion_figure", P.occlusion_figure, dict(image=x1[0], grid=rng.random((2, 2)), heatmap=heat))
    add("plot.show_grad_cam", P.show_grad_cam, dict(image=x1[0], cam=heat, alpha=0.5, size=1.0))
    add("plot.segmentation_figure", P.segmentation_figure, dict(image=x1[0], saliency_map=heat, mask=heat > 0.5))
    add("plot.receptive_field_boxes", P.receptive_field_boxes, dict(image=img, boxes=[(0, 0, 4, 4)], labels=["a"]))
    add("batches", D.batches, dict(batch_size=2, shuffle=True, seed=0))
    add("resize_shorter_side", D.resize_shorter_side, dict(img=img, size=5))
    add("to_float", D.to_float, dict(img=img))
    add("to_nchw", D.to_nchw, dict(batch=rng.random((2, 4, 4, 3))))
    add("photo_mask", D.photo_mask, dict(name="chelsea"))
    add("style_image", D.style_image, dict(name="mosaic", size=16))
    add("models.build", M.build, dict(name="fashion_cnn"))
    add("models.load", M.load, dict(name="fashion_cnn", checkpoint=None))
    add("models.build_decoder", M.build_decoder, dict(layer="features.3"))
    add("nn.AvgPool2d", layer(nn.AvgPool2d, x4), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
        "AvgPool2d", "avg_pool2d")
    add("nn.ConvTranspose2d", layer(nn.ConvTranspose2d, x4), dict(in_channels=2, out_channels=3, kernel_size=3,
                                                                 stride=2, padding=1, output_padding=1),
        "ConvTranspose2d", "conv_transpose2d")
    add("nn.InstanceNorm2d", layer(nn.InstanceNorm2d, x4), dict(num_features=2, eps=1e-5, affine=True),
        "InstanceNorm2d", "instance_norm")
    add("nn.LocalResponseNorm", layer(nn.LocalResponseNorm, x4), dict(size=3, alpha=1e-4, beta=0.75, k=2.0),
        "LocalResponseNorm", "local_response_norm")
    add("nn.AdaptiveAvgPool2d", layer(nn.AdaptiveAvgPool2d, x4), dict(output_size=(2, 3)),
        "AdaptiveAvgPool2d", "adaptive_avg_pool2d")
    add("nn.LeakyReLU", layer(nn.LeakyReLU, x4), dict(negative_slope=0.2), "LeakyReLU", "leaky_relu")
    add("nn.Flatten", layer(nn.Flatten, x4), dict(start_dim=1, end_dim=-1), "Flatten", "flatten")
    # the rest of the methods: decoders, facets, inversion tables, the style networks
    decoder = M.load_decoder("features.4")
    top = V.top_activations(model, images, "features.3", k=2, batch_size=4)["features.3"]
    net = M.load_fast_style("mosaic")
    small = img[:8, :8]
    add("crop_patches", V.crop_patches, dict(model=model, images=images, top=top, channels=[0, 1], which="patches",
                                             fill=0.0))
    add("invert_with_decoder", V.invert_with_decoder, dict(model=model, decoder=decoder, image=x1[0],
                                                           layer="features.4", batch_size=2))
    add("latent_class_model", V.latent_class_model, dict(model=model, decoder=decoder, target=2, steps=1, lr=0.05,
                                                         init="zero", noise_std=1.0, optimizer="adam", seed=0,
                                                         progress=False))
    add("multifaceted_class_model", V.multifaceted_class_model, dict(model=model, images=images, target=1,
                                                                     layer="features.8", k=2, n_mean=2, seed=0,
                                                                     steps=1, progress=False), "class_model")
    add("inversion_table", V.inversion_table, dict(model=model, image=x1[0], layers=["features.1"], steps=1,
                                                   progress=False), "invert")
    add("projections_over_training", V.projections_over_training, dict(models=[model, model], images=images,
                                                                       layer="features.3", channels=[0], k=1,
                                                                       rules="deconvnet", batch_size=4),
        "top_activations", "project_top_activations")  # it runs both per model
    add("stylize", V.stylize, dict(net=net, photo=small, style=0))
    add("interpolate_styles", V.interpolate_styles, dict(net=net, photo=small, a=0, b=0, alphas=(0.0, 1.0)))
    add("style_input", V.style_input, dict(model=model, image=img, size=16))
    add("content_loss", V.content_loss, dict(feature=T(x4), target=x4 + 1))
    from minivis import train  # noqa: PLC0415 (not imported by minivis itself)

    add("accuracy", train.accuracy, dict(model=model, images=images, labels=np.arange(6) % 10, batch_size=4),
        "FashionCNN")  # the images go to the model, whose input check names it
    add("permuted", train.permuted, dict(labels=np.arange(6) % 10, seed=0))
    add("nn.forward_to", nn.forward_to, dict(model=model, x=x1, layer="features.3"), "forward_to",
        "FashionCNN", "conv2d")  # x goes to the model, whose input check names it
    return b


def tensor_variants(t: Any) -> list[tuple[str, Callable[[], Any]]]:
    """A tensor argument's shape and value variants, as tensors (dtype variants are the constructor's)."""
    return [(f"tensor, {label}", lambda make=make: mv.tensor(make())) for label, make in array_variants(t.data)
            if not label.startswith("dtype")]


def variants(name: str, value: Any) -> list[tuple[str, Callable[[], Any]]]:
    out = array_variants(value) if isinstance(value, np.ndarray) else []
    if isinstance(value, mv.Tensor):
        out = tensor_variants(value)
    if name == "model":
        return [("None", lambda: None), ("str", lambda: "model"), ("object", Opaque)]
    return out + [(label, lambda v=v: v) for label, v in SCALARS]


def names_the_call(message: str, names: tuple[str, ...]) -> bool:
    """The message starts with one of ``names`` as a whole word: ``pca_fit: ...`` names pca_fit, not pca."""
    return any(message.startswith(name) and message[len(name):len(name) + 1] in (":", ".", "(", " ")
               for name in names)


class Timeout(Exception):
    pass


def _alarm(*_: Any) -> None:
    raise Timeout


def main() -> int:
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    n_calls = findings = returned = refused = 0
    for name, (fn, kwargs, names) in calls().items():
        for arg, value in kwargs.items():
            for label, make in variants(arg, value):
                n_calls += 1
                finding = None
                signal.alarm(SECONDS)
                try:
                    with np.errstate(all="ignore"):
                        fn(**{**kwargs, arg: make()})
                    returned += 1
                except Timeout:
                    finding = "no answer within the time limit"
                except (ValueError, TypeError) as err:
                    refused += 1
                    if not names_the_call(str(err), names):
                        finding = f"{type(err).__name__} that does not name the call: {str(err)[:200]}"
                except Exception as err:  # noqa: BLE001 (any other exception is what this looks for)
                    finding = f"{type(err).__name__}: {str(err)[:200]}"
                finally:
                    signal.alarm(0)
                matplotlib.pyplot.close("all")
                if finding:
                    findings += 1
                    print(json.dumps({"call": name, "argument": arg, "value": label, "finding": finding}), flush=True)
    print(f"calls {n_calls} returned {returned} refused {refused} findings {findings}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
