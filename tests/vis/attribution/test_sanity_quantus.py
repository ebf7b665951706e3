"""The randomisation cascade against Quantus 0.6.0's ``MPRT`` (the reference implementation of Adebayo
et al.'s model-parameter randomisation test), on fashion_cnn and its PyTorch twin with identical weights.

Parity: Quantus re-initialises each conv/linear layer with PyTorch's ``reset_parameters``, top (logits)
first; we record those draws from Quantus's own layer generator and hand them to
``model_randomisation(reinit=...)``, so both randomise the same layers, in the same order, to the same
weights. Then the per-layer Spearman scores must agree: Quantus's default (|map|, max-normalised)
with our ``spearman_abs``, Quantus with ``abs=False`` with our signed ``spearman``, cascading and
independent.

Where Quantus departs from the paper, we follow the paper, and each departure is tested here:
the same seed before every layer's draw (correlated random layers), the original model's
self-similarity averaged into ``return_average_correlation``, and an SSIM of flattened maps
normalised over the whole batch (one image's score depends on the others in the batch).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import minivis as mv
from minivis.vis.attribution import sanity

quantus = pytest.importorskip("quantus")
torch = pytest.importorskip("torch")
from quantus.helpers.model.pytorch_model import PyTorchModel  # noqa: E402

SEED = 42  # Quantus's default


def torch_gradient(model, inputs, targets, **_):
    """The input gradient of the target logit by PyTorch autograd: Quantus's explain_func."""
    x = torch.tensor(inputs, dtype=torch.float64, requires_grad=True)
    out = model(x)
    out[torch.arange(len(x)), torch.as_tensor(targets)].sum().backward()
    return x.grad.numpy()


def quantus_draws(twin, order: str = "top_down") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (weight, bias)} as Quantus's random-layer generator re-initialises them, in its order."""
    draws = {}
    for name, random_model in PyTorchModel(copy.deepcopy(twin)).get_random_layer_generator(order=order, seed=SEED):
        layer = dict(random_model.named_modules())[name]
        draws[name] = (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
    return draws


def use(draws):
    def reinit(name, module, _rng):
        weight, bias = draws[name]
        module.weight, module.bias = mv.nn.Parameter(weight.copy()), mv.nn.Parameter(bias.copy())
    return reinit


@pytest.fixture(scope="module")
def batch():
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28))
    return x, np.array([1, 3, 5, 7, 9])


