"""Kernel benchmark: minivis conv2d and max_pool2d against PyTorch, layer by layer.

    python benchmarks/kernels.py              # full run: results/kernels-cpu.json + README table
    python benchmarks/kernels.py --quick      # smoke test (tiny sizes, seconds)

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
    timeit_interleaved,
)

RTOL = 1e-4         # float32 parity with torch, as in the test suite
ATOL_SCALE = 1e-5   # absolute tolerance relative to the largest reference value (float32 sums)
BUDGET_S = 1.5      # timing budget per row and side, full run


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

    N gives the slower side about ``BUDGET_S`` seconds (3 to 25 calls); --quick uses 2.
    """
    if quick:
        repeat = 2
    else:
        for fn in (mv_fn, torch_fn):  # warm both (JIT compile, allocator, thread pools)
            fn()
        repeat = min(auto_repeat(mv_fn, BUDGET_S, sync=dev.sync), auto_repeat(torch_fn, BUDGET_S, sync=dev.sync))
    mv_s, torch_s = timeit_interleaved([mv_fn, torch_fn], repeat, warmup=1, sync=dev.sync)
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
    args = parse_args(__doc__.splitlines()[0], topic="kernels", argv=argv)
    dev = setup(args)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    print(f"{dev.name}: {dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba)")
    first_peak = sgemm_peak(dev, quick=args.quick)

    conv_cases = [c.quick() for c in CONV_CASES] if args.quick else CONV_CASES
    pool_cases = [c.quick() for c in POOL_CASES[:2]] if args.quick else POOL_CASES
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


if __name__ == "__main__":
    sys.exit(main())
