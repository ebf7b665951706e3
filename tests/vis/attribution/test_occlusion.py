"""Occlusion: the grid against a direct PyTorch loop, the attribution against Captum's Occlusion,
incremental (and approximate) against naive on sequential nets, a layer zoo and EfficientNet, and
bad input. The splice kernel against its NumPy twin: tests/kernels/test_cpu_occlusion.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minivis as mv
from minivis import nn
from minivis.models.efficientnet import EfficientNetLite
from tests.torch_twins import TorchFashionCNN, twin_from_state


# ----------------------------------------------------------------------------- models
def fashion(dtype=np.float64) -> mv.models.FashionCNN:
    nn.init.seed(0)
    model = mv.models.FashionCNN(widths=(8, 16), hidden=32).astype(dtype)
    return model.eval()


def random_bn_stats(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Running statistics away from (0, 1) so batch-norm layers do something."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            dtype = module.running_mean.dtype
            module._set_buffer("running_mean", (0.2 * rng.standard_normal(c)).astype(dtype))
            module._set_buffer("running_var", rng.uniform(0.5, 2.0, c).astype(dtype))
            module.weight.data = rng.uniform(0.5, 1.5, c).astype(dtype)
            module.bias.data = (0.1 * rng.standard_normal(c)).astype(dtype)
    return model


def layer_zoo(dtype=np.float64) -> nn.Sequential:
    """Every geometry incremental occlusion has to follow: strides, paddings (int, tuple, 4-tuple,
    asymmetric SAME), dilation, depthwise and grouped convs, overlapping/padded/ceil-mode pools,
    a non-spatial pool in the middle, and pointwise layers."""
    nn.init.seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 5, stride=2, padding=(2, 1)), nn.BatchNorm2d(8), nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(8, 8, 3, padding="same", dilation=2), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, stride=2, padding="same", groups=8), nn.LocalResponseNorm(3),
        nn.Conv2d(8, 12, (1, 3), padding=(0, 0, 2, 0), groups=4), nn.Tanh(),
        nn.AvgPool2d(3, 1, padding=1),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.AvgPool2d(2, ceil_mode=True),  # not followed region by region: the rest runs in full
        nn.Conv2d(12, 12, 2), nn.Sigmoid(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5),
    )
    return random_bn_stats(net.astype(dtype), np.random.default_rng(3)).eval()


def small_efficientnet(dtype=np.float64) -> EfficientNetLite:
    """EfficientNet-Lite's stem, MBConv blocks (with and without skips, k3/k5, stride 1/2) and head."""
    nn.init.seed(5)
    stages = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40)]
    model = EfficientNetLite(num_classes=10, stages=stages).astype(dtype)
    return random_bn_stats(model, np.random.default_rng(5)).eval()


# ----------------------------------------------------------------------------- references
def torch_grid(twin, x: np.ndarray, targets, patch: int, stride: int, fills: np.ndarray) -> np.ndarray:
    """The definition, written out: every occluded copy through the torch twin, softmax, target."""
    n, c, h, w = x.shape
    rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
    out = np.empty((n, rows, cols))
    with torch.no_grad():
        for i in range(n):
            copies = []
            for r in range(rows):
                for q in range(cols):
                    xo = torch.from_numpy(x[i].copy())
                    xo[:, r * stride:r * stride + patch, q * stride:q * stride + patch] = torch.from_numpy(
                        fills[i])[:, None, None]
                    copies.append(xo)
            probs = torch.softmax(twin(torch.stack(copies)), dim=-1)[:, targets[i]]
            out[i] = probs.numpy().reshape(rows, cols)
    return out


