"""LRP, Score-/Ablation-CAM and the evaluation metrics, minivis against Zennit, pytorch-grad-cam and
Quantus on identical weights, same process, same threads.

    python benchmarks/evaluation.py            # VGG16 and EfficientNet-Lite0 (random weights), 224 px
    python benchmarks/evaluation.py --quick    # smoke test: 64 px LRP, CAMs on fashion_cnn (no measurement)

Rows (each also checks that the two sides agree, "ok" or the relative difference):

* LRP per image, epsilon-gamma-box composite (z^B first conv, gamma convs, epsilon dense), float32,
  against Zennit's EpsilonGammaBox: VGG16 at 224 px; EfficientNet-Lite0 at 224 px with batch norm
  canonised (Zennit: its MergeBatchNorm on each conv/BN pair) and the residual sums by the norm
  rule (Zennit: its Sum layer in the twin). Checked to float32 rounding (rtol 1e-3 of the max).
* Score-CAM and Ablation-CAM at VGG16's last conv block (512 channels), batch 32, peak memory of
  each side in its own process. Score-CAM runs one full forward per channel on both sides (input
  112 px here: 512 VGG16 passes at 224 px take minutes per side); minivis's Ablation-CAM runs only
  the layers above the chosen one per channel, pytorch-grad-cam the whole network.
* Deletion curve (Quantus PixelFlipping, softmax, constant baseline) on fashion_cnn, 28 px,
  16 pixels per step, a batch of 32 images.
* Model-parameter randomisation cascade (Quantus MPRT, top-down, saliency, Spearman of |map|) on
  fashion_cnn, all six conv/linear layers, a batch of 32 images, both sides on Quantus's random
  draws; timed in float32, checked in float64.

Needs the test extra (torch 2.14.1, torchvision, zennit, grad-cam, quantus). Numbers go to
benchmarks/README.md ("Evaluation, CPU") and results/evaluation-cpu.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import common  # benchmarks/ is not a package: its scripts import `common` by path
import numpy as np
import torch

import minivis as mv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.torch_twins import TorchEfficientNetLite, torchvision_vgg, twin_from_state  # noqa: E402


def vgg(size: int):
    mv.nn.init.seed(0)
    model = mv.models.build("vgg16").eval()
    twin = twin_from_state(torchvision_vgg(mv.models.VGG_CONFIGS["vgg16"]), model.state_dict())
    x = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3))
    return model, twin, model.preprocess((x * 255).astype(np.uint8))


def bounds(model, channels=3):
    low = np.array([-m / s for m, s in zip(model.mean, model.std, strict=True)], np.float32).reshape(1, channels, 1, 1)
    high = np.array([(1 - m) / s for m, s in zip(model.mean, model.std, strict=True)],
                    np.float32).reshape(1, channels, 1, 1)
    return low, high


def zennit_lrp(twin, x, target, low, high, canonizers=None):
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox

    composite = EpsilonGammaBox(low=torch.from_numpy(low), high=torch.from_numpy(high), canonizers=canonizers)
    norms = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def run():
        with Gradient(model=twin, composite=composite) as attributor:
            # Zennit's canonised BN keeps its eps (x / sqrt(1 + eps)); zero it so that both sides explain
            # the same function (tests/vis/attribution/test_lrp.py, test_canonisation_matches_zennits_canonizer)
            eps = [m.eps for m in norms]
            for m in norms:
                m.eps = 0.0
            _, rel = attributor(torch.from_numpy(x), lambda out: out * torch.eye(out.shape[1])[[target]])
            for m, e in zip(norms, eps, strict=True):
                m.eps = e
        return rel.numpy()

    return run


def lite0_twin(model):
    """The Lite0 twin with Zennit's Sum layer at each residual connection, and a NamedMergeBatchNorm
    canonizer for every conv/BN pair."""
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.layer import Sum

    twin = twin_from_state(TorchEfficientNetLite(), model.state_dict())
    name_map = [(["_conv_stem"], "_bn0"), (["_conv_head"], "_bn1")]
    for name, module in twin.named_modules():
        if hasattr(module, "skip") and hasattr(module, "_project_conv"):
            module.sum = Sum()

            def forward(x, m=module):
                h = torch.nn.functional.relu6(m._bn0(m._expand_conv(x))) if m.has_expand else x
                h = torch.nn.functional.relu6(m._bn1(m._depthwise_conv(h)))
                h = m._bn2(m._project_conv(h))
                return m.sum(torch.stack([h, x], dim=-1)) if m.skip else h

            module.forward = forward
            for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
                if hasattr(module, conv):
                    name_map.append(([f"{name}.{conv}"], f"{name}.{bn}"))
    twin.pool = torch.nn.AdaptiveAvgPool2d(1)  # a module, so that Zennit gives it the norm rule as minivis does
    twin.forward = lambda x: twin._fc(twin.pool(torch.nn.functional.relu6(twin._bn1(twin._conv_head(twin._blocks(
        torch.nn.functional.relu6(twin._bn0(twin._conv_stem(x)))))))).flatten(1))
    return twin, [NamedMergeBatchNorm(name_map)]


def check(ours, ref) -> str:
    err = float(np.abs(np.asarray(ours) - np.asarray(ref)).max() / (np.abs(ref).max() + 1e-30))
    return "ok" if err < 1e-3 else f"MISMATCH {err:.1e}"


def lrp_rows(size: int, repeat: int) -> list[list]:
    """LRP epsilon-gamma-box on VGG16 and Lite0, timed in float32. VGG16's values are checked in float64:
    through its gamma-rule convolutions float32 rounding alone moves the relevance by ~4e-3 of the largest."""
    import copy

    rows = []
    model, twin, x = vgg(size)
    low, high = bounds(model)
    twin64 = twin_from_state(torchvision_vgg(mv.models.VGG_CONFIGS["vgg16"]), model.state_dict(), torch.float64)
    status = check(mv.vis.lrp(copy.deepcopy(model).double(), x.astype(np.float64), 3, composite="epsilon_gamma_box"),
                   zennit_lrp(twin64, x.astype(np.float64), 3, low.astype(np.float64), high.astype(np.float64))())
    ours = lambda: mv.vis.lrp(model, x, 3, composite="epsilon_gamma_box")  # noqa: E731
    theirs = zennit_lrp(twin, x, 3, low, high)
    t_ours, t_ref = common.timeit_interleaved([ours, theirs], repeat=repeat, warmup=0)
    rows.append(["LRP eps-gamma-box", f"vgg16 {size}px", t_ours, t_ref, t_ref / t_ours, status])

    mv.nn.init.seed(1)
    lite = mv.models.build("efficientnet_lite0").eval()
    rng = np.random.default_rng(1)
    for m in lite.modules():  # BN statistics away from the identity, so canonisation matters
        if isinstance(m, mv.nn.BatchNorm2d):
            m.register_buffer("running_mean", rng.uniform(-0.1, 0.1, m.num_features).astype(np.float32))
            m.register_buffer("running_var", rng.uniform(0.5, 1.5, m.num_features).astype(np.float32))
    twin, canonizers = lite0_twin(lite)
    xl = lite.preprocess((rng.uniform(0, 1, (1, size, size, 3)) * 255).astype(np.uint8))
    low, high = bounds(lite)
    ours = lambda: mv.vis.lrp(lite, xl, 3, composite="epsilon_gamma_box")  # noqa: E731
    theirs = zennit_lrp(twin, xl, 3, low, high, canonizers)
    status = check(ours(), theirs())
    t_ours, t_ref = common.timeit_interleaved([ours, theirs], repeat=repeat, warmup=0)
    rows.append(["LRP eps-gamma-box", f"efficientnet_lite0 {size}px", t_ours, t_ref, t_ref / t_ours, status])
    return rows


# --------------------------------------------------------------------------- Score-/Ablation-CAM, one process each
def fashion(n: int = 1):
    from tests.torch_twins import TorchFashionCNN

    mv.nn.init.seed(2)
    model = mv.models.FashionCNN().eval()
    x = np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)
    return model, twin_from_state(TorchFashionCNN(), model.state_dict()), x


def cam_child(opts: dict) -> dict:
    common.set_threads(opts["threads"])
    if opts["net"] == "vgg16":
        (model, twin, x), layer = vgg(opts["size"]), "features.29"
    else:  # --quick
        (model, twin, x), layer = fashion(), "features.8"
    if opts["side"] == "minivis":
        def fn():
            return mv.vis.cam(model, x, 3, layer, opts["method"], batch_size=32, upsample=False, relu=False,
                              score="logit_softmax")
    else:
        from pytorch_grad_cam import AblationCAM, ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = ScoreCAM if opts["method"] == "score_cam" else AblationCAM
        cam = cls(model=twin, target_layers=[twin.get_submodule(layer)])
        cam.batch_size = 32

        def fn():
            with torch.no_grad() if opts["method"] == "score_cam" else torch.enable_grad():
                return cam(torch.from_numpy(x), targets=[ClassifierOutputTarget(3)])
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _status_mb("VmHWM") - before}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cam_rows(args, net: str, size: int) -> list[list]:
    rows = []
    for method in ("score_cam", "ablation_cam"):
        result = {}
        for side in ("minivis", "grad-cam"):
            opts = {"method": method, "side": side, "net": net, "size": size, "threads": args.threads}
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(opts)], capture_output=True,
                                  text=True, cwd=ROOT, env=dict(os.environ))
            if proc.returncode != 0:
                raise RuntimeError(f"{method} {side} failed:\n{proc.stderr[-3000:]}")
            result[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        ours, ref = result["minivis"], result["grad-cam"]
        rows.append([method, f"{net} {size}px", ours["seconds"], ref["seconds"], ref["seconds"] / ours["seconds"],
                     f"peak MB {ours['peak_mb']:.0f} vs {ref['peak_mb']:.0f}"])
    return rows


def deletion_rows(n_images: int, repeat: int) -> list[list]:
    import quantus

    model, twin, x = fashion(n_images)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n_images)
    a = rng.standard_normal((n_images, 1, 28, 28)).astype(np.float32)
    pf = quantus.PixelFlipping(features_in_step=16, perturb_baseline=-1.0, normalise=False, abs=False,
                               disable_warnings=True, display_progressbar=False)

    def ours():
        return mv.vis.deletion(model, x, y, a, pixels_per_step=16, baseline=-1.0, batch_size=64).scores[:, 1:]

    def theirs():
        return np.array(pf(model=twin, x_batch=x, y_batch=y, a_batch=a, device="cpu", softmax=True))

    status = check(ours(), theirs())
    t_ours, t_ref = common.timeit_interleaved([ours, theirs], repeat=repeat, warmup=0)
    return [["deletion curve (PixelFlipping)", f"fashion_cnn x{n_images}", t_ours, t_ref, t_ref / t_ours, status]]


def mprt_row(n_images: int, repeat: int) -> list[list]:
    """The model-randomisation cascade (Adebayo et al.): all six conv/linear layers of fashion_cnn, logits
    first, saliency, Spearman of |map|, against Quantus's MPRT on the same random draws: Quantus's own,
    recorded from its layer generator and given to ``model_randomisation(reinit=...)``. Quantus's
    explain_func: the autograd input gradient (|.| by MPRT's abs=True). Timed in float32; the values
    checked in float64, since rank correlations of float32 maps move by ~1e-3 from rounding alone."""
    import copy

    import quantus
    from quantus.helpers.model.pytorch_model import PyTorchModel

    model32, twin32, x32 = fashion(n_images)
    y = np.random.default_rng(0).integers(0, 10, n_images)

    def torch_gradient(model, inputs, targets, **_):
        inputs = torch.tensor(inputs, requires_grad=True)
        model(inputs)[torch.arange(len(inputs)), torch.as_tensor(targets)].sum().backward()
        return inputs.grad.numpy()

    def sides(model, twin, x):
        draws = {}  # per dtype: torch draws float64 weights from its generator differently
        for name, random_model in PyTorchModel(copy.deepcopy(twin)).get_random_layer_generator("top_down", seed=42):
            layer = dict(random_model.named_modules())[name]
            draws[name] = (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())

        def reinit(name, module, _rng):
            module.weight, module.bias = mv.nn.Parameter(draws[name][0].copy()), mv.nn.Parameter(draws[name][1].copy())

        def ours():
            return mv.vis.model_randomisation(model, x, y, "saliency", reinit=reinit,
                                              measures=("spearman_abs",)).scores["spearman_abs"]

        def theirs():
            metric = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True, display_progressbar=False)
            out = metric(model=twin, x_batch=x, y_batch=y, a_batch=None, explain_func=torch_gradient, device="cpu",
                         batch_size=n_images)
            return np.array([out[name] for name in draws])
        return ours, theirs

    ours64, theirs64 = sides(copy.deepcopy(model32).double(), copy.deepcopy(twin32).double(), x32.astype(np.float64))
    status = check(ours64(), theirs64())
    t_ours, t_ref = common.timeit_interleaved(list(sides(model32, twin32, x32)), repeat=repeat, warmup=1)
    return [["MPRT cascade (saliency, 6 layers)", f"fashion_cnn x{n_images}", t_ours, t_ref, t_ref / t_ours, status]]


def road_row(n_images: int, repeat: int, size: int = 224) -> list[list]:
    """ROAD, MoRF at grad-cam's percentiles 10..90 (noise 0 on both sides, so the values can be checked),
    softmax of a random target on fashion_cnn, against pytorch-grad-cam's RemoveMostRelevantFirst +
    NoisyLinearImputer per percentile; our fractions are the pixel counts grad-cam removes (its
    percentile threshold, tests/vis/attribution/test_road.py). Plus the imputation alone on one
    ``size`` px RGB image with 90% of the pixels removed."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, twin, x = fashion(n_images)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n_images)
    cams = rng.uniform(size=(n_images, 28, 28)).astype(np.float32)
    qs = list(range(90, 0, -10))  # grad-cam keeps q%: removes 10%, 20%, ... 90%
    removed = [784 - int((cams[0] < np.percentile(cams[0], q)).sum()) for q in qs]
    metrics = [PerturbationConfidenceMetric(RemoveMostRelevantFirst(q, NoisyLinearImputer(noise=0.0))) for q in qs]
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]

    def ours():
        return mv.vis.road(model, x, y, cams, fractions=np.array(removed) / 784, order="morf", noise=0.0,
                           progress=False).morf

    def theirs():
        return np.stack([m(torch.from_numpy(x), cams, targets, twin, return_diff=False) for m in metrics], axis=1)

    status = check(ours(), theirs())
    t_ours, t_ref = common.timeit_interleaved([ours, theirs], repeat=repeat, warmup=0)
    rows = [["ROAD MoRF, 9 fractions", f"fashion_cnn x{n_images}", t_ours, t_ref, t_ref / t_ours, status]]

    img = rng.uniform(0, 1, (3, size, size)).astype(np.float32)
    gone = rng.uniform(size=(size, size)) < 0.9
    keep = torch.from_numpy((~gone).astype(np.float32))
    imputer = NoisyLinearImputer(noise=0.0)
    ours_i = lambda: mv.vis.noisy_linear_imputation(img, gone, noise=0.0)  # noqa: E731
    theirs_i = lambda: imputer(torch.from_numpy(img), keep).numpy()  # noqa: E731
    status = check(ours_i(), theirs_i())
    t_ours, t_ref = common.timeit_interleaved([ours_i, theirs_i], repeat=repeat, warmup=0)
    rows.append(["noisy linear imputation, 90% removed", f"{size}px RGB", t_ours, t_ref, t_ref / t_ours, status])
    return rows


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(cam_child(json.loads(sys.argv[2]))))
        return 0
    args = common.parse_args("LRP, Score-/Ablation-CAM and deletion against Zennit, grad-cam, Quantus",
                             topic="evaluation")
    dev = common.setup(args)
    started = time.perf_counter()
    size = 64 if args.quick else 224
    repeat = 1 if args.quick else 3
    rows = lrp_rows(size, repeat)
    rows += cam_rows(args, "fashion_cnn", 28) if args.quick else cam_rows(args, "vgg16", 112)
    rows += deletion_rows(4 if args.quick else 32, repeat)
    rows += mprt_row(4 if args.quick else 32, repeat)
    rows += road_row(2 if args.quick else 16, repeat, 64 if args.quick else 224)
    headers = ["method", "net", "minivis s", "reference s", "speed-up", "check"]
    common.print_table(headers, rows, title=f"evaluation, {args.threads} threads (min of {repeat})")
    payload = {"rows": [dict(zip(headers, r, strict=True)) for r in rows],
               "errors": sum("MISMATCH" in str(r[-1]) for r in rows), "elapsed_s": time.perf_counter() - started}
    common.finish(args, dev, payload, common.markdown_table(headers, rows), heading="## Evaluation, CPU")
    return 1 if payload["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
