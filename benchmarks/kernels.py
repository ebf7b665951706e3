"""Kernel benchmark: minivis conv2d and max_pool2d against PyTorch, layer by layer.

    python benchmarks/kernels.py              # full run: results/kernels-cpu.json + README table
    python benchmarks/kernels.py --quick      # smoke test (tiny sizes, seconds)
    python benchmarks/kernels.py --only pool --readme none   # the max-pool rows only
    python benchmarks/kernels.py --device gpu # CuPy + Numba-CUDA vs PyTorch CUDA (cuDNN), see gpu_main

For every layer of a small table of real CNN layers (CIFAR, VGG, AlexNet, depthwise, 1x1,
LeNet-like 5x5) it times, in float32 with the same threads on both sides:

* forward: ``y = F.conv2d(x, w, b, ...)`` on tensors that do not require grad (inference);
* fwd+bwd: the user-visible training call path ``y = F.conv2d(x, w, b); y.backward(g)`` with
  x, w, b requiring grad and a random upstream gradient g, graph overhead included; the
  ``.grad`` fields are cleared before each call on both sides so neither accumulates.

and the same for max-pooling (2x2 stride 2, and 3x3 stride 2 padding 1). Before timing a row,
its outputs and all gradients are compared with PyTorch; a row that disagrees is reported and
not timed, so the benchmark never times a wrong result.

Columns: ratio = torch_time / minivis_time (> 1 means minivis is faster). Conv FLOPs are
2 N C_out H_out W_out (C_in/groups) kh kw for the forward and three times that for fwd+bwd
(the input and weight gradients are one GEMM-sized product each); "% peak" is the achieved rate
over the measured np.matmul float32 GEMM rate (the roofline minivis's GEMMs can reach).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from common import (
    Device,
    auto_repeat,
    best_peak,
    command_line,
    finish,
    geomean,
    markdown_table,
    parse_args,
    print_table,
    setup,
    sgemm_peak,
    timeit,
    timeit_interleaved,
)

RTOL = 1e-4         # float32 parity with torch, as in the test suite
ATOL_SCALE = 1e-5   # absolute tolerance relative to the largest reference value (float32 sums)
BUDGET_S = 1.5      # timing budget per row and side, full run
PAUSE_S = 0.2       # CPU: rest before each timed call, so the other side's spinning threads are idle
PAUSED_REPEAT = 12  # ... and at most this many rounds then


# --------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class ConvCase:
    """One conv layer: x (n, c_in, h, w) * w (c_out, c_in/groups, k, k), stride, padding, groups."""

    name: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    k: int
    stride: int = 1
    pad: int = 0
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.h + 2 * self.pad - self.k) // self.stride + 1,
                (self.w + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def flops(self) -> int:
        """Forward multiply-adds times two: 2 N C_out H_out W_out (C_in/groups) k k."""
        ho, wo = self.out_hw
        return 2 * self.n * self.c_out * ho * wo * (self.c_in // self.groups) * self.k * self.k

    @property
    def shape(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (f"N{self.n} {self.c_in}->{self.c_out} {self.h}x{self.w} "
                f"k{self.k} s{self.stride} p{self.pad}{g}")

    def quick(self) -> ConvCase:
        """Tiny version for --quick: batch <= 2 and a quarter of the image side."""
        side = max(self.k + self.stride, self.h // 4)
        return replace(self, n=min(self.n, 2), h=side, w=side)


@dataclass(frozen=True)
class PoolCase:
    """Max-pool of x (n, c, h, w) with a k x k window, stride and padding."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    stride: int
    pad: int = 0

    @property
    def shape(self) -> str:
        return f"N{self.n} C{self.c} {self.h}x{self.w} k{self.k} s{self.stride} p{self.pad}"

    def quick(self) -> PoolCase:
        return replace(self, n=min(self.n, 2), c=min(self.c, 8), h=16, w=16)