@pytest.mark.parametrize("patch, stride, fill", [(5, 4, 0.5), (7, 7, "mean"), (4, 6, [-0.3])])
def test_grid_equals_a_direct_pytorch_loop(patch, stride, fill, rng) -> None:
    model = fashion()
    twin = twin_from_state(TorchFashionCNN(widths=(8, 16), hidden=32), model.state_dict(), torch.float64)
    x = rng.standard_normal((2, 1, 28, 28))
    targets = [3, 7]
    fills = x.mean(axis=(2, 3)) if fill == "mean" else np.broadcast_to(np.asarray(fill, float), (2, 1))
    want = torch_grid(twin, x, targets, patch, stride, np.ascontiguousarray(fills))
    for mode in ("naive", "incremental"):
        got = mv.vis.occlusion(model, x, targets, patch=patch, stride=stride, fill=fill, mode=mode, batch_size=50)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=mode)
    single = mv.vis.occlusion(model, x[1], 7, patch=patch, stride=stride, fill=fill)
    np.testing.assert_allclose(single, want[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("fill", [0.0, "mean"])
def test_attribution_equals_captum_occlusion(fill, rng) -> None:
    from captum.attr import Occlusion  # noqa: PLC0415

    model = fashion()
    twin = twin_from_state(TorchFashionCNN(widths=(8, 16), hidden=32), model.state_dict(), torch.float64)
    x = rng.standard_normal((2, 1, 28, 28))
    xt = torch.from_numpy(x)
    baselines = xt.mean(dim=(2, 3), keepdim=True).expand_as(xt).contiguous() if fill == "mean" else fill
    captum = Occlusion(lambda inp: torch.softmax(twin(inp), dim=-1))
    want = captum.attribute(xt, target=torch.tensor([1, 4]), sliding_window_shapes=(1, 8, 8), strides=(1, 4, 4),
                            baselines=baselines, perturbations_per_eval=200)
    # Captum sums in float64 but divides by the window counts after `.float()` (format_result in
    # feature_ablation.py): its result is float32, two roundings (<= 2 * 2**-24 relative) off.
    assert want.dtype == torch.float32
    want = want.numpy()[:, 0].astype(np.float64)
    for mode in ("naive", "incremental"):
        got = mv.vis.occlusion_attribution(model, x, [1, 4], patch=8, stride=4, fill=fill, mode=mode, batch_size=40)
        np.testing.assert_allclose(got, want, rtol=2 * 2.0**-24, atol=1e-30, err_msg=mode)
    # and in float64, against the definition: the mean over covering windows of the drop in probability
    grid = torch_grid(twin, x, [1, 4], 8, 4, x.mean(axis=(2, 3)) if fill == "mean" else np.full((2, 1), fill))
    with torch.no_grad():
        clean = torch.softmax(twin(xt), dim=-1).numpy()[[0, 1], [1, 4]]
    drop = mv.vis.occlusion_map(clean[:, None, None] - grid, 28, 8, 4)
    np.testing.assert_allclose(got, drop, rtol=1e-10, atol=1e-16)


def test_occlusion_map_is_the_mean_over_covering_patches(rng) -> None:
    grid = rng.random((2, 4, 3))
    size, patch, stride = (13, 12), (5, 4), (2, 3)  # patches cover rows 0..10 and columns 0..9 only
    want = np.zeros((2, *size))
    count = np.zeros(size)
    for r in range(4):
        for c in range(3):
            want[:, 2 * r:2 * r + 5, 3 * c:3 * c + 4] += grid[:, r, c, None, None]
            count[2 * r:2 * r + 5, 3 * c:3 * c + 4] += 1
    want = np.where(count > 0, want / np.maximum(count, 1), np.nan)
    got = mv.vis.occlusion_map(grid, size, patch, stride)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(got[:, 11:]).all() and np.isnan(got[:, :, 10:]).all() and not np.isnan(got[:, :11, :10]).any()


# ----------------------------------------------------------------------------- incremental == naive
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_incremental_equals_naive_on_fashion_cnn(dtype, tol, rng) -> None:
    model = fashion(dtype)
    x = rng.standard_normal((2, 1, 28, 28)).astype(dtype)
    naive = mv.vis.occlusion(model, x, [2, 9], patch=6, stride=3, mode="naive", batch_size=64)
    fast, info = mv.vis.occlusion(model, x, [2, 9], patch=6, stride=3, mode="incremental", batch_size=37,
                                  return_info=True)
    assert fast.dtype == naive.dtype == dtype
    np.testing.assert_allclose(fast, naive, rtol=tol, atol=tol * naive.max())
    assert info["mac_speedup"] > 2  # 6x6 patches on 28x28: most of every layer is left alone


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_incremental_with_shared_winograd_products_equals_naive(dtype, tol, rng, monkeypatch) -> None:
    """32-channel 3x3 layers run Winograd on their regions (here forced: their forward pass would
    take the fused Winograd or direct kernel, which only layers above 128 channels, VGG16's, do
    not); incremental occlusion shares those products across positions
    (``conv_plan.shared_winograd_gemms``): still the naive scores."""
    from minivis.kernels import conv_plan

    monkeypatch.setattr(conv_plan, "is_direct_forward", lambda *args: False)
    monkeypatch.setattr(conv_plan, "is_winograd_fused", lambda *args, **kwargs: False)
    shared = []
    original = conv_plan._winograd_shared
    monkeypatch.setattr(conv_plan, "_winograd_shared", lambda *args: shared.append(1) or original(*args))
    nn.init.seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 8 * 8, 10)).astype(dtype).eval()
    x = rng.standard_normal((1, 16, 16)).astype(dtype)
    naive = mv.vis.occlusion(model, x, 3, patch=4, stride=3, mode="naive")
    assert not shared  # naive mode: whole images, per-image products
    fast = mv.vis.occlusion(model, x, 3, patch=4, stride=3, mode="incremental", batch_size=7)
    assert shared
    np.testing.assert_allclose(fast, naive, rtol=tol, atol=tol * naive.max())


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_incremental_with_winograd_4x4_blocks_equals_naive(dtype, tol, rng, monkeypatch) -> None:
    """Where ``conv_plan.winograd4_pays`` (here from 16 channels, not 128, to keep the test small), the
    shared products run F(4x4, 3x3) (``cpu_winograd4``): still the naive scores, of a model whose
    logits are far from uniform (weights scaled up) so that the check is not lost in a softmax.
    Winograd is forced: on their own, 16-channel layers would take other kernels."""
    from minivis.kernels import conv_plan

    monkeypatch.setattr(conv_plan, "WINOGRAD4_MIN_CHANNELS", 16)
    sizes = []
    original = conv_plan._winograd4_shared
    monkeypatch.setattr(conv_plan, "_winograd4_shared",
                        lambda *args: sizes.append(tuple(args[-1])) or original(*args))
    nn.init.seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(32 * 12 * 12, 10)).astype(dtype).eval()
    for p in model.parameters():
        p.data *= 3
    x = rng.standard_normal((1, 24, 24)).astype(dtype)
    with mv.conv_algorithm("winograd"):
        naive = mv.vis.occlusion(model, x, 3, patch=8, stride=4, mode="naive")
        assert not sizes and naive.std() > 0.5 * naive.mean()  # naive: whole images; scores that vary with the position
        fast = mv.vis.occlusion(model, x, 3, patch=8, stride=4, mode="incremental", batch_size=7)
    assert sizes and all(conv_plan.winograd4_pays(*hw, 16, 16) for hw in sizes)
    np.testing.assert_allclose(fast, naive, rtol=tol, atol=tol * naive.max())