def quantus_scores(twin, x, y, **kwargs) -> dict[str, np.ndarray]:
    metric = quantus.MPRT(disable_warnings=True, seed=SEED, **kwargs)
    out = metric(model=twin, x_batch=x, y_batch=y, a_batch=None, explain_func=torch_gradient, device="cpu")
    return out if isinstance(out, list) else {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("mode, order", [("cascading", "top_down"), ("independent", "independent")])
def test_per_layer_spearman_matches_quantus_on_the_same_random_weights(nets, batch, mode, order):
    model, twin = nets
    x, y = batch
    draws = quantus_draws(twin, order)
    ours = sanity.model_randomisation(model, x, y, "input_gradient", mode=mode, reinit=use(draws),
                                      measures=("spearman_abs", "spearman"))
    layers = [step.removesuffix(" and above") for step in ours.steps]
    # the same conv/linear layers; cascading: in the same order, logits first (Quantus's "independent"
    # runs bottom-up, which cannot change a one-layer-at-a-time result)
    assert layers == (list(draws) if mode == "cascading" else list(draws)[::-1])
    for abs_, measure in ((True, "spearman_abs"), (False, "spearman")):
        theirs = quantus_scores(twin, x, y, layer_order=order, abs=abs_)
        assert sorted(theirs) == sorted(["original", *layers])
        np.testing.assert_allclose(theirs["original"], 1.0)
        for k, layer in enumerate(layers):
            np.testing.assert_allclose(ours.scores[measure][k], theirs[layer], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{measure} after {layer}")
    # the maps themselves: the twin with the fully randomised weights gives the same gradient
    if mode == "cascading":
        state = twin.state_dict()
        for name, (w, b) in draws.items():
            state[f"{name}.weight"], state[f"{name}.bias"] = torch.from_numpy(w), torch.from_numpy(b)
        random_twin = copy.deepcopy(twin)
        random_twin.load_state_dict(state)
        np.testing.assert_allclose(ours.maps[-1], torch_gradient(random_twin, x, y), rtol=1e-9, atol=1e-12)


def test_quantus_draws_every_layer_from_the_same_stream_we_do_not(nets, batch):
    """Quantus calls ``torch.manual_seed(seed + 1)`` before each layer's reset, so every layer starts the
    same uniform stream: features.2's first weights are features.0's, rescaled by the fan-in bound.
    The paper randomises layers independently; ours draw from ``[seed, k]``."""
    model, twin = nets
    draws = quantus_draws(twin)
    bound = {name: 1 / np.sqrt(np.prod(w.shape[1:])) for name, (w, _) in draws.items()}
    first, second = draws["features.0"][0].ravel() / bound["features.0"], draws["features.2"][0].ravel()
    np.testing.assert_allclose(second[:first.size] / bound["features.2"], first, atol=1e-12)
    ours = {}

    def record(name, module, rng):
        sanity._redraw(module, rng)
        ours[name] = module.weight.numpy().copy()

    x, y = batch
    sanity.model_randomisation(model, x, y, "input_gradient", reinit=record, measures=("spearman",))
    first, second = ours["features.0"].ravel() / bound["features.0"], ours["features.2"].ravel() / bound["features.2"]
    assert abs(np.corrcoef(first, second[:first.size])[0, 1]) < 0.3
    assert np.abs(first).max() <= 1 and np.abs(second).max() <= 1  # the same uniform fan-in distribution


def test_quantus_average_correlation_counts_the_original_model(nets, batch):
    """``return_average_correlation`` skips a key named "orig", but the key is "original": the
    self-similarity 1.0 of the unrandomised model is averaged in. The mean over the randomised
    layers (ours: ``scores[...].mean(axis=0)``) is lower."""
    model, twin = nets
    x, y = batch
    draws = quantus_draws(twin)
    ours = sanity.model_randomisation(model, x, y, "input_gradient", reinit=use(draws), measures=("spearman_abs",))
    average = np.asarray(quantus_scores(twin, x, y, return_average_correlation=True))
    per_layer = ours.scores["spearman_abs"]
    np.testing.assert_allclose(average, (1.0 + per_layer.sum(axis=0)) / (len(per_layer) + 1), rtol=1e-9)
    assert (average > per_layer.mean(axis=0) + 0.05).all()


def test_quantus_ssim_depends_on_the_rest_of_the_batch_ours_does_not(nets, batch):
    """With ``similarity_func=ssim``, Quantus max-normalises the maps over the whole batch and runs SSIM on
    the flattened map, so image 0's score changes when other images join the batch. The paper's SSIM
    is per image, on the 2-D map: ours gives image 0 the same score alone or in the batch."""
    pytest.importorskip("skimage")
    model, twin = nets
    x, y = batch
    draws = quantus_draws(twin)
    # quantus.similarity_func.ssim returns a list where MPRT calls .tolist(): give it an array
    kwargs = {"similarity_func": lambda a, b, **kw: np.asarray(quantus.similarity_func.ssim(a, b, **kw)),
              "abs": True}
    alone = quantus_scores(twin, x[:1], y[:1], **kwargs)["classifier.3"][0]
    together = quantus_scores(twin, x, y, **kwargs)["classifier.3"][0]
    # measured 0.1085 alone, 0.1091 in the batch of five: small here (the SSIM constants are relative to a
    # data range taken from the pair), but far above float noise (1e-15): the score depends on the batch
    assert abs(alone - together) > 1e-6, (alone, together)
    ours_alone = sanity.model_randomisation(model, x[:1], y[:1], "input_gradient", reinit=use(draws),
                                            layers=["classifier.3"], measures=("ssim",))
    ours_together = sanity.model_randomisation(model, x, y, "input_gradient", reinit=use(draws),
                                               layers=["classifier.3"], measures=("ssim",))
    assert ours_alone.scores["ssim"][0, 0] == pytest.approx(ours_together.scores["ssim"][0, 0], rel=1e-12)
