"""Top-k mining benchmark: streaming the Fashion-MNIST training set through fashion_cnn with
``mv.vis.top_activations`` against the same network's plain forward pass in PyTorch.

    python benchmarks/mining.py              # full run: 10k and 60k images, results/mining-cpu.json + README
    python benchmarks/mining.py --quick      # smoke test (a few hundred images)

For each dataset size n (the first n training images, uint8, in batches of 256) it times, with
the same threads on both sides:

* torch forward: ``TorchFashionCNN`` (tests/torch_twins.py, same weights) under ``no_grad``, each
  uint8 batch normalised to float on the fly, logits computed and dropped;
* minivis forward: the same loop through minivis (``model.preprocess`` + ``model(x)`` in eval mode),
  at the first size only in a full run (it gives the mining overhead; 60k more images of it would
  add most of an hour on a small machine);
* minivis mining: ``top_activations(model, images, 4 ReLU layers, k=9, crop=True)``: the whole
  user-visible call, the top-9 images and patches of every channel of features.1/.3/.6/.8 and
  the receptive-field crops of every top patch.

Throughput is images per second; **ratio = mining throughput / torch forward throughput** (the
target is >= 0.8: mining should add almost nothing to a forward pass). Peak memory is the
tracemalloc peak (NumPy allocations) during a second, untimed mining call, which must stay flat
in n: the miner holds one batch of activations and O(C k) numbers per layer, never
N x C x H x W. The timed calls are not traced: tracemalloc takes the GIL on every NumPy
allocation, which slows minivis's worker threads (measured: +18% on 5,120 images). Each pass
runs once per size, the three in turn, so they see the same machine load as far as possible.

Before timing, minivis's logits are compared with torch's (float32, rtol 1e-4) and the miner's
result on the first images with a brute-force pass that stores every activation and sorts.
Weights: the shipped ``fashion_cnn`` weights when present, else a seeded random init (mining
costs the same either way; the record says which).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from common import (
    Device,
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

LAYERS = ["features.1", "features.3", "features.6", "features.8"]  # the four ReLU outputs
K = 9
BATCH, QUICK_BATCH = 256, 16
FULL_SIZES = (10_000, 60_000)
QUICK_SIZES = (32, 96)  # several batches each, so even --quick shows whether memory stays flat
RTOL, ATOL_SCALE = 1e-4, 1e-5


class Mismatch(Exception):
    pass


def load_model():
    import minivis as mv  # noqa: PLC0415

    try:
        return mv.models.load("fashion_cnn"), "shipped fashion_cnn weights"
    except FileNotFoundError:
        mv.nn.init.seed(0)
        return mv.models.FashionCNN().eval(), "random init (mv.nn.init.seed(0)); no shipped weights yet"


def forward_flops(model) -> int:
    """FLOPs of one 28x28 image through the whole network: 2 x multiply-adds of every conv and linear."""
    import minivis as mv  # noqa: PLC0415

    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, mv.nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * output.size * (module.in_channels // module.groups) * kh * kw
        else:
            total += 2 * output.size * module.in_features

    modules = [m for m in model.modules() if isinstance(m, mv.nn.Conv2d | mv.nn.Linear)]
    handles = [m.register_forward_hook(count) for m in modules]
    with mv.no_grad():
        model(mv.tensor(np.zeros((1, 1, 28, 28), np.float32)))
    for h in handles:
        h.remove()
    return total


def check(model, twin, images, quick: bool) -> dict:
    """minivis logits == torch logits; the streamed miner == a brute-force pass over stored activations."""
    import torch  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415
    from minivis.kernels.cpu_topk import naive_topk  # noqa: PLC0415
    from minivis.vis.features.top_activations import top_activations  # noqa: PLC0415

    x = model.preprocess(images[:32])
    with mv.no_grad():
        ours = model(mv.tensor(x)).data
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    scale = float(np.abs(ref).max())
    err = float(np.abs(ours - ref).max())
    if not np.allclose(ours, ref, rtol=RTOL, atol=ATOL_SCALE * max(scale, 1.0)):
        raise Mismatch(f"logits: max |minivis - torch| = {err:.3g}")
    n, batch = (24, 8) if quick else (96, 32)
    got = top_activations(model, images[:n], LAYERS, k=K, batch_size=batch, crop=False)
    acts = {name: [] for name in LAYERS}
    with mv.no_grad():
        for start in range(0, n, batch):
            with mv.nn.capture(model, LAYERS) as out:
                model(mv.tensor(model.preprocess(images[start:start + batch])))
            for name in LAYERS:
                acts[name].append(out[name].data)
    for name in LAYERS:
        a = np.concatenate(acts[name])
        a = a.reshape(a.shape[0], a.shape[1], -1)
        val, idx = naive_topk(a.transpose(1, 0, 2).reshape(a.shape[1], -1), K)
        img_val, img_idx = naive_topk(a.max(axis=2).T, K)
        if not (np.array_equal(got[name].patch_index, idx // a.shape[2])
                and np.array_equal(got[name].patch_value, val) and np.array_equal(got[name].image_index, img_idx)):
            raise Mismatch(f"{name}: the streamed top-{K} differs from the brute-force pass")
    return {"logits_max_abs_err": err, "miner_vs_brute_force": f"equal on {n} images, {len(LAYERS)} layers"}


def torch_forward_loop(twin, images, batch: int, mean: float, std: float):
    import torch  # noqa: PLC0415

    def run():
        with torch.no_grad():
            for start in range(0, len(images), batch):
                x = torch.from_numpy(images[start:start + batch].copy()).unsqueeze(1).float().div_(255)
                twin(x.sub_(mean).div_(std))
    return run


def minivis_forward_loop(model, images, batch: int):
    import minivis as mv  # noqa: PLC0415
    from minivis.vis.features.activations import inference  # noqa: PLC0415

    def run():
        with inference(model):
            for start in range(0, len(images), batch):
                model(mv.tensor(model.preprocess(images[start:start + batch])))
    return run


def mining(model, images, batch: int) -> None:
    """One top_activations call: the user-visible mining of LAYERS, crops included."""
    from minivis.vis.features.top_activations import top_activations  # noqa: PLC0415

    top_activations(model, images, LAYERS, k=K, batch_size=batch, crop=True)


def mining_peak_mb(model, images, batch: int) -> float:
    """tracemalloc peak (MB above the start) of one mining call (untimed: tracing slows it)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    mining(model, images, batch)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 1e6