@pytest.mark.parametrize("head_bytes, head_calls", [(0, [37, 37, 37, 17]), (300_000, [74, 54]), (1 << 40, [128])])
def test_the_dense_head_runs_on_rows_of_several_batches(head_bytes, head_calls, rng, monkeypatch) -> None:
    """The layers after the model's Flatten run once per HEAD_BYTES of collected rows (0: after
    every batch; 300 kB: every two batches of 37 rows of 6,272 bytes; 2**40: once at the end),
    and the grid is the naive one whatever the grouping."""
    from minivis.vis.attribution import occlusion_incremental as oi

    monkeypatch.setattr(oi, "HEAD_BYTES", head_bytes)
    rows_per_call = []
    run_head = oi.Incremental._run_head

    def counted(self, rows, imgs):
        rows_per_call.append(sum(len(r) for r in rows))
        return run_head(self, rows, imgs)

    monkeypatch.setattr(oi.Incremental, "_run_head", counted)
    model = fashion()  # features end in 16 channels of 7 x 7: a Flatten row of 784 float64
    x = rng.standard_normal((2, 1, 28, 28))
    naive = mv.vis.occlusion(model, x, [2, 9], patch=6, stride=3, mode="naive", batch_size=64)
    fast = mv.vis.occlusion(model, x, [2, 9], patch=6, stride=3, mode="incremental", batch_size=37)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-10 * naive.max())
    assert rows_per_call == head_calls  # 2 images x 64 positions in batches of 37


