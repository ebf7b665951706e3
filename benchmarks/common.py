"""Shared benchmark harness: same threads on both sides, min-of-N timing, the SGEMM roofline,
result tables, JSON records and the README tables.

Every ``benchmarks/<topic>.py`` follows the same shape::

    args = parse_args("what it times", topic="kernels")
    dev = setup(args)                      # threads for torch, BLAS, OpenMP and Numba; the device
    peak = sgemm_peak(dev, quick=args.quick)
    ... seconds = timeit(fn, repeat, warmup, sync=dev.sync) ...
    print_table(headers, rows)
    finish(args, dev, payload, markdown)   # results/<topic>-<device>.json and the README section

Method (DESIGN.md section 6): minivis and the reference run in the same process with the same
thread count; each time is the minimum over ``repeat`` calls after ``warmup`` calls, because on a
shared machine noise only ever adds time, so the minimum is the best estimate of the cost.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"


# --------------------------------------------------------------------------- command line
def parse_args(description: str, topic: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags every benchmark shares: --quick, --threads, --device, --out, --readme."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats (a smoke test of the harness, not a measurement)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for minivis and the reference alike (default: all %(default)s cores)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="folder for <topic>-<device>.json (default: benchmarks/results)")
    parser.add_argument("--readme", default=None,
                        help="Markdown file whose table section to update, or 'none'; default: "
                             "benchmarks/README.md for a full run into benchmarks/results, else none")
    args = parser.parse_args(argv)
    args.topic = topic
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.readme is None:
        default_out = args.out.resolve() == RESULTS_DIR.resolve()
        args.readme = README if (default_out and not args.quick) else None
    elif args.readme.lower() == "none":
        args.readme = None
    else:
        args.readme = Path(args.readme)
    return args


# --------------------------------------------------------------------------- threads
def set_threads(n: int) -> dict[str, Any]:
    """Give torch, every BLAS/OpenMP pool (threadpoolctl) and Numba the same ``n`` threads.

    Returns what each library reports afterwards, for the JSON record.
    """
    import numba  # noqa: PLC0415 (heavy imports stay inside the harness functions)
    import threadpoolctl  # noqa: PLC0415
    import torch  # noqa: PLC0415

    # minivis.kernels picks Numba's threading layer (workqueue) on import; it must come before the
    # first parallel call below, or Numba settles on OpenMP, whose spinning threads fight BLAS and
    # made minivis's conv loops up to 5x slower in a benchmark that imported minivis late.
    import minivis.kernels  # noqa: F401, PLC0415

    if n > numba.config.NUMBA_NUM_THREADS:
        sys.exit(f"--threads {n}: Numba was started with at most {numba.config.NUMBA_NUM_THREADS} threads "
                 f"(set NUMBA_NUM_THREADS={n} in the environment to allow more)")
    torch.set_num_threads(n)
    numba.set_num_threads(n)
    # Kept alive at module level: the limits hold until the object is garbage collected/restored.
    global _THREADPOOL_LIMITS
    _THREADPOOL_LIMITS = threadpoolctl.threadpool_limits(limits=n)
    return {
        "requested": n,
        "torch": torch.get_num_threads(),
        "numba": numba.get_num_threads(),
        "numba_threading_layer": _numba_threading_layer(),
        "threadpools": [{k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                              "num_threads", "threading_layer", "architecture")}
                        for p in threadpoolctl.threadpool_info()],
    }


_THREADPOOL_LIMITS = None


def _numba_threading_layer() -> str:
    """Numba picks its threading layer (tbb, omp, workqueue) at the first parallel call."""
    import numba  # noqa: PLC0415

    @numba.njit(parallel=True)
    def _touch(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s

    _touch(np.ones(4))
    try:
        return numba.threading_layer()
    except ValueError:
        return "unknown"


# --------------------------------------------------------------------------- devices
@dataclass
class Device:
    """Where the arrays live, and how both libraries get and wait for them.

    The benchmarks never branch on the device: they build inputs in NumPy, move them with
    ``minivis_tensor``/``torch_tensor``, time with ``sync``, and read results with ``to_numpy``.
    """

    name: str                       # "cpu" | "gpu"
    torch_device: str               # "cpu" | "cuda"
    description: str

    def minivis_tensor(self, array: np.ndarray, requires_grad: bool = False):
        import minivis as mv  # noqa: PLC0415

        return mv.tensor(array, requires_grad=requires_grad, device=self.name)

    def torch_tensor(self, array: np.ndarray, requires_grad: bool = False):
        import torch  # noqa: PLC0415

        return torch.tensor(array, device=self.torch_device, requires_grad=requires_grad)

    def array(self, array: np.ndarray) -> Any:
        """``array`` on this device as a plain array (NumPy or CuPy), e.g. an upstream gradient."""
        return self.minivis_tensor(array).data

    def to_numpy(self, value: Any) -> np.ndarray:
        """A minivis Tensor, a torch tensor or an array (NumPy/CuPy) as a NumPy array."""
        if type(value).__module__.startswith("torch"):
            return value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            return value
        if hasattr(value, "numpy"):         # minivis.Tensor
            return value.numpy()
        if hasattr(value, "get"):           # cupy.ndarray
            return value.get()
        return np.asarray(value)

    def sync(self) -> None:
        """Wait until queued GPU work is done, so the clock measures it (a no-op on the CPU)."""
        if self.name == "gpu":
            import cupy  # noqa: PLC0415
            import torch  # noqa: PLC0415

            cupy.cuda.get_current_stream().synchronize()
            torch.cuda.synchronize()


def get_device(name: str) -> Device:
    """The device to benchmark on; exits with a clear message when the GPU stack is missing."""
    if name == "cpu":
        return Device("cpu", "cpu", cpu_model())
    import torch  # noqa: PLC0415

    from minivis import backend  # noqa: PLC0415

    missing = []
    if not backend.gpu_available():
        missing.append("CuPy with a visible CUDA device (pip install minivis[gpu])")
    if not torch.cuda.is_available():
        missing.append("a CUDA build of PyTorch")
    if missing:
        sys.exit("--device gpu needs " + " and ".join(missing) + "; none found on this machine. "
                 "Run without --device (CPU) instead.")
    return Device("gpu", "cuda", torch.cuda.get_device_name(0))


def setup(args: argparse.Namespace) -> Device:
    """Threads first (before any timed work), then the device; both go into the JSON record."""
    args.loadavg_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    args.thread_info = set_threads(args.threads)
    return get_device(args.device)


# --------------------------------------------------------------------------- timing
def timings(fn: Callable[[], Any], repeat: int, warmup: int = 1,
            sync: Callable[[], None] | None = None) -> list[float]:
    """Seconds for each of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls.

    ``sync`` (e.g. ``Device.sync``) is called before starting and before stopping the clock, so
    asynchronous GPU work is inside the measurement.
    """
    if repeat < 1:
        raise ValueError(f"timings: repeat must be >= 1, got {repeat}")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return out


def timeit(fn: Callable[[], Any], repeat: int, warmup: int = 1,
           sync: Callable[[], None] | None = None) -> float:
    """Min-of-``repeat`` seconds of ``fn()`` after ``warmup`` calls (see ``timings``)."""
    return min(timings(fn, repeat, warmup, sync))


def timeit_interleaved(fns: Sequence[Callable[[], Any]], repeat: int, warmup: int = 1,
                       sync: Callable[[], None] | None = None, pause: float = 0.0) -> list[float]:
    """Min-of-``repeat`` seconds of each of ``fns``, calling them in turn in every round.

    Alternating (a, b, a, b, ...) rather than timing all of a and then all of b means both
    sides see the same machine: on a shared machine whose load changes from minute to minute,
    blocked timing can hand one side a quiet minute and the other a busy one. ``pause``: seconds
    to sleep before each timed call, so that the thread pools of the previous call (OpenBLAS
    and OpenMP threads spin for up to ~0.2 s after their work) are idle again; without it each
    side pays for the other's spinning threads, which matters for calls of a few milliseconds.
    """
    if repeat < 1:
        raise ValueError(f"timeit_interleaved: repeat must be >= 1, got {repeat}")
    sync = sync or (lambda: None)
    for fn in fns:
        for _ in range(warmup):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            sync()
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def auto_repeat(fn: Callable[[], Any], budget_s: float, lo: int = 3, hi: int = 25,
                sync: Callable[[], None] | None = None) -> int:
    """How many repeats fit in about ``budget_s`` seconds, from one (already warm) call, in [lo, hi]."""
    once = timeit(fn, repeat=1, warmup=0, sync=sync)
    return int(min(hi, max(lo, budget_s // max(once, 1e-9))))


# --------------------------------------------------------------------------- roofline
def sgemm_gflops(matmul: Callable[[Any, Any], Any], a: Any, b: Any, repeat: int,
                 sync: Callable[[], None] | None = None) -> float:
    """Achieved GFLOP/s of ``matmul(a, b)`` for square n x n operands: 2 n^3 / time."""
    n = a.shape[0]
    seconds = timeit(lambda: matmul(a, b), repeat=repeat, warmup=2, sync=sync)
    return 2.0 * n**3 / seconds / 1e9


def sgemm_peak(dev: Device, quick: bool = False, n: int | None = None) -> dict[str, Any]:
    """The machine's measured float32 GEMM rate: np.matmul (what minivis uses) and torch.matmul.

    ``peak_gflops`` is the array library's rate (np.matmul on the CPU, cupy.matmul on the GPU):
    minivis does its GEMMs there, so that is the roofline the '% of peak' columns refer to.
    """
    import torch  # noqa: PLC0415

    n = n or (512 if quick else 2048)
    repeat = 3 if quick else 10
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if dev.name == "gpu":
        import cupy  # noqa: PLC0415

        xa, xb = cupy.asarray(a), cupy.asarray(b)
        array_gflops = sgemm_gflops(cupy.matmul, xa, xb, repeat, dev.sync)
    else:
        array_gflops = sgemm_gflops(np.matmul, a, b, repeat)
    ta, tb = dev.torch_tensor(a), dev.torch_tensor(b)
    with torch.no_grad():
        torch_gflops = sgemm_gflops(torch.matmul, ta, tb, repeat, dev.sync)
    return {"n": n, "dtype": "float32", "array_gflops": array_gflops, "torch_gflops": torch_gflops,
            "peak_gflops": array_gflops}


def best_peak(*measurements: dict[str, Any]) -> dict[str, Any]:
    """The best of several ``sgemm_peak`` measurements (e.g. before and after a long run).

    Load from other processes only lowers a measured rate, so the highest is the best estimate
    of the roofline; every measurement is kept in ``measurements`` for the record.
    """
    best = {key: max(m[key] for m in measurements) for key in ("array_gflops", "torch_gflops", "peak_gflops")}
    return {"n": measurements[0]["n"], "dtype": measurements[0]["dtype"], **best,
            "measurements": [{k: m[k] for k in ("array_gflops", "torch_gflops")} for m in measurements]}


# --------------------------------------------------------------------------- machine record
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(args: argparse.Namespace, dev: Device) -> dict[str, Any]:
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import minivis  # noqa: PLC0415

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": dev.name,
        "device_name": dev.description,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "threads": getattr(args, "thread_info", {"requested": args.threads}),
        # Other processes only ever add time; a high load average flags a noisy run.
        "loadavg_1m_at_start": getattr(args, "loadavg_at_start", None),
        "loadavg_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {"minivis": minivis.__version__, "numpy": np.__version__, "torch": torch.__version__,
                     "numba": numba.__version__},
    }


# --------------------------------------------------------------------------- reporting
def geomean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Fixed-width columns: text left-aligned, numbers right-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = _numeric_columns(headers, rows)

    def line(values):
        cols = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in cols)

    if title:
        print(title)
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    sys.stdout.flush()


def _numeric_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[bool]:
    """Which columns hold only numbers (or blanks): those are right-aligned."""
    return [all(isinstance(row[i], int | float) or row[i] is None for row in rows)
            for i in range(len(headers))]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    numeric = _numeric_columns(headers, rows)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def update_readme_section(path: Path, key: str, body: str, heading: str | None = None) -> None:
    """Replace the text between ``<!-- key:start -->`` and ``<!-- key:end -->`` in ``path``.

    When the markers are missing, the section is appended (under ``heading`` if given), so a
    new topic or device gets its own table without hand-editing the README first.
    """
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + (f"## {heading}\n\n" if heading else "")
        text += block + "\n"
    path.write_text(text)


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def command_line() -> str:
    """How this run was started, for the record (relative to the repository root)."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(BENCH_DIR.parent)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def finish(args: argparse.Namespace, dev: Device, payload: dict[str, Any], markdown: str,
           heading: str | None = None) -> Path:
    """Write ``<out>/<topic>-<device>.json`` and, when ``args.readme`` is set, its README section."""
    record = {"topic": args.topic, "quick": args.quick, "command": command_line(),
              "machine": machine_info(args, dev), **payload}
    path = write_json(Path(args.out) / f"{args.topic}-{dev.name}.json", record)
    print(f"\nwrote {path}")
    if args.readme is not None:
        update_readme_section(Path(args.readme), f"{args.topic}-{dev.name}", markdown, heading)
        print(f"updated the {args.topic}-{dev.name} table in {args.readme}")
    return path
