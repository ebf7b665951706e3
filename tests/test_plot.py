"""mv.plot refuses bad arguments at the entry point, under the call's and the argument's name.

Found by a hostile-argument sweep of every public figure: sizes and counts (None, a str, 0, -1,
NaN) failed inside matplotlib (LinAlgError "Singular matrix", "figure size must be positive
finite") or Python (TypeError on ``*``, ZeroDivisionError); an ``ax`` or a result object of the
wrong type raised AttributeError; short titles and labels raised IndexError or KeyError; image
errors named ``to_image`` rather than the call; ``normalize`` and ``attribution_image`` returned
NaN for NaN input and failed in NumPy on empty arrays. Valid calls still draw (checked below).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import minivis as mv
from minivis.vis.attribution.metrics import CurveResult
from minivis.vis.attribution.sanity import SanityResult
from minivis.vis.features.activations import DeadFilterReport
from minivis.vis.features.pca import PCAResult
from minivis.vis.features.projections import LayerProjections
from minivis.vis.synthesis.decoder_inversion import InversionComparison
from minivis.vis.synthesis.inversion import InversionTable
from minivis.vis.synthesis.optimize import SynthesisResult

P = mv.plot
rng = np.random.default_rng(0)
IMG = rng.uniform(0, 1, (8, 8, 3))
CHW = IMG.transpose(2, 0, 1).copy()
HEAT = rng.uniform(0, 1, (8, 8))
MAPS = rng.standard_normal((3, 8, 8))
BATCH = rng.uniform(0, 1, (2, 8, 8, 3))
SYNTH = SynthesisResult(x=CHW, image=IMG, history=np.linspace(1, 0.1, 5), total=np.linspace(1, 0.1, 5),
                        info={"content_loss": 0.1, "style_loss": 0.2})
SANITY = SanityResult("saliency", "cascading", ["a", "b"], {"spearman_abs": rng.uniform(0, 1, (2, 2))},
                      rng.standard_normal((3, 2, 8, 8)))
CURVE = CurveResult(np.linspace(0, 1, 5), rng.uniform(0, 1, (2, 5)), rng.uniform(0, 1, 2), "deletion")
PCA = PCAResult(*[np.zeros(1)] * 3, np.array([0.5, 0.3, 0.1]), np.zeros(1), np.zeros(1), "svd")
REPORT = DeadFilterReport("features.0", rng.uniform(0, 1, 4), rng.uniform(0, 1, 4), rng.uniform(0, 1, 4), 10, 0.0)
PROJ = LayerProjections("l", np.array([0, 1]), None, np.zeros((2, 3), int), None, rng.standard_normal((2, 3, 3, 5, 5)),
                        {"deconvnet": rng.standard_normal((2, 3, 3, 5, 5))}, None, None)
TABLE = InversionTable(["a", "b"], np.array([0.1, 0.2]), np.array([0.3, 0.4]), [SYNTH, SYNTH], CHW, IMG)
ONES = {"a": np.ones(2)}
COMPARISON = InversionComparison(["a"], rng.uniform(0, 1, (2, 3, 8, 8)), ONES, ONES, ONES, ONES,
                                 {"a": rng.uniform(0, 1, (2, 3, 8, 8))}, {"a": rng.uniform(0, 1, (2, 3, 8, 8))})


class Model:
    def deprocess(self, x):
        return np.clip(np.moveaxis(np.asarray(x), 0, -1), 0, 1)


class Deprocess:
    """A duck-typed model: only a ``deprocess`` attribute, whatever it is."""

    def __init__(self, deprocess):
        self.deprocess = deprocess


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _with_nan(array):
    array = np.array(array, dtype=np.float64)
    array.flat[0] = np.nan
    return array


BAD = [
    # sizes: None, a str, 0, negative, NaN, past MAX_SIZE
    (lambda: P.image_grid([IMG], size=0), ValueError,
     r"image_grid: size must be a number of inches in \(0, 100\], got 0"),
    (lambda: P.image_grid([IMG], size=None), TypeError, "image_grid: size must be a number, got NoneType"),
    (lambda: P.curve_figure({"s": CURVE}, size=-1), ValueError, "curve_figure: size must be a number of inches"),
    (lambda: P.sanity_figure(SANITY, size="big"), TypeError, "sanity_figure: size must be a number, got str"),
    (lambda: P.show_attributions(IMG, {"s": HEAT}, size=float("nan")), ValueError,
     "show_attributions: size must be a finite number, got nan"),
    (lambda: P.show_cams(BATCH, {"gc": HEAT[None].repeat(2, 0)}, size=10**30), ValueError, "show_cams: size must be"),
    (lambda: P.show_grad_cam(IMG, HEAT, size=0.0), ValueError, "show_grad_cam: size must be"),
    (lambda: P.show_relevance(BATCH, {"lrp": MAPS[None].repeat(2, 0)}, size=[]), TypeError, "show_relevance: size"),
    (lambda: P.embedding_mosaic(IMG, size=0), ValueError, "embedding_mosaic: size must be"),
    (lambda: P.embedding_scatter(rng.standard_normal((5, 2)), size=-2.0), ValueError, "embedding_scatter: size"),
    (lambda: P.explained_variance(PCA, size=None), TypeError, "explained_variance: size must be a number"),
    (lambda: P.activation_grid(MAPS, size=0), ValueError, "activation_grid: size must be"),
    (lambda: P.filter_channels(rng.uniform(0, 1, (2, 3, 3, 3)), size=0), ValueError, "filter_channels: size"),
    (lambda: P.filter_grid(rng.uniform(0, 1, (4, 3, 3)), size=0), ValueError, "filter_grid: size must be"),
    (lambda: P.filter_history({"e": rng.uniform(0, 1, (4, 3, 3))}, size=0), ValueError, "filter_history: size"),
    (lambda: P.neighbour_grid(BATCH, {"px": BATCH[:, None]}, size=0), ValueError, "neighbour_grid: size must be"),
    (lambda: P.projections_over_training({"e": PROJ}, size=0), ValueError, "projections_over_training: size"),
    (lambda: P.receptive_field_boxes(IMG, [(0, 0, 4, 4)], size=0), ValueError, "receptive_field_boxes: size"),
    (lambda: P.top_patches(PROJ.patches, size=0), ValueError, "top_patches: size must be"),
    (lambda: P.top_projections(PROJ, size=0), ValueError, "top_projections: size must be"),
    (lambda: P.occlusion_figure(IMG, HEAT, size=0), ValueError, "occlusion_figure: size must be"),
    (lambda: P.segmentation_figure(IMG, HEAT, HEAT > 0.5, size=0), ValueError, "segmentation_figure: size"),
    (lambda: P.interpolation_strip([IMG], [0.5], size=0), ValueError, "interpolation_strip: size must be"),
    (lambda: P.style_grid(IMG, IMG, {"r": SYNTH}, size=0), ValueError, "style_grid: size must be"),
    (lambda: P.texture_figure(IMG, {"r": SYNTH}, size=0), ValueError, "texture_figure: size must be"),
    (lambda: P.weight_sweep([SYNTH], [1.0], size=0), ValueError, "weight_sweep: size must be"),
    (lambda: P.inversion_figure(TABLE, size=0), ValueError, "inversion_figure: size must be"),
    (lambda: P.inversion_comparison_figure(COMPARISON, Model(), size=0), ValueError,
     "inversion_comparison_figure: size must be"),
    (lambda: P.synthesis_grid([IMG], size=0), ValueError, "synthesis_grid: size must be"),
    # counts: ncols, top, count, max_*
    (lambda: P.image_grid([IMG], ncols=0), ValueError, "image_grid: ncols must be an int >= 1, got 0"),
    (lambda: P.image_grid([IMG], ncols="2"), TypeError, "image_grid: ncols must be an int >= 1 or None, got '2'"),
    (lambda: P.synthesis_grid([IMG], ncols=1.5), TypeError, "synthesis_grid: ncols must be an int >= 1 or None"),
    (lambda: P.filter_grid(rng.uniform(0, 1, (4, 3, 3)), ncols=-1), ValueError, "filter_grid: ncols must be an int"),
    (lambda: P.activation_grid(MAPS, ncols=None), TypeError, "activation_grid: ncols must be an int >= 1, got None"),
    (lambda: P.ablation_figure(np.ones(3), top=0), ValueError, "ablation_figure: top must be an int >= 1, got 0"),
    (lambda: P.inversion_comparison_figure(COMPARISON, Model(), count=None), TypeError,
     "inversion_comparison_figure: count must be an int >= 1, got None"),
    (lambda: P.filter_channels(rng.uniform(0, 1, (2, 3, 3, 3)), max_filters=0), ValueError,
     "filter_channels: max_filters must be an int >= 1"),
    (lambda: P.filter_channels(rng.uniform(0, 1, (2, 3, 3, 3)), max_channels=True), TypeError,
     "filter_channels: max_channels must be an int >= 1"),
    (lambda: P.filter_history({"e": rng.uniform(0, 1, (4, 3, 3))}, max_filters=-1), ValueError,
     "filter_history: max_filters must be an int >= 1"),
    (lambda: P.top_projections(PROJ, max_channels=0), ValueError, "top_projections: max_channels must be an int"),
    (lambda: P.projections_over_training({"e": PROJ}, max_channels="all"), TypeError,
     "projections_over_training: max_channels must be an int"),
    (lambda: P.sanity_figure(SANITY, image_index=2), ValueError, r"sanity_figure: image_index must be < 2"),
    (lambda: P.sanity_figure(SANITY, image_index="0"), TypeError, "sanity_figure: image_index must be an int"),
    # ax of the wrong type
    (lambda: P.overlay(IMG, HEAT, ax=3), TypeError, "overlay: ax must be a matplotlib Axes or None, got int"),
    (lambda: P.embedding_scatter(rng.standard_normal((5, 2)), ax="left"), TypeError,
     "embedding_scatter: ax must be a matplotlib Axes or None, got str"),
    # result objects of the wrong type
    (lambda: P.dead_filter_report({"dead_fraction": [0.5]}), TypeError,
     r"dead_filter_report: report must be a DeadFilterReport \(from mv.vis.dead_filters\), got dict"),
    (lambda: P.inversion_figure(None), TypeError,
     r"inversion_figure: table must be an InversionTable \(from mv.vis.inversion_table\), got NoneType"),
    (lambda: P.inversion_comparison_figure([], Model()), TypeError,
     r"inversion_comparison_figure: comparison must be an InversionComparison \(from mv.vis.compare_inversions\)"),
    (lambda: P.inversion_comparison_figure(COMPARISON, None), TypeError,
     "inversion_comparison_figure: model must have a deprocess method"),
    (lambda: P.sanity_figure("saliency"), TypeError, "sanity_figure: results must be a SanityResult"),
    (lambda: P.sanity_figure([SANITY, 3]), TypeError, r"sanity_figure: results\[1\] must be a SanityResult"),
    (lambda: P.curve_figure({"s": 0.5}), TypeError, r"curve_figure: curves\['s'\] must be a CurveResult"),
    (lambda: P.top_projections({"deconvnet": 1}), TypeError, "top_projections: result must be a LayerProjections"),
    (lambda: P.projections_over_training({"e": None}), TypeError,
     r"projections_over_training: results\['e'\] must be a LayerProjections"),
    (lambda: P.explained_variance({"ratio": 1}), TypeError,
     r"explained_variance: result must be a PCAResult \(from mv.vis.pca_fit\) or a 1-D ratio array, got dict"),
    (lambda: P.history_plot(3), TypeError, "history_plot: histories must be a mapping"),
    (lambda: P.texture_figure(IMG, [SYNTH]), TypeError, "texture_figure: syntheses must be a mapping"),
    (lambda: P.style_grid(IMG, IMG, {}), ValueError, "style_grid: results must be a non-empty mapping"),
    (lambda: P.weight_sweep(None, [1.0]), TypeError, "weight_sweep: results must be a list or array"),
    (lambda: P.synthesis_grid(3), TypeError, "synthesis_grid: results must be a list or array"),
    (lambda: P.show_attributions(IMG, {"s": HEAT}, kinds="rgb"), TypeError, "show_attributions: kinds must be a"),
    # titles, labels and names too short (or a str, whose characters would be the labels)
    (lambda: P.image_grid([IMG, IMG], titles=["a"]), ValueError,
     r"image_grid: titles must have at least 2 entries \(one per panel\), got 1"),
    (lambda: P.image_grid([IMG, IMG], titles="ab"), TypeError, "image_grid: titles must be a list or None, got str"),
    (lambda: P.show_cams(BATCH, {"gc": HEAT[None].repeat(2, 0)}, labels=[]), ValueError,
     "show_cams: labels must have at least 2 entries"),
    (lambda: P.show_cams(BATCH, {"gc": HEAT[None].repeat(2, 0)}, labels={}), TypeError,
     "show_cams: labels must be a list or None, got dict"),
    (lambda: P.show_relevance(BATCH, {"r": MAPS[None].repeat(2, 0)}, labels=["a"]), ValueError,
     "show_relevance: labels must have at least 2 entries"),
    (lambda: P.ablation_figure(np.ones(3), labels=["a"]), ValueError, "ablation_figure: labels must have 3 entries"),
    (lambda: P.receptive_field_boxes(IMG, [(0, 0, 4, 4), (1, 1, 2, 2)], labels=["a"]), ValueError,
     "receptive_field_boxes: labels must have at least 2 entries"),
    (lambda: P.receptive_field_boxes(IMG, [(0, 0, 4)]), TypeError,
     r"receptive_field_boxes: boxes\[0\] must be 4 ints \(top, left, bottom, right\)"),
    (lambda: P.top_patches(PROJ.patches, channels=[1]), ValueError, "top_patches: channels must have at least 2"),
    (lambda: P.top_patches(PROJ.patches, values=np.ones((1, 1))), ValueError, r"top_patches: values must be \(2, 3\)"),
    (lambda: P.interpolation_strip([IMG], [0.5], names=("a",)), ValueError, "interpolation_strip: names must have 2"),
    (lambda: P.interpolation_strip([IMG, IMG], [0.5]), ValueError, "interpolation_strip: alphas must have 2 entries"),
    (lambda: P.weight_sweep([SYNTH, SYNTH], [1.0]), ValueError, "weight_sweep: style_weights must have 2 entries"),
    (lambda: P.weight_sweep([SYNTH], None), TypeError, "weight_sweep: style_weights must be a list, got NoneType"),
    (lambda: P.interpolation_strip([IMG], None), TypeError, "interpolation_strip: alphas must be a list, got NoneType"),
    (lambda: P.interpolation_strip([IMG], [0.5], names=None), TypeError, "interpolation_strip: names must be a list"),
    (lambda: P.synthesis_grid([IMG, IMG], titles=["a"]), ValueError, "synthesis_grid: titles must have 2 entries"),
    (lambda: P.embedding_scatter(rng.standard_normal((3, 2)), labels=np.array([0, 1, -1])), ValueError,
     "embedding_scatter: labels must be integers >= 0, got -1"),
    # alpha, clean, flags, titles
    (lambda: P.overlay(IMG, HEAT, alpha=1.5), ValueError, r"overlay: alpha must be in \[0.0, 1.0\], got 1.5"),
    (lambda: P.show_grad_cam(IMG, HEAT, alpha="half"), TypeError, "show_grad_cam: alpha must be a number, got str"),
    (lambda: P.show_cams(BATCH, {"gc": HEAT[None].repeat(2, 0)}, alpha=float("nan")), ValueError,
     "show_cams: alpha must be a finite number"),
    (lambda: P.show_attributions(IMG, {"s": HEAT}, alpha=-1), ValueError, "show_attributions: alpha must be in"),
    (lambda: P.occlusion_figure(IMG, HEAT, clean="0.9"), TypeError, "occlusion_figure: clean must be a number"),
    (lambda: P.occlusion_figure(IMG, HEAT, clean=float("inf")), ValueError, "occlusion_figure: clean must be a finite"),
    (lambda: P.activation_grid(MAPS, shared_scale=1), TypeError, "activation_grid: shared_scale must be True or False"),
    (lambda: P.history_plot({"a": SYNTH}, logy="yes"), TypeError, "history_plot: logy must be True or False"),
    (lambda: P.image_grid([IMG], suptitle=np.empty(0)), TypeError, "image_grid: suptitle must be a str or None"),
    (lambda: P.normalize(HEAT, symmetric=None), TypeError, "normalize: symmetric must be True or False"),
    (lambda: P.attribution_image(MAPS, percentile=None), TypeError, "attribution_image: percentile must be a number"),
    (lambda: P.relevance_image(MAPS, percentile=0), ValueError, r"relevance_image: percentile must be in \(0, 100\]"),
    (lambda: P.save(plt.subplots()[0], "/tmp/never-written.png", dpi=0), ValueError, "save: dpi must be >= 10, got 0"),
    (lambda: P.save(plt.subplots()[0], "/tmp/never-written.png", dpi=10**6), ValueError,
     "save: the figure would be .* pixels at dpi"),
    # empty, NaN and infinite data refused by name
    (lambda: P.normalize(np.empty(0)), ValueError, r"normalize: array is empty, got shape \(0,\)"),
    (lambda: P.normalize(_with_nan(HEAT)), ValueError, "normalize: array has 1 NaN or infinite values"),
    (lambda: P.normalize(np.array([1.0, np.inf])), ValueError, "normalize: array has 1 NaN or infinite values"),
    (lambda: P.attribution_image(MAPS[:0]), ValueError, "attribution_image: attribution is empty"),
    (lambda: P.attribution_image(_with_nan(MAPS)), ValueError, "attribution_image: attribution has 1 NaN"),
    (lambda: P.relevance_image(_with_nan(MAPS)), ValueError, "relevance_image: relevance has 1 NaN"),
    (lambda: P.to_image(_with_nan(IMG)), ValueError, "to_image: the image has 1 NaN or infinite values"),
    (lambda: P.overlay(IMG, _with_nan(HEAT)), ValueError, "overlay: heatmap has 1 NaN or infinite values"),
    (lambda: P.activation_grid(MAPS[..., :0]), ValueError, "activation_grid: maps is empty"),
    (lambda: P.ablation_figure(np.array([1.0, np.inf])), ValueError, "ablation_figure: deltas has 1 NaN"),
    (lambda: P.occlusion_figure(IMG, HEAT, heatmap=np.full((4, 4), np.nan)), ValueError,
     "occlusion_figure: heatmap must be 2-D .* at least one value that is not NaN"),
    (lambda: P.top_patches(np.full((1, 1, 3, 2, 2), np.inf)), ValueError, "top_patches: patches has 12 infinite"),
    # image errors name the call and the argument, not to_image
    (lambda: P.overlay(np.zeros((0, 4)), HEAT), ValueError, r"overlay: the image is empty, got shape \(0, 4\)"),
    (lambda: P.show_grad_cam(IMG[None], HEAT), ValueError, "show_grad_cam: expected an HxW, HxWx3 or CxHxW image"),
    (lambda: P.image_grid([IMG, "x"]), TypeError, r"image_grid: expected a numeric images\[1\], got dtype <U1"),
    (lambda: P.neighbour_grid(BATCH, {"px": 3}), TypeError, r"neighbour_grid: results\['px'\] must be a list or"),
    (lambda: P.show_cams(3, {"gc": HEAT[None]}), TypeError, "show_cams: images must be a list or array of images"),
    (lambda: P.embedding_mosaic(np.zeros((4, 4), complex)), TypeError, "embedding_mosaic: expected a numeric mosaic"),
    (lambda: P.overlay(np.zeros((4, 4), "datetime64[s]"), HEAT), TypeError,
     "overlay: expected a numeric image, got dtype datetime64"),
    (lambda: P.save(plt.subplots()[0], "/tmp/never-written.png", dpi=1.5), ValueError, "save: dpi must be >= 10"),
    (lambda: P.show_grad_cam(IMG, HEAT, guided=MAPS[None]), ValueError,
     "show_grad_cam: expected one image's map, .* got shape"),
    # top_patches' and top_projections' model (its deprocess draws the crops): a model without one was
    # silently ignored, a bad deprocess failed inside NumPy or matplotlib
    (lambda: P.top_patches(PROJ.patches, model="fashion_cnn"), TypeError,
     "top_patches: model must be None or have a deprocess method .* got str"),
    (lambda: P.top_patches(PROJ.patches, model=Deprocess(5)), TypeError,
     "top_patches: model must be None or have a deprocess method"),
    (lambda: P.top_patches(PROJ.patches, model=Deprocess(lambda x: np.zeros((2, 2)))), ValueError,
     r"top_patches: model.deprocess must turn a \(3, 5, 5\) patch into an image \(5, 5\) .* got shape \(2, 2\)"),
    (lambda: P.top_patches(PROJ.patches, model=Deprocess(lambda x: "picture")), TypeError,
     "top_patches: model.deprocess must return a numeric image array, got str"),
    (lambda: P.top_patches(PROJ.patches, model=mv.models.FashionCNN()), ValueError,
     r"top_patches: model.deprocess failed on a patch of shape \(3, 5, 5\): FashionCNN.deprocess: expected"),
    (lambda: P.top_projections(PROJ, model=Deprocess(None)), TypeError,
     "top_projections: model must be None or have a deprocess method"),
]


@pytest.mark.parametrize("call,error,match", BAD)
def test_bad_arguments_name_the_call_and_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_valid_calls_still_draw():
    assert len(P.image_grid([IMG, HEAT, CHW], titles=("a", "b", "c"), ncols=10**6).axes) == 3  # ncols capped
    assert len(P.synthesis_grid([SYNTH, IMG], ["a", "b"], ncols=1).axes) == 2
    assert len(P.show_cams(BATCH, {"gc": HEAT[None].repeat(2, 0)}, labels=np.array([3, 4])).axes) == 4
    assert len(P.show_grad_cam(IMG, HEAT, guided=MAPS).axes) == 4
    assert len(P.show_attributions(IMG, {"s": HEAT, "g": MAPS}, kinds={"g": "signed"}).axes) == 3
    assert len(P.sanity_figure([SANITY, SANITY], image_index=1).axes) == 8
    assert len(P.curve_figure({"s": CURVE}).axes) == 1
    assert len(P.dead_filter_report(REPORT).axes) == 2
    assert len(P.top_projections(PROJ, rules="deconvnet", max_channels=10**9).axes) == 12
    assert len(P.projections_over_training({"e1": PROJ, "e2": PROJ}).axes) == 4
    assert len(P.receptive_field_boxes(IMG, np.array([[0, 0, 4, 4]]), labels=["a"]).axes) == 1
    assert len(P.top_patches(_with_nan(PROJ.patches), channels=[4, 5], values=np.ones((2, 3))).axes) == 6
    assert len(P.top_patches(PROJ.patches, model=Model()).axes) == 6
    uint8 = Deprocess(lambda x: (np.clip(np.moveaxis(x, 0, -1), 0, 1) * 255).astype(np.uint8))
    assert len(P.top_patches(PROJ.patches, model=uint8).axes) == 6  # a uint8 picture is scaled to [0, 1]
    assert len(P.ablation_figure(np.arange(5.0) - 2, top=10**30).axes) == 1
    assert len(P.occlusion_figure(IMG, HEAT[:3, :3], heatmap=_with_nan(HEAT), clean=0.5).axes) == 4  # + colour bar
    assert len(P.weight_sweep([SYNTH, SYNTH], [1.0, 10.0]).axes) == 2
    assert len(P.interpolation_strip([IMG, IMG], [0.0, 1.0], names=["x", "y"]).axes) == 2
    assert len(P.history_plot({"a": SYNTH, "b": np.ones(3)}, logy=True).axes) == 1
    assert len(P.inversion_figure(TABLE).axes) == 4
    assert len(P.inversion_comparison_figure(COMPARISON, Model(), count=10**6).axes) == 7
    fig, ax = plt.subplots()
    assert P.overlay(IMG, HEAT, ax=ax) is fig and P.embedding_scatter(np.zeros((3, 2)), [0, 1, 1], ax=ax) is fig
    assert P.normalize(np.array([1.0, 1.0])).tolist() == [0.0, 0.0]
    assert P.attribution_image(MAPS).shape == (8, 8, 3)