@pytest.mark.parametrize("mode", ["naive", "incremental"])
def test_progress_bar_over_the_positions(mode, rng, capsys) -> None:
    """A bar when asked for (or from 8 batches on), none when turned off or for a short run."""
    model, x = fashion(), rng.standard_normal((1, 28, 28))
    mv.vis.occlusion(model, x, 0, patch=14, stride=7, mode=mode, progress=True)
    assert "occlusion" in capsys.readouterr().err
    mv.vis.occlusion(model, x, 0, patch=14, stride=7, mode=mode)  # 9 positions: one batch
    mv.vis.occlusion_attribution(model, x, 0, patch=4, stride=2, mode=mode, batch_size=8, progress=False)
    assert "occlusion" not in capsys.readouterr().err
    mv.vis.occlusion_attribution(model, x, 0, patch=4, stride=2, mode=mode, batch_size=8)  # 169 positions
    assert "occlusion_attribution" in capsys.readouterr().err


def test_a_model_without_a_top_level_flatten_runs_whole_batches(rng) -> None:
    """No dense head to defer (the Flatten inside a chain): every batch runs through the whole plan."""
    from minivis.vis.attribution import occlusion_incremental as oi

    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten()),
                          nn.Linear(4 * 12 * 12, 3)).astype(np.float64).eval()
    assert oi.head_start(oi.build_plan(model)) is None
    x = rng.standard_normal((1, 1, 12, 12))
    naive = mv.vis.occlusion(model, x, 1, patch=4, stride=2, mode="naive")
    fast = mv.vis.occlusion(model, x, 1, patch=4, stride=2, mode="incremental", batch_size=5)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("patch, stride, size", [(7, 3, (37, 45)), ((4, 9), (5, 2), (40, 38)), (1, 6, (41, 41)),
                                                  (4, 10, (96, 90))])
def test_incremental_follows_every_layer_geometry(patch, stride, size, rng) -> None:
    model = layer_zoo()
    x = rng.standard_normal((2, 3, *size))
    targets = [0, 4]
    if size == (96, 90):  # one image is enough for the large case
        x, targets = x[:1], [4]
    naive = mv.vis.occlusion(model, x, targets, patch=patch, stride=stride, fill="mean", batch_size=80)
    fast, info = mv.vis.occlusion(model, x, targets, patch=patch, stride=stride, fill="mean", mode="incremental",
                                  batch_size=23, return_info=True)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-12)
    assert np.ptp(naive) > 1e-6  # the patches do change the output (by far more than the tolerance)
    if size == (96, 90):  # small patches on a large image: every spatial layer up to the ceil-mode pool
        assert all(info["region_sizes"][str(i)] is not None for i in range(14))  # ran on regions only
        assert info["region_sizes"]["14"] is None and info["mac_speedup"] > 20