CONV_CASES = [
    ConvCase("cifar conv1", 32, 3, 32, 32, 32, 3, 1, 1),
    ConvCase("cifar conv2", 32, 32, 32, 32, 32, 3, 1, 1),
    ConvCase("vgg 64", 8, 64, 56, 56, 64, 3, 1, 1),
    ConvCase("vgg 128", 8, 128, 28, 28, 128, 3, 1, 1),
    ConvCase("vgg 256 (large)", 4, 256, 28, 28, 256, 3, 1, 1),
    ConvCase("alexnet conv1", 8, 3, 224, 224, 64, 11, 4, 2),
    ConvCase("depthwise 32", 8, 32, 112, 112, 32, 3, 1, 1, groups=32),
    ConvCase("depthwise 144", 8, 144, 56, 56, 144, 3, 1, 1, groups=144),
    ConvCase("pointwise 1x1", 8, 64, 28, 28, 128, 1, 1, 0),
    ConvCase("lenet 5x5", 64, 1, 28, 28, 32, 5, 1, 2),
    ConvCase("style out 16->3 9x9", 1, 16, 256, 256, 3, 9, 1, 4),  # few output channels: the direct kernels
    ConvCase("decoder out 32->1", 64, 32, 28, 28, 1, 3, 1, 1),
]

POOL_CASES = [
    PoolCase(f"{label} {k}x{k}s{s}", n, c, hw, hw, k, s, p)
    for label, n, c, hw in [("vgg 64@112", 8, 64, 112), ("vgg 128@56", 8, 128, 56),
                            ("cifar 32@32", 32, 32, 32)]
    for k, s, p in [(2, 2, 0), (3, 2, 1)]
]


# --------------------------------------------------------------------------- verification
class Mismatch(Exception):
    pass


def compare(what: str, got: Any, want: Any, dev: Device) -> float:
    """Max abs difference of ``got`` against the torch reference ``want``; raises Mismatch if not close.

    float32 tolerance as in the parity tests: rtol 1e-4, plus an absolute term scaled by the
    largest reference value (a K-term float32 sum carries rounding error relative to its scale).
    """
    if got is None:
        raise Mismatch(f"{what}: minivis gave no result (None)")
    a, b = dev.to_numpy(got), dev.to_numpy(want)
    if a.shape != b.shape:
        raise Mismatch(f"{what}: shape {a.shape}, torch gives {b.shape}")
    if a.dtype != b.dtype:
        raise Mismatch(f"{what}: dtype {a.dtype}, torch gives {b.dtype}")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    err = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
    if not np.allclose(a, b, rtol=RTOL, atol=ATOL_SCALE * max(scale, 1.0)):
        raise Mismatch(f"{what}: max |minivis - torch| = {err:.3g} (largest |torch| value {scale:.3g})")
    return err


# --------------------------------------------------------------------------- one row
@dataclass
class Bench:
    """The four callables of one case, and a check that runs them once against torch."""

    mv_forward: Callable[[], Any]
    torch_forward: Callable[[], Any]
    mv_step: Callable[[], Any]
    torch_step: Callable[[], Any]
    check: Callable[[], float]


