"""Gradient attribution benchmark: minivis against Captum, per image, on EfficientNet-Lite0 and VGG16.

    python benchmarks/attribution.py            # full run (224 px): results/attribution-cpu.json + README table
    python benchmarks/attribution.py --quick    # smoke test: fashion_cnn at 28 px, 4 samples (no measurement)
    python benchmarks/attribution.py --nets efficientnet_lite0 --methods smoothgrad,integrated_gradients \
        --readme none                           # some rows only (keep them out of the README's full table)

For one photo (chelsea, preprocessed by each model) and float32 weights shared by both sides
(EfficientNet-Lite0 with its ImageNet weights when installed, else random; VGG16 random, which
costs the same), it times:

* the single-pass methods, in this process, calls interleaved (minivis, Captum, minivis, ...),
  min of N: ``saliency`` (Captum ``Saliency`` + max over channels), ``guided_backprop``
  (``GuidedBackprop``), ``deconvnet`` (``Deconvolution``), ``grad_cam`` at the last conv block,
  upsampled to the input (``LayerGradCam`` + ``LayerAttribution.interpolate``, bilinear);
* SmoothGrad with 50 samples (``NoiseTunnel(Saliency)``, both signed, 16 samples per batch) and
  integrated gradients with 50 steps (``IntegratedGradients``, ``riemann_middle``, internal batch
  16), one call per fresh child process (same threads, warmed up on one single-pass call),
  three rounds of one child per side, the fastest call of each side counting (``--rounds``:
  single calls swing by 20-60% on a shared VM); each child also records the peak resident
  memory above what the process held just before the call (Linux VmHWM, reset through
  /proc/self/clear_refs), the largest of the rounds reported: the streaming methods must stay
  under 2 GB on VGG16.

Correct before fast: before the timed float32 runs, both sides compute every deterministic
method once in float64 on the same weights and input (integrated gradients with 2 steps) and
the outputs must agree to ``CHECK_RTOL`` (||a - b|| / ||b||; they agree to ~1e-15). The check is
not done in float32 because a gradient is discontinuous at every ReLU kink and max-pool tie: on a
randomly initialised VGG16, float32 rounding alone moves either library's gradient 0.3-6% away
from the float64 one (measured), so a float32 comparison would test the network's conditioning,
not the code. Two rows have nothing to agree on and are marked "n/a": SmoothGrad draws different
noise on each side (tests/vis/attribution/test_gradients.py checks it on shared draws), and on
EfficientNet Captum's GuidedBackprop/Deconvolution only hook ``nn.ReLU`` modules while the
network's rectifiers are ReLU6 (minivis applies the rule to every ReLU-family op), so Captum
returns the plain gradient there; both are still timed.

VGG16 gets torchvision's initialisation (Kaiming-normal convolutions, N(0, 0.01) linear layers,
zero biases), so activations keep their scale through the 16 layers as in a trained network.

ratio = captum_time / minivis_time (> 1: minivis faster).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import finish, fmt, markdown_table, parse_args, print_table, set_threads, setup, timeit_interleaved

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.torch_twins

import torch  # noqa: E402

import minivis as mv  # noqa: E402
from tests import torch_twins  # noqa: E402

# name -> Grad-CAM layer (the same name in the twin); fashion_cnn only serves --quick
NETS = {"efficientnet_lite0": "_blocks.15", "vgg16": "features.29", "fashion_cnn": "features.8"}
SINGLE = ("saliency", "guided_backprop", "deconvnet", "grad_cam")
MULTI = ("smoothgrad", "integrated_gradients")
SAMPLE_BATCH = 8  # minivis's default batch_size for smoothgrad / integrated_gradients
NOISE = 0.15
CHECK_RTOL = 1e-9  # ||a - b|| / ||b||, float64 on both sides
CHECK_IG_STEPS = 2
MEMORY_TARGET_MB = 2048
HEADERS = ["net", "method", "minivis s/img", "captum s/img", "ratio", "check", "minivis peak MB", "captum peak MB"]


# --------------------------------------------------------------------------- models and input
def build(name: str, size: int) -> tuple[Any, torch.nn.Module, np.ndarray, int]:
    """The minivis model, its float32 PyTorch twin on the same weights, the input (1, 3, size, size), the target."""
    if name == "efficientnet_lite0":
        try:
            model = mv.models.load(name)
        except ImportError:
            model = mv.models.build(name).eval()
        twin = torch_twins.TorchEfficientNetLite()
    elif name == "fashion_cnn":
        mv.nn.init.seed(0)
        model = mv.models.build(name).eval()
        twin = torch_twins.TorchFashionCNN()
    else:
        model = torchvision_init(mv.models.build(name).eval())
        twin = torch_twins.torchvision_vgg(mv.models.VGG_CONFIGS[name])
    twin = torch_twins.twin_from_state(twin, model.state_dict(), torch.float32)
    for p in twin.parameters():
        p.requires_grad_(False)  # frozen weights on both sides (minivis methods freeze theirs)
    x = model.preprocess(mv.data.photo("chelsea"))
    if size != x.shape[-1]:  # (--quick)
        x = mv.F.interpolate(mv.tensor(x), size=(size, size), mode="bilinear").numpy()
    with mv.no_grad():
        target = int(model(mv.tensor(x)).numpy()[0].argmax())
    return model, twin, np.ascontiguousarray(x, dtype=np.float32), target


def torchvision_init(model, seed: int = 0):
    """torchvision's VGG initialisation: Kaiming-normal (fan_out, ReLU) convolutions, N(0, 0.01) linear layers,
    zero biases (PyTorch's default uniform init shrinks the signal 16 times over; logits end up ~0.02)."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("bias"):
            state[key] = np.zeros_like(value)
        elif value.ndim == 4:
            fan_out = value.shape[0] * value.shape[2] * value.shape[3]
            state[key] = (rng.standard_normal(value.shape) * np.sqrt(2.0 / fan_out)).astype(value.dtype)
        else:
            state[key] = (rng.standard_normal(value.shape) * 0.01).astype(value.dtype)
    model.load_state_dict(state)
    return model


def minivis_fn(method: str, model, x: np.ndarray, target: int, layer: str, samples: int):
    if method == "grad_cam":
        return lambda: mv.vis.grad_cam(model, x, target, layer)
    if method == "smoothgrad":
        return lambda: mv.vis.smoothgrad(model, x, target, n=samples, noise=NOISE, method="gradient",
                                         batch_size=SAMPLE_BATCH, progress=False)
    if method == "integrated_gradients":
        return lambda: mv.vis.integrated_gradients(model, x, target, steps=samples, batch_size=SAMPLE_BATCH,
                                                   progress=False)
    return lambda: getattr(mv.vis, method)(model, x, target)


def captum_fn(method: str, twin, x: np.ndarray, target: int, layer: str, samples: int):
    from captum.attr import (  # noqa: PLC0415
        Deconvolution,
        GuidedBackprop,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )

    xt = torch.tensor(x, requires_grad=True)
    size = tuple(x.shape[-2:])
    if method == "saliency":
        return lambda: Saliency(twin).attribute(xt, target=target, abs=True).amax(dim=1)
    if method == "guided_backprop":
        return lambda: GuidedBackprop(twin).attribute(xt, target=target)
    if method == "deconvnet":
        return lambda: Deconvolution(twin).attribute(xt, target=target)
    if method == "grad_cam":
        cam = LayerGradCam(twin, twin.get_submodule(layer))
        return lambda: LayerAttribution.interpolate(cam.attribute(xt, target=target, relu_attributions=True), size,
                                                    interpolate_mode="bilinear")[:, 0]
    if method == "smoothgrad":
        sigma = float(NOISE * (x.max() - x.min()))
        return lambda: NoiseTunnel(Saliency(twin)).attribute(xt, nt_type="smoothgrad", nt_samples=samples,
                                                             nt_samples_batch_size=SAMPLE_BATCH, stdevs=sigma,
                                                             target=target, abs=False)
    return lambda: IntegratedGradients(twin).attribute(xt, target=target, n_steps=samples, method="riemann_middle",
                                                       internal_batch_size=SAMPLE_BATCH)


def not_comparable(method: str, net: str) -> str | None:
    if method == "smoothgrad":
        return "n/a: different noise draws"
    if net == "efficientnet_lite0" and method in ("guided_backprop", "deconvnet"):
        return "n/a: Captum hooks nn.ReLU only (ReLU6 here)"
    return None


def float64_checks(net: str, model, twin, x: np.ndarray, target: int) -> dict[str, tuple[str, float | None]]:
    """{method: ("ok" | "MISMATCH" | "n/a: why", relative error)}, both sides in float64; the model and the
    twin are float32 again afterwards."""
    model.double()
    twin.double()
    x64 = x.astype(np.float64)
    layer = NETS[net]
    out = {}
    try:
        for method in SINGLE + MULTI:
            reason = not_comparable(method, net)
            if reason:
                out[method] = (reason, None)
                continue
            steps = CHECK_IG_STEPS
            ours = np.asarray(minivis_fn(method, model, x64, target, layer, steps)(), dtype=np.float64).reshape(-1)
            ref = captum_fn(method, twin, x64, target, layer, steps)().detach().numpy().reshape(-1)
            err = float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-300))
            out[method] = ("ok" if err < CHECK_RTOL else "MISMATCH", err)
    finally:
        model.float()
        twin.float()
    return out