def test_incremental_follows_mbconv_residual_blocks(rng) -> None:
    model = small_efficientnet()
    x = rng.standard_normal((1, 3, 40, 40))
    naive = mv.vis.occlusion(model, x, 3, patch=8, stride=4, fill=0.0)
    fast = mv.vis.occlusion(model, x, 3, patch=8, stride=4, fill=0.0, mode="incremental", batch_size=30)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-14)
    exact = mv.vis.occlusion(model, x, 3, patch=8, stride=4, fill=0.0, mode="approximate", threshold=1.0)
    np.testing.assert_allclose(exact, naive, rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_incremental_equals_naive_on_pretrained_efficientnet_lite0() -> None:
    # float64: the cone-of-influence crops change the summation order of every convolution, which
    # in float32 moves scores by a few 1e-5 relative after 50 layers; in float64 both must agree.
    model = mv.models.load("efficientnet_lite0").double()
    x = model.preprocess(mv.data.photo("chelsea"))[0, :, ::4, ::4].astype(np.float64)  # 56 x 56
    naive = mv.vis.occlusion(model, x, 285, patch=16, stride=8, fill=0.0, batch_size=25)
    fast = mv.vis.occlusion(model, x, 285, patch=16, stride=8, fill=0.0, mode="incremental", batch_size=25)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-13)
    assert naive.max() > 1e-2  # a real probability, not noise


def test_approximate_mode_trades_accuracy_for_work(rng) -> None:
    model = fashion()
    x = rng.standard_normal((1, 1, 28, 28))
    naive = mv.vis.occlusion(model, x, 5, patch=6, stride=3)
    exact_grid, exact = mv.vis.occlusion(model, x, 5, patch=6, stride=3, mode="incremental", return_info=True)
    errors, work = [], []
    for tau in (0.3, 0.5, 0.8):  # the regions need ~0.7 of each map at most: 0.8 caps nothing
        approx, info = mv.vis.occlusion(model, x, 5, patch=6, stride=3, mode="approximate", threshold=tau,
                                        return_info=True)
        errors.append(np.abs(approx - naive).max())
        work.append(info["conv_macs"])
    np.testing.assert_array_equal(approx, exact_grid)  # nothing capped: the exact computation, bit for bit
    assert errors[0] > errors[1] > 1e-6 > 1e-13 > errors[2]  # the exact mode only differs from naive by rounding
    assert work[0] < work[1] < work[2] == exact["conv_macs"] < exact["conv_macs_naive"]


def test_positions_pick_cells_of_the_grid(rng) -> None:
    model = fashion()
    x = rng.standard_normal((2, 1, 28, 28))
    grid = mv.vis.occlusion(model, x, [1, 2], patch=6, stride=4)
    cells = np.array([[5, 0], [0, 5], [2, 3], [2, 3]])
    for mode in ("naive", "incremental"):
        picked = mv.vis.occlusion(model, x, [1, 2], patch=6, stride=4, positions=cells, mode=mode)
        np.testing.assert_allclose(picked, grid[:, cells[:, 0], cells[:, 1]], rtol=1e-12, atol=1e-15)
    one = mv.vis.occlusion(model, x[0], 1, patch=6, stride=4, positions=[[3, 1]])
    assert one.shape == (1,) and one[0] == pytest.approx(grid[0, 3, 1], rel=1e-12)
    for bad in ([[6, 0]], [[0, -1]], [3, 1], [[0.5, 1]]):
        with pytest.raises(ValueError, match="occlusion: positions must"):
            mv.vis.occlusion(model, x, [1, 2], patch=6, stride=4, positions=bad)