def conv_bench(case: ConvCase, dev: Device, rng: np.random.Generator) -> Bench:
    import torch  # noqa: PLC0415
    import torch.nn.functional as tF  # noqa: N812, PLC0415

    import minivis as mv  # noqa: PLC0415

    fan_in = case.c_in // case.groups * case.k * case.k
    x = rng.standard_normal((case.n, case.c_in, case.h, case.w), dtype=np.float32)
    w = (rng.standard_normal((case.c_out, case.c_in // case.groups, case.k, case.k), dtype=np.float32)
         / np.float32(np.sqrt(fan_in)))
    b = rng.standard_normal(case.c_out, dtype=np.float32)
    g = rng.standard_normal((case.n, case.c_out, *case.out_hw), dtype=np.float32)
    kw = {"stride": case.stride, "padding": case.pad, "groups": case.groups}

    # inference inputs (no grad) and training inputs (grad on x, w, b), on both sides
    mx, mw, mb = (dev.minivis_tensor(a) for a in (x, w, b))
    tx, tw, tb = (dev.torch_tensor(a) for a in (x, w, b))
    gx, gw, gb = (dev.minivis_tensor(a, requires_grad=True) for a in (x, w, b))
    sx, sw, sb = (dev.torch_tensor(a, requires_grad=True) for a in (x, w, b))
    mg, tg = dev.array(g), dev.torch_tensor(g)

    def mv_step():
        gx.grad = gw.grad = gb.grad = None
        y = mv.F.conv2d(gx, gw, gb, **kw)
        y.backward(mg)
        return y

    def torch_step():
        sx.grad = sw.grad = sb.grad = None
        y = tF.conv2d(sx, sw, sb, **kw)
        y.backward(tg)
        return y

    def check() -> float:
        with torch.no_grad():
            want = tF.conv2d(tx, tw, tb, **kw)
        err = compare("forward", mv.F.conv2d(mx, mw, mb, **kw), want, dev)
        y, ty = mv_step(), torch_step()
        err = max(err, compare("forward (grad mode)", y, ty, dev))
        for name, m, t in (("grad x", gx, sx), ("grad w", gw, sw), ("grad b", gb, sb)):
            err = max(err, compare(name, m.grad, t.grad, dev))
        return err

    return Bench(lambda: mv.F.conv2d(mx, mw, mb, **kw), lambda: tF.conv2d(tx, tw, tb, **kw),
                 mv_step, torch_step, check)


def pool_bench(case: PoolCase, dev: Device, rng: np.random.Generator) -> Bench:
    import torch.nn.functional as tF  # noqa: N812, PLC0415

    import minivis as mv  # noqa: PLC0415

    # A permutation of distinct values: no ties inside a window, so switches are unambiguous.
    size = case.n * case.c * case.h * case.w
    x = (rng.permutation(size).astype(np.float32) / np.float32(size)).reshape(case.n, case.c, case.h, case.w)
    kw = {"stride": case.stride, "padding": case.pad}
    mx, tx = dev.minivis_tensor(x), dev.torch_tensor(x)
    gx, sx = dev.minivis_tensor(x, requires_grad=True), dev.torch_tensor(x, requires_grad=True)
    want = tF.max_pool2d(tx, case.k, **kw)
    g = rng.standard_normal(tuple(want.shape), dtype=np.float32)
    mg, tg = dev.array(g), dev.torch_tensor(g)

    def mv_step():
        gx.grad = None
        y = mv.F.max_pool2d(gx, case.k, **kw)
        y.backward(mg)
        return y

    def torch_step():
        sx.grad = None
        y = tF.max_pool2d(sx, case.k, **kw)
        y.backward(tg)
        return y

    def check() -> float:
        err = compare("forward", mv.F.max_pool2d(mx, case.k, **kw), want, dev)
        y, switches = mv.F.max_pool2d(mx, case.k, **kw, return_switches=True)
        _, indices = tF.max_pool2d(tx, case.k, **kw, return_indices=True)
        if not np.array_equal(dev.to_numpy(switches).astype(np.int64), dev.to_numpy(indices)):
            raise Mismatch("switches differ from torch's return_indices")
        y, ty = mv_step(), torch_step()
        err = max(err, compare("forward (grad mode)", y, ty, dev), compare("grad x", gx.grad, sx.grad, dev))
        return err

    return Bench(lambda: mv.F.max_pool2d(mx, case.k, **kw), lambda: tF.max_pool2d(tx, case.k, **kw),
                 mv_step, torch_step, check)


def time_pair(mv_fn: Callable[[], Any], torch_fn: Callable[[], Any], dev: Device,
              quick: bool) -> dict[str, Any]:
    """Min-of-N seconds for both sides, alternating minivis and torch calls (``timeit_interleaved``).

    N gives the slower side about ``BUDGET_S`` seconds (3 to 25 calls); --quick uses 2. On the
    CPU each timed call follows ``PAUSE_S`` of rest (at most ``PAUSED_REPEAT`` rounds): PyTorch's
    OpenMP threads keep spinning after a call, and a minivis call right after one ran 1.5x slower
    (vgg 64 forward: 12.1 ms against 8.1 ms timed alone, 10.0 ms after 0.3 s of rest).
    """
    pause = PAUSE_S if dev.name == "cpu" and not quick else 0.0
    if quick:
        repeat = 2
    else:
        for fn in (mv_fn, torch_fn):  # warm both (JIT compile, allocator, thread pools)
            fn()
        repeat = min(auto_repeat(mv_fn, BUDGET_S, sync=dev.sync), auto_repeat(torch_fn, BUDGET_S, sync=dev.sync))
        repeat = min(repeat, PAUSED_REPEAT) if pause else repeat
    mv_s, torch_s = timeit_interleaved([mv_fn, torch_fn], repeat, warmup=1, sync=dev.sync, pause=pause)
    return {"minivis_ms": 1e3 * mv_s, "torch_ms": 1e3 * torch_s, "ratio": torch_s / mv_s, "repeat": repeat}


def run_case(case: ConvCase | PoolCase, kind: str, dev: Device, quick: bool,
             rng: np.random.Generator) -> list[dict[str, Any]]:
    """The forward and fwd+bwd rows of one case (or one error row when it fails its check)."""
    base = {"kind": kind, "name": case.name, "shape": case.shape, **asdict(case)}
    flops = case.flops if isinstance(case, ConvCase) else None
    try:
        bench = (conv_bench if kind == "conv" else pool_bench)(case, dev, rng)
        max_err = bench.check()
    except Mismatch as exc:
        return [{**base, "op": "check", "error": f"wrong result, not timed: {exc}"}]
    except Exception as exc:  # an unsupported case in minivis must not stop the other rows
        return [{**base, "op": "check", "error": f"{type(exc).__name__}: {exc}"}]
    rows = []
    for op, mv_fn, torch_fn, mult in (("forward", bench.mv_forward, bench.torch_forward, 1),
                                      ("fwd+bwd", bench.mv_step, bench.torch_step, 3)):
        row = {**base, "op": op, "max_abs_err": max_err, **time_pair(mv_fn, torch_fn, dev, quick)}
        if flops is not None:
            row["gflop"] = mult * flops / 1e9
            row["minivis_gflops"] = row["gflop"] / (row["minivis_ms"] / 1e3)
            row["torch_gflops"] = row["gflop"] / (row["torch_ms"] / 1e3)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- report
HEADERS = ["case", "shape", "op", "minivis ms", "torch ms", "ratio", "mv GFLOP/s", "% peak", "torch GFLOP/s"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["name"], r["shape"], "ERROR", None, None, None, None, None, None])
        else:
            out.append([r["name"], r["shape"], r["op"], r["minivis_ms"], r["torch_ms"], r["ratio"],
                        r.get("minivis_gflops"), r.get("pct_peak"), r.get("torch_gflops")])
    return out


def progress(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per finished row on stderr, so a long run shows where it is."""
    for r in rows:
        if "error" in r:
            what = r["error"]
        else:
            what = f"minivis {r['minivis_ms']:.2f} ms, torch {r['torch_ms']:.2f} ms, ratio {r['ratio']:.2f}"
        print(f"  {r['kind']} {r['name']} {r['op']}: {what}", file=sys.stderr, flush=True)
    return rows


def summarize(conv: list[dict[str, Any]], pool: list[dict[str, Any]]) -> dict[str, float | None]:
    def ratios(rows, op=None):
        return [r["ratio"] for r in rows if "ratio" in r and (op is None or r["op"] == op)]

    return {"conv_forward": geomean(ratios(conv, "forward")),
            "conv_fwd_bwd": geomean(ratios(conv, "fwd+bwd")),
            "pool": geomean(ratios(pool)), "pool_forward": geomean(ratios(pool, "forward")),
            "pool_fwd_bwd": geomean(ratios(pool, "fwd+bwd"))}


def main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--only", choices=("conv", "pool"), default=None,
                       help="time only the conv or only the max-pool rows (CPU; keep such a run out of the "
                            "README's full table with --readme none)")
    known, rest = extra.parse_known_args(sys.argv[1:] if argv is None else argv)
    args = parse_args(__doc__.splitlines()[0], topic="kernels", argv=rest)
    dev = setup(args)  # --device gpu without CuPy, a GPU or CUDA PyTorch exits here, saying which
    started = time.perf_counter()
    if dev.name == "gpu":
        return gpu_main(args, dev, started)
    rng = np.random.default_rng(0)
    print(f"{dev.name}: {dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba)")
    first_peak = sgemm_peak(dev, quick=args.quick)

    conv_cases = [c.quick() for c in CONV_CASES] if args.quick else CONV_CASES
    pool_cases = [c.quick() for c in POOL_CASES[:2]] if args.quick else POOL_CASES
    conv_cases = [] if known.only == "pool" else conv_cases
    pool_cases = [] if known.only == "conv" else pool_cases
    conv, pool = [], []
    for case in conv_cases:
        conv += progress(run_case(case, "conv", dev, args.quick, rng))
    for case in pool_cases:
        pool += progress(run_case(case, "pool", dev, args.quick, rng))
    # The roofline is measured before and after the rows; the better of the two counts.
    peak = best_peak(first_peak, sgemm_peak(dev, quick=args.quick))
    for row in conv:
        if "minivis_gflops" in row:
            row["pct_peak"] = 100.0 * row["minivis_gflops"] / peak["peak_gflops"]

    print(f"SGEMM float32 n={peak['n']}: np.matmul {peak['array_gflops']:.1f} GFLOP/s, "
          f"torch.matmul {peak['torch_gflops']:.1f} GFLOP/s (best of start and end; peak = np.matmul)")
    print("ratio = torch_time / minivis_time: > 1 means minivis is faster\n")
    print_table(HEADERS, table_rows(conv), title="conv2d (float32)")
    print()
    print_table(HEADERS[:6], [r[:6] for r in table_rows(pool)], title="max_pool2d (float32)")

    means = summarize(conv, pool)
    print("\ngeometric mean of ratios (> 1: minivis faster): "
          + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in means.items()))
    errors = [r for r in conv + pool if "error" in r]
    for r in errors:
        print(f"ERROR {r['kind']} {r['name']} ({r['shape']}): {r['error']}", file=sys.stderr)

    payload = {"sgemm": peak, "ratio_definition": "torch_time / minivis_time (> 1: minivis faster)",
               "tolerance": {"rtol": RTOL, "atol_scale": ATOL_SCALE},
               "conv": conv, "pool": pool, "geomean": means, "errors": len(errors),
               "elapsed_s": time.perf_counter() - started}
    finish(args, dev, payload, readme_markdown(args, dev, peak, conv, pool, means))
    return 1 if errors else 0


def readme_markdown(args, dev: Device, peak: dict, conv: list, pool: list, means: dict) -> str:
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    def mean(key):
        return f"{means[key]:.2f}" if means[key] is not None else "-"

    load = ""
    if getattr(args, "loadavg_at_start", None) is not None:
        load = (f" 1-minute load average {args.loadavg_at_start:.1f} at the start and "
                f"{os.getloadavg()[0]:.1f} at the end (other processes only add time).")
    lines = [
        f"Measured on {dev.description} ({dev.name}, {os.cpu_count()} cores), {args.threads} threads, "
        f"numpy {np.__version__}, "
        f"torch {torch.__version__}, numba {numba.__version__}. "
        f"SGEMM float32 n={peak['n']}: np.matmul {peak['array_gflops']:.1f} GFLOP/s (the peak), "
        f"torch.matmul {peak['torch_gflops']:.1f} GFLOP/s (best of a measurement before and after the rows)."
        + load,
        "",
        f"Command: `{command_line()}`",
        "",
        "ratio = torch time / minivis time (> 1: minivis faster); times are min-of-N in ms; "
        "% peak = minivis GFLOP/s over the np.matmul peak.",
        "",
        markdown_table(HEADERS, table_rows(conv)),
        "",
        markdown_table(HEADERS[:6], [r[:6] for r in table_rows(pool)]),
        "",
        f"Geometric mean of ratios: conv forward **{mean('conv_forward')}**, "
        f"conv fwd+bwd **{mean('conv_fwd_bwd')}**, max-pool **{mean('pool')}** "
        f"(forward {mean('pool_forward')}, fwd+bwd {mean('pool_fwd_bwd')}).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the GPU run
# `--device gpu`: the same conv and max-pool layer table on one GPU, minivis (CuPy arrays,
# Numba-CUDA kernels, cuBLAS GEMMs) against PyTorch (cuDNN), in float32 with TF32 off on both
# sides and cuDNN's autotuner on (its best case), every time taken between two device
# synchronisations (Device.sync). Conv rows report achieved TFLOP/s next to the measured
# cupy.matmul SGEMM rate; the memory-bound kernels (max-pool, unpool, the ReLU rules) report
# effective bandwidth next to the measured device-to-device copy bandwidth. Results go to
# results/kernels-gpu-<gpu name>.json and a README section of the same name.

RELU_SHAPES = [("vgg 64@112", (8, 64, 112, 112)), ("efficientnet stem, batch 64", (64, 32, 112, 112))]
GPU_CONV_HEADERS = ["case", "shape", "op", "minivis ms", "torch ms", "ratio", "mv TFLOP/s", "% peak",
                    "torch TFLOP/s"]
GPU_BW_HEADERS = ["case", "shape", "op", "minivis ms", "torch ms", "ratio", "mv GB/s", "% copy", "torch GB/s"]


def gpu_slug(description: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (for the result file name)."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in description.lower()).split())


def copy_bandwidth(dev: Device, quick: bool) -> dict[str, Any]:
    """Measured device-to-device copy bandwidth: 2 * bytes / time (one read, one write) of a
    256 MB float32 array (8 MB with --quick), CuPy and torch; the better one is the roofline."""
    import cupy  # noqa: PLC0415
    import torch  # noqa: PLC0415

    n = (8 << 20 if quick else 256 << 20) // 4
    a, b = cupy.ones(n, dtype=cupy.float32), cupy.empty(n, dtype=cupy.float32)
    ta, tb = torch.ones(n, device="cuda"), torch.empty(n, device="cuda")
    repeat = 3 if quick else 20

    def copy_cupy():
        b[...] = a

    cupy_s = timeit(copy_cupy, repeat, warmup=2, sync=dev.sync)
    torch_s = timeit(lambda: tb.copy_(ta), repeat, warmup=2, sync=dev.sync)
    nbytes = 2 * 4 * n
    gbs = {"cupy_gbs": nbytes / cupy_s / 1e9, "torch_gbs": nbytes / torch_s / 1e9}
    return {"bytes": nbytes, **gbs, "copy_gbs": max(gbs.values())}


def pool_bytes(case: PoolCase, op: str) -> int:
    """Minimal float32 memory traffic of a max-pool row, the same count for both sides.

    forward: read x, write y. fwd+bwd: read x, write y and int64 indices; then read g and the
    indices, write dx (8 in + 24 out bytes per element).
    """
    ho = (case.h + 2 * case.pad - case.k) // case.stride + 1
    wo = (case.w + 2 * case.pad - case.k) // case.stride + 1
    n_in, n_out = case.n * case.c * case.h * case.w, case.n * case.c * ho * wo
    return 4 * (n_in + n_out) if op == "forward" else 8 * n_in + 24 * n_out


def time_one(fn: Callable[[], Any], dev: Device, quick: bool) -> float:
    """Min-of-N seconds of one side alone (rows without a torch counterpart)."""
    if quick:
        return timeit(fn, 2, warmup=1, sync=dev.sync)
    fn()
    return timeit(fn, auto_repeat(fn, BUDGET_S, sync=dev.sync), warmup=1, sync=dev.sync)


def relu_rows(dev: Device, quick: bool, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The ReLU family's memory-bound work on each of ``RELU_SHAPES`` (see ``relu_shape_rows``)."""
    rows = []
    for name, shape in RELU_SHAPES:
        rows += relu_shape_rows(name, (2, 8, 16, 16) if quick else shape, dev, quick, rng)
    return rows


def relu_shape_rows(name: str, shape: tuple[int, ...], dev: Device, quick: bool,
                    rng: np.random.Generator) -> list[dict[str, Any]]:
    """ReLU forward, forward+backward (gradient rule), and the fused rule-backward kernel alone for
    each rule, with torch's equivalent where one exists (threshold_backward for the gradient rule,
    relu of g for deconvnet; guided has no fused torch op). Each result is checked before timing."""
    import torch  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415
    from minivis.kernels import gpu_activation  # noqa: PLC0415

    n = int(np.prod(shape))
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    mx, mg, tx, tg = dev.array(x), dev.array(g), dev.torch_tensor(x), dev.torch_tensor(g)
    fx = dev.minivis_tensor(x)
    gx, sx = dev.minivis_tensor(x, requires_grad=True), dev.torch_tensor(x, requires_grad=True)

    def mv_step():
        gx.grad = None
        mv.F.relu(gx).backward(mg)

    def torch_step():
        sx.grad = None
        torch.relu(sx).backward(tg)

    def rule(code):
        return lambda: gpu_activation.relu_rule_backward(mg, mx, 0.0, np.inf, 0.0, code)

    cases = [  # op, minivis, torch or None, bytes moved, the expected result (checked first)
        ("forward", lambda: mv.F.relu(fx), lambda: torch.relu(tx), 8 * n, np.maximum(x, 0)),
        ("fwd+bwd (gradient)", mv_step, torch_step, 20 * n, None),
        ("rule kernel: gradient", rule(0), lambda: torch.ops.aten.threshold_backward(tg, tx, 0.0), 12 * n,
         g * (x > 0)),
        ("rule kernel: guided", rule(1), None, 12 * n, g * (x > 0) * (g > 0)),
        ("rule kernel: deconvnet", rule(2), lambda: torch.relu(tg), 8 * n, g * (g > 0)),
    ]
    base = {"kind": "relu", "name": name, "shape": "N{} C{} {}x{}".format(*shape)}
    rows = []
    for op, mv_fn, torch_fn, nbytes, expected in cases:
        if expected is not None:
            try:
                compare(op, mv_fn(), expected, dev)
            except Mismatch as exc:
                rows.append({**base, "op": op, "error": f"wrong result, not timed: {exc}"})
                continue
        if torch_fn is None:
            row = {**base, "op": op, "minivis_ms": 1e3 * time_one(mv_fn, dev, quick), "torch_ms": None,
                   "ratio": None}
        else:
            row = {**base, "op": op, **time_pair(mv_fn, torch_fn, dev, quick)}
        rows.append({**row, "bytes": nbytes})
    return rows


def add_bandwidth(rows: list[dict[str, Any]], copy_gbs: float) -> None:
    for r in rows:
        if "error" in r or not r.get("bytes"):
            continue
        r["minivis_gbs"] = r["bytes"] / (r["minivis_ms"] / 1e3) / 1e9
        r["pct_copy"] = 100.0 * r["minivis_gbs"] / copy_gbs
        r["torch_gbs"] = r["bytes"] / (r["torch_ms"] / 1e3) / 1e9 if r.get("torch_ms") else None


def gpu_table_rows(rows: list[dict[str, Any]], kind: str) -> list[list[Any]]:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["name"], r["shape"], "ERROR", None, None, None, None, None, None])
        elif kind == "conv":
            tflops = [None if r.get(k) is None else r[k] / 1e3 for k in ("minivis_gflops", "torch_gflops")]
            out.append([r["name"], r["shape"], r["op"], r["minivis_ms"], r["torch_ms"], r["ratio"], tflops[0],
                        r.get("pct_peak"), tflops[1]])
        else:
            out.append([r["name"], r["shape"], r["op"], r["minivis_ms"], r["torch_ms"], r["ratio"],
                        r.get("minivis_gbs"), r.get("pct_copy"), r.get("torch_gbs")])
    return out


