"""Projection benchmark: Zeiler & Fergus's figure for every channel of fashion_cnn's last conv layer
(``mv.vis.project_top_activations``) against the same computation written in PyTorch.

    python benchmarks/projections.py            # full run: the 10k test set, results/projections-cpu.json + README
    python benchmarks/projections.py --quick    # smoke test (a few hundred images, k = 3)

The task (issue 15's target: under 60 s on 2 cores): stream the Fashion-MNIST test set (uint8,
batches of 256) through ``fashion_cnn`` up to ``features.8`` (the ReLU of the last convolution,
64 channels on a 14x14 map), keep the top-9 activations of every channel, and project each of
the 64 x 9 units to the pixels by the DeconvNet and by guided backprop, cropped to its receptive
field beside its image patch.

* minivis: one ``project_top_activations(model, images, "features.8", k=9, rules=("deconvnet",
  "guided"))`` call, the whole user-visible method (mining, the two projections, every crop);
  also timed apart: its mining pass (``top_activations``, crop=False).
* PyTorch: the twin (tests/torch_twins.py, same weights) cut at features.8: a no_grad pass with a
  running top-k per channel (a stable ``torch.sort``: ties to the earlier image and position),
  then the 576 winning images in batches of 256 through an autograd pass seeded at each row's
  unit, with backward hooks on the ReLUs that apply the DeconvNet / guided rule (Captum's way),
  and the crops of the projections and patches.

Both are checked equal before timing (values, indices, projections rtol 1e-4). The minimum over
``repeat`` interleaved calls is reported; ratio = torch time / minivis time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    best_peak,
    command_line,
    finish,
    markdown_table,
    parse_args,
    print_table,
    setup,
    sgemm_peak,
    timeit_interleaved,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/torch_twins.py, the torch reference

LAYER, STOP = "features.8", 9  # twin.features[:9] ends with that ReLU
K, QUICK_K = 9, 3
BATCH, QUICK_BATCH = 256, 64
RULES = ("deconvnet", "guided")
RTOL = 1e-4


class Mismatch(Exception):
    pass


def torch_projections(twin, images: np.ndarray, k: int, batch: int, mean: float, std: float, rf) -> dict:
    """The same figure in PyTorch: streamed top-k per channel, then the seeded backward under each rule."""
    import torch  # noqa: PLC0415

    body = twin.features[:STOP]

    def inputs(chunk):
        return torch.from_numpy(chunk.copy()).unsqueeze(1).float().div_(255).sub_(mean).div_(std)

    best_val = best_idx = None
    with torch.no_grad():
        for start in range(0, len(images), batch):
            a = body(inputs(images[start:start + batch]))  # (B, C, h, w)
            b, c, h, w = a.shape
            flat = a.permute(1, 0, 2, 3).reshape(c, -1)  # (C, B*h*w), global index = start*h*w + column
            idx = torch.arange(start * h * w, (start + b) * h * w).expand(c, -1)
            if best_val is not None:
                flat, idx = torch.cat([best_val, flat], 1), torch.cat([best_idx, idx], 1)
            # A stable sort, not torch.topk: uniform image regions give equal activations at several
            # positions, and topk breaks such ties arbitrarily. Columns are in dataset order (the
            # running best first), so a stable descending sort gives ties to the earlier image and
            # position, as minivis does.
            best_val, order = torch.sort(flat, dim=1, descending=True, stable=True)
            best_val, order = best_val[:, :k], order[:, :k]
            best_idx = torch.gather(idx, 1, order)
    positions = h * w
    image, pos = best_idx // positions, best_idx % positions
    unit_c = torch.arange(c).repeat_interleave(k)
    unit_y, unit_x = (pos // w).reshape(-1), (pos % w).reshape(-1)
    flat_image = image.reshape(-1)
    out = {}
    for rule in RULES:
        def hook(module, grad_in, grad_out, rule=rule):
            return (grad_out[0].clamp(min=0),) if rule == "deconvnet" else (grad_in[0].clamp(min=0),)
        relus = [m for m in body if isinstance(m, torch.nn.ReLU)]
        handles = [m.register_full_backward_hook(hook) for m in relus]
        maps = []
        for lo in range(0, len(flat_image), batch):
            rows = slice(lo, lo + batch)
            x = inputs(images[flat_image[rows].numpy()]).requires_grad_(True)
            a = body(x)
            seed = torch.zeros_like(a)
            r = torch.arange(len(x))
            seed[r, unit_c[rows], unit_y[rows], unit_x[rows]] = a.detach()[r, unit_c[rows], unit_y[rows], unit_x[rows]]
            a.backward(seed)
            maps.append(x.grad.numpy())
        for handle in handles:
            handle.remove()
        full = np.concatenate(maps)
        out[rule] = crop(full, unit_y.numpy(), unit_x.numpy(), rf).reshape(c, k, *crop_shape(rf))
    out["values"], out["image"] = best_val.numpy(), image.numpy()
    out["location"] = np.stack([(pos // w).numpy(), (pos % w).numpy()], axis=-1)
    out["patches"] = crop(inputs(images[flat_image.numpy()]).numpy(), unit_y.numpy(), unit_x.numpy(),
                          rf).reshape(c, k, *crop_shape(rf))
    return out


def crop_shape(rf) -> tuple[int, int, int]:
    return (1, *rf.size)


def crop(maps: np.ndarray, ys: np.ndarray, xs: np.ndarray, rf) -> np.ndarray:
    """Receptive-field boxes of (M, 1, 28, 28) maps, NaN outside the image (as minivis's crops)."""
    pad = max(rf.size)
    padded = np.pad(maps.astype(np.float32), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    out = np.empty((len(maps), 1, *rf.size), np.float32)
    for m, (y, x) in enumerate(zip(ys, xs, strict=True)):
        top, left = rf.start[0] + y * rf.jump[0] + pad, rf.start[1] + x * rf.jump[1] + pad
        out[m] = padded[m, :, top:top + rf.size[0], left:left + rf.size[1]]
    return out


def check(ours, ref) -> dict:
    if not (np.array_equal(ours.image_index, ref["image"]) and np.array_equal(ours.location, ref["location"])):
        raise Mismatch("the top-k images or positions differ from PyTorch's")
    np.testing.assert_allclose(ours.values, ref["values"], rtol=RTOL)
    errors = {}
    for rule in RULES:
        scale = np.nanmax(np.abs(ref[rule]))
        err = float(np.nanmax(np.abs(ours.projections[rule] - ref[rule])))
        if not np.allclose(ours.projections[rule], ref[rule], rtol=RTOL, atol=RTOL * scale, equal_nan=True):
            raise Mismatch(f"{rule} projections: max |minivis - torch| = {err:.3g} (largest {scale:.3g})")
        errors[rule] = err / scale
    if not np.allclose(ours.patches, ref["patches"], rtol=1e-6, atol=1e-6, equal_nan=True):
        raise Mismatch("patches differ")
    return {"top_k": "identical images and positions", "max_rel_err": errors}


HEADERS = ["images", "channels x k", "minivis s", "of which mining s", "torch s", "ratio", "target s"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="projections", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        sys.exit("projections.py: only the CPU path is benchmarked")
    import minivis as mv  # noqa: PLC0415
    from tests.torch_twins import TorchFashionCNN, twin_from_state  # noqa: PLC0415

    started = time.perf_counter()
    print(f"{dev.name}: {dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba)")
    first_peak = sgemm_peak(dev, quick=args.quick)
    model = mv.models.load("fashion_cnn")
    twin = twin_from_state(TorchFashionCNN(), model.state_dict())
    images = mv.data.fashion_mnist("test")[0]
    k, batch = (QUICK_K, QUICK_BATCH) if args.quick else (K, BATCH)
    if args.quick:
        images = images[:256]
    rf = mv.vis.receptive_field(model, LAYER, (28, 28))

    def ours():
        return mv.vis.project_top_activations(model, images, LAYER, k=k, rules=RULES, batch_size=batch)

    def mining():
        return mv.vis.top_activations(model, images, LAYER, k=k, batch_size=batch, crop=False)

    def reference():
        return torch_projections(twin, images, k, batch, model.mean[0], model.std[0], rf)

    try:
        checked = check(ours(), reference())
    except (Mismatch, AssertionError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"checks: {checked}")
    repeat = 2 if args.quick else 3
    ours_s, mining_s, torch_s = timeit_interleaved([ours, mining, reference], repeat=repeat, warmup=0)
    peak = best_peak(first_peak, sgemm_peak(dev, quick=args.quick))
    row = {"n": len(images), "channels": 64, "k": k, "minivis_s": ours_s, "mining_s": mining_s, "torch_s": torch_s,
           "ratio": torch_s / ours_s, "target_s": 60.0, "batch_size": batch, "repeat": repeat}
    rows = [[row["n"], f"64 x {k}", ours_s, mining_s, torch_s, row["ratio"], 60.0]]
    print()
    print_table(HEADERS, rows, title=f"top-{k} DeconvNet + guided projections of every channel of {LAYER}")
    payload = {"sgemm": peak, "layer": LAYER, "rules": list(RULES), "checks": checked, "rows": [row],
               "ratio_definition": "torch time / minivis time (> 1: minivis faster)",
               "elapsed_s": time.perf_counter() - started}
    load = ""
    if getattr(args, "loadavg_at_start", None) is not None:
        load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start and {os.getloadavg()[0]:.1f} at "
                f"the end (other processes only add time).")
    markdown = "\n".join([
        f"Measured on {dev.description} ({os.cpu_count()} cores), {args.threads} threads; min of {repeat} "
        f"interleaved calls.{load}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Top-{k} activations of every channel of fashion_cnn's `{LAYER}` over the Fashion-MNIST test set, each "
        f"projected by the DeconvNet and guided backprop and cropped to its receptive field beside its patch "
        f"(`mv.vis.project_top_activations`, batches of {batch}), against the same computation in PyTorch "
        f"(streamed top-k by a stable `torch.sort`, seeded backward with ReLU backward hooks); outputs checked "
        f"equal first. ratio = torch / minivis. Target: under 60 s on 2 cores.",
        "",
        markdown_table(HEADERS, rows),
    ])
    finish(args, dev, payload, markdown, heading="Projections, CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