def test_occlusion_restores_the_model_and_leaves_no_gradients(rng) -> None:
    model = fashion().train()
    mv.vis.occlusion(model, rng.standard_normal((1, 28, 28)), 0, patch=14, stride=14, mode="incremental")
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_callable_target_scores_the_logits(rng) -> None:
    model = fashion()
    x = rng.standard_normal((1, 1, 28, 28))
    logit = mv.vis.occlusion(model, x, lambda out: out[:, 3] - out[:, 4], patch=7, stride=7, mode="incremental")
    with mv.no_grad():
        xo = x.copy()
        xo[..., 7:14, 14:21] = 0.0  # the default fill: the model's mean pixel, 0 in its input units
        out = model(mv.tensor(xo)).data
    assert logit.shape == (1, 4, 4)
    np.testing.assert_allclose(logit[0, 1, 2], out[0, 3] - out[0, 4], rtol=1e-10)


class ScaledFashion(mv.models.FashionCNN):
    """A model whose preprocess maps pixels to [-1, 1] without subtracting its mean: its mean pixel is not 0."""

    def preprocess(self, images):
        return np.asarray(images, np.float32).transpose(2, 0, 1)[None] * 2 - 1


def test_default_fill_is_the_models_mean_pixel(rng) -> None:
    # the zoo subtracts each model's training mean: the mean pixel is 0 in input units
    from minivis.vis.attribution.occlusion import mean_pixel

    np.testing.assert_array_equal(mean_pixel(mv.models.EfficientNetLite(num_classes=3), 3), 0.0)
    model = fashion()
    x = rng.standard_normal((1, 28, 28))
    np.testing.assert_array_equal(mv.vis.occlusion(model, x, 2, patch=7, stride=7),
                                  mv.vis.occlusion(model, x, 2, patch=7, stride=7, fill=0.0))
    # a model that normalises differently gets its own mean colour, pushed through its preprocess
    nn.init.seed(0)
    scaled = ScaledFashion(widths=(8, 16), hidden=32).astype(np.float64).eval()
    colour = 2 * np.float32(mv.models.FashionCNN.mean[0]) - 1
    assert colour != 0
    got = mv.vis.occlusion(scaled, x, 2, patch=7, stride=7)
    np.testing.assert_array_equal(got, mv.vis.occlusion(scaled, x, 2, patch=7, stride=7, fill=float(colour)))
    assert not np.allclose(got, mv.vis.occlusion(scaled, x, 2, patch=7, stride=7, fill=0.0))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, error, match", [
    ({"patch": 29}, ValueError, r"occlusion: patch \(29, 29\) is larger than the image \(28, 28\)"),
    ({"stride": 0}, ValueError, "occlusion: stride must be >= 1"),
    ({"patch": 2.5}, TypeError, "occlusion: patch must be an int or a pair of ints"),
    ({"fill": "grey"}, ValueError, "occlusion: fill must be a number, one value per channel, 'model_mean' or 'mean'"),
    ({"fill": [0.1, 0.2]}, ValueError, r"occlusion: fill must be a number or 1 values .* got shape \(2,\)"),
    ({"fill": float("nan")}, ValueError, "occlusion: fill must be finite"),
    ({"fill": None}, TypeError, "occlusion: fill must be a number, one value per channel, 'model_mean' or 'mean', "
                                "got NoneType"),
    ({"mode": "fast"}, ValueError, "occlusion: mode must be one of naive, incremental, approximate"),
    ({"threshold": 0}, ValueError, r"occlusion: threshold must be a number in \(0, 1\]"),
    ({"batch_size": 0}, ValueError, "occlusion: batch_size must be a positive int"),
    ({"progress": "yes"}, TypeError, "occlusion: progress must be True, False or None"),
])
def test_bad_arguments(kwargs, error, match, rng) -> None:
    with pytest.raises(error, match=match):
        mv.vis.occlusion(fashion(), rng.standard_normal((1, 28, 28)), 0, **kwargs)