# --------------------------------------------------------------------------- memory (Linux /proc)
def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS: writing 5 to clear_refs (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_child(opts: dict) -> dict:
    """One multi-sample method on one side, once, in this fresh process: seconds and peak memory above the
    RSS just before the call (a process per measurement, so no side inherits the other's heap)."""
    global SAMPLE_BATCH
    SAMPLE_BATCH = opts["sample_batch"]
    set_threads(opts["threads"])
    model, twin, x, target = build(opts["net"], opts["size"])
    layer = NETS[opts["net"]]
    net = model if opts["side"] == "minivis" else twin
    make = minivis_fn if opts["side"] == "minivis" else captum_fn
    make("saliency", net, x, target, layer, 1)()  # warm-up: Numba compiles on first use, PyTorch builds kernels
    fn = make(opts["method"], net, x, target, layer, opts["samples"])
    before = _status_mb("VmRSS")
    resettable = reset_peak()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM") if resettable else None
    return {"seconds": seconds, "peak_mb": None if peak is None or before is None else peak - before}


def run_child(args, net: str, method: str, side: str, size: int, samples: int) -> dict:
    opts = {"net": net, "method": method, "side": side, "size": size, "samples": samples, "threads": args.threads,
            "sample_batch": SAMPLE_BATCH}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(opts)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"child for {net} {method} {side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the rows
def row(net, method, ours_s, ref_s, status, err, ours_mb=None, ref_mb=None, repeat=1) -> dict:
    return {"net": net, "method": method, "minivis_s": ours_s, "captum_s": ref_s, "ratio": ref_s / ours_s,
            "check": status, "rel_err": err, "minivis_peak_mb": ours_mb, "captum_peak_mb": ref_mb, "repeat": repeat}


def single_pass_rows(net: str, size: int, quick: bool, profile: bool,
                     methods: tuple[str, ...] = SINGLE) -> tuple[list[dict], dict]:
    model, twin, x, target = build(net, size)
    layer = NETS[net]
    checks = float64_checks(net, model, twin, x, target)
    print(f"  {net}: float64 checks " + ", ".join(f"{m} {c[0]}" + (f" ({c[1]:.0e})" if c[1] is not None else "")
                                             for m, c in checks.items()), flush=True)
    rows = []
    for method in (m for m in SINGLE if m in methods):
        ours, ref = minivis_fn(method, model, x, target, layer, 1), captum_fn(method, twin, x, target, layer, 1)
        repeat = 1 if quick else 5  # interleaved rounds; the minimum counts
        ours_s, ref_s = timeit_interleaved([ours, ref], repeat=repeat, warmup=1)
        status, err = checks[method]
        rows.append(row(net, method, ours_s, ref_s, status, err, repeat=repeat))
        print(f"  {net} {method}: minivis {ours_s:.3f} s, captum {ref_s:.3f} s, ratio {ref_s / ours_s:.2f}", flush=True)
        if profile:
            print_profile(ours, f"{net} {method}")
    return rows, checks


def print_profile(fn, title: str, top: int = 14) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    print(f"--- cProfile of minivis {title} (sorted by own time)\n" + text.getvalue())


def multi_rows(args, net: str, size: int, samples: int, checks: dict, methods: tuple[str, ...] = MULTI,
               rounds: int = 3) -> list[dict]:
    """SmoothGrad and IG: ``rounds`` rounds of one fresh child per side (minivis, then Captum); the
    fastest call of each side counts, and the largest peak (a single call per process swings by
    20-60% on this VM, mostly on the side of the slower calls)."""
    rows = []
    for method in (m for m in MULTI if m in methods):
        runs: dict[str, list[dict]] = {"minivis": [], "captum": []}
        for _ in range(rounds):
            for side in runs:
                runs[side].append(run_child(args, net, method, side, size, samples))
        m, c = ({"seconds": min(r["seconds"] for r in runs[side]),
                 "peak_mb": max((r["peak_mb"] for r in runs[side] if r["peak_mb"] is not None), default=None)}
                for side in runs)
        status, err = checks[method]
        rows.append(row(net, method, m["seconds"], c["seconds"], status, err, m["peak_mb"], c["peak_mb"], rounds))
        calls = {side: " ".join(f"{r['seconds']:.2f}" for r in runs[side]) for side in runs}
        print(f"  {net} {method} ({samples} samples): minivis {m['seconds']:.2f} s, captum {c['seconds']:.2f} s "
              f"(fastest of {calls['minivis']} / {calls['captum']}), "
              f"peak MB minivis {fmt(m['peak_mb'], 0)} captum {fmt(c['peak_mb'], 0)}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    global SAMPLE_BATCH  # --sample-batch sets it for minivis_fn/captum_fn (and is passed on to the child)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(measure_child(json.loads(argv[1]))))
        return 0
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--profile", action="store_true", help="print a cProfile of each minivis single-pass method")
    extra.add_argument("--samples", type=int, default=None, help="SmoothGrad samples / IG steps (default 50)")
    extra.add_argument("--sample-batch", type=int, default=SAMPLE_BATCH,
                       help="noisy copies / path points per batched pass (default %(default)s)")
    extra.add_argument("--rounds", type=int, default=None,
                       help="fresh-process rounds per side for SmoothGrad/IG, fastest counts (default 3; --quick 1)")
    extra.add_argument("--nets", default=None,
                       help="comma-separated networks to run (default: efficientnet_lite0,vgg16)")
    extra.add_argument("--methods", default=None,
                       help=f"comma-separated methods to time (default: all of {', '.join(SINGLE + MULTI)}); "
                            "the float64 checks still run")
    known, rest = extra.parse_known_args(argv)
    args = parse_args(__doc__.splitlines()[0], topic="attribution", argv=rest)
    dev = setup(args)
    if dev.name != "cpu":
        sys.exit("attribution.py: only --device cpu is implemented (Captum runs on the CPU here)")
    started = time.perf_counter()
    SAMPLE_BATCH = known.sample_batch
    sizes = {"fashion_cnn": 28} if args.quick else {"efficientnet_lite0": 224, "vgg16": 224}
    if known.nets:
        sizes = {net: sizes.get(net, 224) for net in known.nets.split(",")}
    methods = tuple(known.methods.split(",")) if known.methods else SINGLE + MULTI
    if unknown := [m for m in methods if m not in SINGLE + MULTI] + [n for n in sizes if n not in NETS]:
        sys.exit(f"attribution.py: unknown net or method {unknown}")
    samples = known.samples or (4 if args.quick else 50)
    print(f"{dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba); sizes {sizes}; "
          f"{samples} samples/steps, batches of {SAMPLE_BATCH}")
    rows = []
    rounds = known.rounds or (1 if args.quick else 3)
    for net, size in sizes.items():
        single, checks = single_pass_rows(net, size, args.quick, known.profile, methods)
        rows += single + multi_rows(args, net, size, samples, checks, methods, rounds)

    table = [[r["net"], r["method"], r["minivis_s"], r["captum_s"], r["ratio"],
              r["check"] + (f" ({r['rel_err']:.0e})" if r["rel_err"] is not None else ""),
              r["minivis_peak_mb"], r["captum_peak_mb"]] for r in rows]
    print("\nratio = captum_time / minivis_time: > 1 means minivis is faster")
    print_table(HEADERS, table)
    mismatches = [r for r in rows if r["check"] == "MISMATCH"]
    memory = {r["method"]: r["minivis_peak_mb"] for r in rows if r["net"] == "vgg16" and r["method"] in MULTI}
    payload = {"ratio_definition": "captum_time / minivis_time (> 1: minivis faster)", "sizes": sizes,
               "samples": samples, "sample_batch": SAMPLE_BATCH, "rounds": rounds,
               "check": {"dtype": "float64", "rtol_l2": CHECK_RTOL, "ig_steps": CHECK_IG_STEPS},
               "memory_target_mb": MEMORY_TARGET_MB, "vgg16_streaming_peak_mb": memory,
               "rows": rows, "errors": len(mismatches), "elapsed_s": time.perf_counter() - started}
    load = ""
    if getattr(args, "loadavg_at_start", None) is not None:
        load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at "
                "the end (other processes only add time).")
    lines = [f"Measured on {dev.description} ({os.cpu_count()} cores), {args.threads} threads on both sides, "
             f"float32, one 224 px photo, seconds per image "
             f"(`{' '.join(['python', 'benchmarks/attribution.py', *argv])}`). Single-pass methods: interleaved, "
             f"min of 5. SmoothGrad/IG: {samples} samples in batches of {SAMPLE_BATCH}, one call per fresh process, "
             f"{rounds} rounds of a process per side, the fastest call counting, with the largest peak RSS above "
             f"the process's RSS before the call (target for VGG16: "
             f"< {MEMORY_TARGET_MB} MB). check: the float64 outputs of both sides, ||a - b|| / ||b|| (IG with "
             f"{CHECK_IG_STEPS} steps). ratio = Captum time / minivis time." + load,
             "", markdown_table(HEADERS, table)]
    finish(args, dev, payload, "\n".join(lines))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