def gpu_main(args, dev: Device, started: float) -> int:
    import torch  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    mv.backend.allow_tf32(False)
    rng = np.random.default_rng(0)
    print(f"{dev.name}: {dev.description}; float32, TF32 off on both sides, cuDNN autotuner on")
    first_peak = sgemm_peak(dev, quick=args.quick, n=None if args.quick else 8192)
    copy = copy_bandwidth(dev, args.quick)

    conv_cases = [c.quick() for c in CONV_CASES] if args.quick else CONV_CASES
    pool_cases = [c.quick() for c in POOL_CASES[:2]] if args.quick else POOL_CASES
    conv, pool = [], []
    for case in conv_cases:
        conv += progress(run_case(case, "conv", dev, args.quick, rng))
    for case in pool_cases:
        rows = progress(run_case(case, "pool", dev, args.quick, rng))
        for r in rows:
            if "error" not in r:
                r["bytes"] = pool_bytes(case, r["op"])
        pool += rows
    relu = progress(relu_rows(dev, args.quick, rng))
    peak = best_peak(first_peak, sgemm_peak(dev, quick=args.quick, n=None if args.quick else 8192))
    for row in conv:
        if "minivis_gflops" in row:
            row["pct_peak"] = 100.0 * row["minivis_gflops"] / peak["peak_gflops"]
    add_bandwidth(pool + relu, copy["copy_gbs"])

    print(f"SGEMM float32 n={peak['n']}: cupy.matmul {peak['array_gflops'] / 1e3:.1f} TFLOP/s, "
          f"torch.matmul {peak['torch_gflops'] / 1e3:.1f} TFLOP/s; device copy {copy['copy_gbs']:.0f} GB/s")
    print("ratio = torch_time / minivis_time: > 1 means minivis is faster\n")
    print_table(GPU_CONV_HEADERS, gpu_table_rows(conv, "conv"), title="conv2d (float32)")
    print()
    print_table(GPU_BW_HEADERS, gpu_table_rows(pool, "pool"), title="max_pool2d (float32)")
    print()
    print_table(GPU_BW_HEADERS, gpu_table_rows(relu, "relu"), title="ReLU family (float32)")

    means = summarize(conv, pool)
    fractions = [r["pct_copy"] for r in pool + relu if "pct_copy" in r]
    means["relu"] = geomean([r["ratio"] for r in relu if r.get("ratio")])
    means["bandwidth_pct_copy_min"] = min(fractions) if fractions else None
    means["bandwidth_pct_copy_geomean"] = geomean(fractions)
    print("\ngeometric mean of ratios (> 1: minivis faster): "
          + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in means.items()))
    errors = [r for r in conv + pool + relu if "error" in r]
    for r in errors:
        print(f"ERROR {r['kind']} {r['name']} ({r['shape']}): {r['error']}", file=sys.stderr)

    payload = {"sgemm": peak, "copy_bandwidth": copy, "tf32": False, "cudnn_benchmark": True,
               "ratio_definition": "torch_time / minivis_time (> 1: minivis faster)",
               "tolerance": {"rtol": RTOL, "atol_scale": ATOL_SCALE},
               "byte_counts": {"pool forward": "4 (in + out)", "pool fwd+bwd": "8 in + 24 out (int64 indices)",
                               "relu forward": "8 n", "relu fwd+bwd": "20 n", "rule kernel": "12 n (deconvnet 8 n)"},
               "conv": conv, "pool": pool, "relu": relu, "geomean": means, "errors": len(errors),
               "elapsed_s": time.perf_counter() - started}
    # results/kernels-gpu-<gpu name>.json: results from different GPUs sit side by side
    record_dev = replace(dev, name=f"gpu-{gpu_slug(dev.description)}")
    finish(args, record_dev, payload, gpu_readme_markdown(args, dev, peak, copy, conv, pool, relu, means),
           heading=f"Kernels, GPU ({dev.description})")
    return 1 if errors else 0