def test_bad_input_and_target(rng) -> None:
    model = fashion()
    x = rng.standard_normal((1, 28, 28))
    with pytest.raises(ValueError, match=r"occlusion: target class 10 is out of range for 10 classes"):
        mv.vis.occlusion(model, x, 10, mode="incremental")
    with pytest.raises(ValueError, match=r"occlusion: x must be \(C, H, W\) or \(N, C, H, W\), got shape \(28, 28\)"):
        mv.vis.occlusion(model, x[0], 0)
    with pytest.raises(ValueError, match="occlusion: x has 3 channels, the model expects 1"):
        mv.vis.occlusion(model, rng.standard_normal((3, 28, 28)), 0)
    with pytest.raises(ValueError, match="occlusion: target has 2 indices for a batch of 1 images"):
        mv.vis.occlusion(model, x, [1, 2])
    with pytest.raises(ValueError, match="occlusion_map: 5 patches of 4 at stride 3 do not fit in 12 pixels"):
        mv.vis.occlusion_map(np.zeros((5, 2)), 12, 4, 3)
    with pytest.raises(TypeError, match="occlusion_map: grid must be a numeric array"):
        mv.vis.occlusion_map([[0.0]], 12, 4, 3)
    with pytest.raises(ValueError, match="occlusion_map: 2 patches of 10000000000000000000000000000000 at stride"):
        mv.vis.occlusion_map(np.zeros((2, 2)), 12, 10**31, 3)


def test_a_stride_past_the_image_gives_one_patch(rng) -> None:
    """A huge stride overflowed int64 when the patch offsets were computed; it means one patch per axis."""
    model, x = fashion(), rng.standard_normal((1, 28, 28))
    one = mv.vis.occlusion(model, x, 0, patch=20, stride=28)
    np.testing.assert_array_equal(mv.vis.occlusion(model, x, 0, patch=20, stride=10**30), one)
    np.testing.assert_array_equal(mv.vis.occlusion_map(np.ones((1, 1)), 28, 20, 2**63),
                                  mv.vis.occlusion_map(np.ones((1, 1)), 28, 20, 28))


class FunctionalReLU(nn.Module):
    """A model whose forward applies an op that is not a layer: incremental mode cannot see it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * 26 * 26, 3)

    def forward(self, x):
        return self.fc(self.flatten(mv.F.relu(self.conv(x))))


def test_incremental_mode_refuses_a_forward_it_cannot_follow(rng) -> None:
    model = FunctionalReLU()
    x = rng.standard_normal((1, 28, 28)).astype(np.float32)
    with pytest.raises(ValueError, match=r"incremental mode cannot follow FunctionalReLU: layer flatten does not "
                                         r"read the output of the layer before it; use mode='naive'"):
        mv.vis.occlusion(model, x, 0, mode="incremental")
    assert mv.vis.occlusion(model, x, 0, patch=14, stride=14).shape == (2, 2)


def test_incremental_mode_refuses_a_pre_hook_that_replaces_an_input(rng) -> None:
    """Incremental mode splices patches of the given input into the recorded maps: a forward pre-hook
    that replaces the model's input, or a layer's, is refused; one that only looks is followed."""
    model = fashion()
    x = rng.standard_normal((1, 28, 28))
    want = mv.vis.occlusion(model, x, 0, patch=8, stride=6)
    for module, message in ((model, "its input is replaced before its forward runs"),
                            (model.features[3], r"layer features.3 does not read the output of the layer before it")):
        with module.register_forward_pre_hook(lambda m, a: a[0] * 2.0):
            with pytest.raises(ValueError, match=rf"incremental mode cannot follow FashionCNN: {message}"):
                mv.vis.occlusion(model, x, 0, patch=8, stride=6, mode="incremental")
            hooked = mv.vis.occlusion(model, x, 0, patch=8, stride=6)  # naive mode runs the hook
        assert not np.allclose(hooked, want)
    seen = []
    with model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape)):
        got = mv.vis.occlusion(model, x, 0, patch=8, stride=6, mode="incremental")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert seen