def stored_activations_mb(model, n: int) -> float:
    """What keeping every activation of the mined layers for n images would take (float32), for scale."""
    from minivis.vis.features.activations import activations  # noqa: PLC0415

    per_image = sum(activations(model, np.zeros((1, 28, 28), np.float32), name).size for name in LAYERS)
    return 4.0 * per_image * n / 1e6


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], topic="mining", argv=argv)
    dev = setup(args)
    if dev.name != "cpu":
        sys.exit("mining.py: only the CPU path is benchmarked (the miner copies GPU maps to the host)")
    import minivis as mv  # noqa: PLC0415
    from tests.torch_twins import TorchFashionCNN, twin_from_state  # noqa: PLC0415

    started = time.perf_counter()
    print(f"{dev.name}: {dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba)")
    first_peak = sgemm_peak(dev, quick=args.quick)
    model, weights = load_model()
    twin = twin_from_state(TorchFashionCNN(), model.state_dict())
    images = mv.data.fashion_mnist("train")[0]
    flops = forward_flops(model)
    try:
        checked = check(model, twin, images, args.quick)
    except Mismatch as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"weights: {weights}; checks: {checked}")

    sizes, batch = (QUICK_SIZES, QUICK_BATCH) if args.quick else (FULL_SIZES, BATCH)
    # Warm-up on one batch of each side (Numba loads its cache, torch creates its primitives).
    first = images[:batch]
    for warm in (torch_forward_loop(twin, first, batch, model.mean[0], model.std[0]),
                 minivis_forward_loop(model, first, batch), lambda: mining(model, first, batch)):
        warm()
    rows = []
    for n in sizes:
        subset = images[:n]
        # One pass of 60k images takes minutes, so each side runs once per size; the three run in
        # turn (torch, minivis forward, mining) so that they share the machine's load as evenly as
        # possible (timeit_interleaved's idea at the granularity of whole passes).
        repeat = 1

        def mine(subset=subset):
            mining(model, subset, batch)

        # minivis's plain forward pass (for the mining overhead) only at the first size of a full run:
        # a 60k-image pass of it would add most of an hour on a small machine and say nothing new.
        plain = args.quick or n == sizes[0]
        fns = [torch_forward_loop(twin, subset, batch, model.mean[0], model.std[0]), mine]
        fns += [minivis_forward_loop(model, subset, batch)] if plain else []
        torch_s, mine_s, *rest = timeit_interleaved(fns, repeat=repeat, warmup=0)
        mv_s = rest[0] if plain else None
        peak_mb = mining_peak_mb(model, subset, batch)
        row = {"n": n, "torch_forward_s": torch_s, "minivis_forward_s": mv_s, "mining_s": mine_s,
               "torch_img_per_s": n / torch_s, "minivis_img_per_s": n / mv_s if mv_s else None,
               "mining_img_per_s": n / mine_s, "ratio_vs_torch": torch_s / mine_s,
               "mining_overhead": mine_s / mv_s - 1.0 if mv_s else None,
               "torch_gflops": flops * n / torch_s / 1e9, "minivis_gflops": flops * n / mv_s / 1e9 if mv_s else None,
               "mining_gflops": flops * n / mine_s / 1e9,
               "peak_mb": peak_mb, "stored_activations_mb": stored_activations_mb(model, n), "repeat": repeat,
               "batch_size": batch}
        rows.append(row)
        print(f"n={n}: torch {torch_s:.1f} s, minivis forward {mv_s and round(mv_s, 1)} s, mining {mine_s:.1f} s, "
              f"peak {peak_mb:.1f} MB", flush=True)
    peak = best_peak(first_peak, sgemm_peak(dev, quick=args.quick))
    for row in rows:
        row["mining_pct_peak"] = 100.0 * row["mining_gflops"] / peak["peak_gflops"]
    flat = rows[-1]["peak_mb"] / rows[0]["peak_mb"] if rows[0]["peak_mb"] > 0 else None

    print()
    print_table(HEADERS, table_rows(rows), title=f"top-{K} mining of {len(LAYERS)} layers, fashion_cnn, batch {batch}")
    print(f"\nratio = torch forward time / mining time (target >= 0.8); peak memory {rows[-1]['n']} vs "
          f"{rows[0]['n']} images: x{flat:.2f}" if flat else "")
    payload = {"sgemm": peak, "weights": weights, "layers": LAYERS, "k": K, "batch_size": batch,
               "forward_flops_per_image": flops, "checks": checked, "rows": rows, "peak_memory_ratio": flat,
               "ratio_definition": "torch forward time / minivis mining time (> 1: mining faster)",
               "target_ratio": 0.8, "elapsed_s": time.perf_counter() - started}
    finish(args, dev, payload, readme_markdown(args, dev, peak, rows, weights, flat),
           heading="Top-k mining, CPU")
    return 0