def gpu_readme_markdown(args, dev: Device, peak: dict, copy: dict, conv: list, pool: list, relu: list,
                        means: dict) -> str:
    import cupy  # noqa: PLC0415
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    def mean(key, digits=2):
        return f"{means[key]:.{digits}f}" if means.get(key) is not None else "-"

    lines = [
        f"Measured on {dev.description}, float32, TF32 off on both sides, cuDNN autotuner on; cupy "
        f"{cupy.__version__}, numba {numba.__version__}, torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}). SGEMM n={peak['n']}: "
        f"cupy.matmul {peak['array_gflops'] / 1e3:.1f} TFLOP/s (the peak), torch.matmul "
        f"{peak['torch_gflops'] / 1e3:.1f} TFLOP/s; device-to-device copy {copy['copy_gbs']:.0f} GB/s.",
        "",
        f"Command: `{command_line()}`",
        "",
        "ratio = torch time / minivis time (> 1: minivis faster); times are min-of-N in ms between device "
        "synchronisations; % peak = minivis TFLOP/s over the cupy.matmul peak; % copy = minivis's effective "
        "bandwidth over the copy bandwidth (bytes: pool forward 4 (in + out), fwd+bwd 8 in + 24 out; "
        "relu forward 8n, fwd+bwd 20n, rule kernel 12n, deconvnet 8n).",
        "",
        markdown_table(GPU_CONV_HEADERS, gpu_table_rows(conv, "conv")),
        "",
        markdown_table(GPU_BW_HEADERS, gpu_table_rows(pool, "pool")),
        "",
        markdown_table(GPU_BW_HEADERS, gpu_table_rows(relu, "relu")),
        "",
        f"Geometric mean of ratios: conv forward **{mean('conv_forward')}**, conv fwd+bwd "
        f"**{mean('conv_fwd_bwd')}**, max-pool **{mean('pool')}**, ReLU **{mean('relu')}**. Memory-bound "
        f"rows reach {mean('bandwidth_pct_copy_min', 0)}% (lowest) and {mean('bandwidth_pct_copy_geomean', 0)}% "
        f"(geometric mean) of the copy bandwidth.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