HEADERS = ["images", "torch fwd s", "minivis fwd s", "mining s", "mining img/s", "ratio vs torch",
           "overhead vs own fwd", "mining GFLOP/s", "% peak", "peak MB", "all maps MB"]


def table_rows(rows: list[dict]) -> list[list]:
    return [[r["n"], r["torch_forward_s"], r["minivis_forward_s"], r["mining_s"], round(r["mining_img_per_s"], 1),
             r["ratio_vs_torch"], None if r["mining_overhead"] is None else f"{100 * r['mining_overhead']:+.0f}%",
             r["mining_gflops"], r["mining_pct_peak"], r["peak_mb"], round(r["stored_activations_mb"])] for r in rows]


def readme_markdown(args, dev: Device, peak: dict, rows: list[dict], weights: str, flat: float | None) -> str:
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    load = ""
    if getattr(args, "loadavg_at_start", None) is not None:
        load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start and "
                f"{os.getloadavg()[0]:.1f} at the end (other processes only add time).")
    return "\n".join([
        f"Measured on {dev.description} ({os.cpu_count()} cores), {args.threads} threads, numpy {np.__version__}, "
        f"torch {torch.__version__}, numba {numba.__version__}; SGEMM float32 peak (np.matmul) "
        f"{peak['peak_gflops']:.1f} GFLOP/s.{load} Weights: {weights}.",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Top-{K} images and patches of every channel of {', '.join(LAYERS)} (crops included), first n "
        f"Fashion-MNIST training images in batches of {rows[0]['batch_size']}. "
        f"ratio = torch forward time / mining time (target >= 0.8); "
        f"overhead = mining time / minivis forward time - 1 (mining stops after features.8, so it can be "
        f"below 0; minivis's plain forward is timed at the first size only); mining GFLOP/s counts the whole "
        f"network's forward FLOPs per image; peak MB = tracemalloc peak during mining; all maps MB = what "
        f"storing every activation of those layers would take.",
        "",
        markdown_table(HEADERS, table_rows(rows)),
        "",
        f"Peak memory at {rows[-1]['n']} images is x{flat:.2f} the peak at {rows[0]['n']}." if flat else "",
    ])


if __name__ == "__main__":
    sys.exit(main())
