"""Occlusion benchmark: minivis naive, incremental and approximate occlusion against Captum's Occlusion.

    python benchmarks/occlusion.py                    # full: all 625 patch positions, every method
    python benchmarks/occlusion.py --positions 96     # time 96 of the 625 positions and extrapolate
    python benchmarks/occlusion.py --quick            # smoke test (32 px, a few positions)

The setting of issue 4: a 32 x 32 patch slid with stride 8 over a 224 x 224 photo (``chelsea``),
25 x 25 = 625 positions, fill 0 in input units (each model's mean colour), target = the model's
top class on the clean photo; models EfficientNet-Lite0 (ImageNet weights) and a VGG16-shaped
net (``mv.models.build("vgg16")``, random weights, seed 0). float32, same process, same threads.

Rows (all in one run):

* minivis ``naive``: every occluded copy through the whole network, ``--batch-size`` at a time;
* minivis ``incremental``: the exact cone-of-influence mode (``mv.vis.occlusion(mode="incremental")``);
* minivis ``approximate``: Krypton's projective-field threshold ``--tau``;
* Captum ``Occlusion`` on the PyTorch twin (same weights), forward = softmax(twin), with
  ``perturbations_per_eval=1`` (Captum's default) and ``= --batch-size``.

Subsets. A full run of the slow rows can take far longer than 10 minutes on a 2-core machine,
so ``--positions K`` times the minivis modes on K of the 625 positions (evenly spaced in
row-major order, the same K for all three) and Captum on a coarser grid (stride a multiple of 8,
about K positions). Every row is then extrapolated to the 625 positions as

    full = fixed + per_position * 625

with ``fixed`` the cost that does not depend on the positions (minivis: a run at a single
position; Captum: one forward of the clean photo) and ``per_position = (time - fixed) / K``.
Naive and Captum cost the same at every position, so this is exact for them; incremental
positions near the border are cheaper (their regions are clipped), and evenly spaced positions
sample the border as often as the full grid does. With K = 625 nothing is extrapolated.

Correct before fast: incremental must equal naive on the timed positions (float32, max abs
difference <= 1e-5) and Captum's attribution must equal minivis's ``occlusion_attribution`` on
Captum's grid (<= 1e-5); a model that fails is reported as ERROR and the script exits with 1.
The approximate mode's maximum error against naive is reported beside its speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import command_line, finish, markdown_table, parse_args, print_table, setup

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5  # max |incremental - naive| and |minivis - Captum| on probabilities (float32)


# --------------------------------------------------------------------------- setting
def extra_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--positions", type=int, default=None,
                        help="time this many of the grid's positions and extrapolate (default: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="occluded copies per forward pass")
    parser.add_argument("--tau", type=float, default=0.5, help="approximate mode's projective-field threshold")
    parser.add_argument("--models", default="efficientnet_lite0,vgg16")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per row (min is kept)")
    return parser.parse_known_args(argv)


def setting(name: str, quick: bool) -> dict[str, Any]:
    """Model, its torch twin, the photo as model input, the target class."""
    import torch  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    from tests.torch_twins import TorchEfficientNetLite, torchvision_vgg, twin_from_state  # noqa: PLC0415

    if name == "efficientnet_lite0":
        model, twin = mv.models.load(name), TorchEfficientNetLite()
    elif name == "vgg16":
        mv.nn.init.seed(0)
        model, twin = mv.models.build(name).eval(), torchvision_vgg(mv.models.VGG_CONFIGS["vgg16"])
    else:
        raise SystemExit(f"--models: unknown model {name!r} (efficientnet_lite0, vgg16)")
    twin = twin_from_state(twin, model.state_dict(), torch.float32)
    x = model.preprocess(mv.data.photo("chelsea"))  # (1, 3, 224, 224)
    if quick:
        x = np.ascontiguousarray(x[:, :, ::7, ::7])  # 32 x 32 for a smoke test
    with mv.no_grad():
        target = int(np.argmax(model(mv.tensor(x)).data[0]))
    return {"model": model, "twin": twin, "x": x, "target": target,
            "patch": 16 if quick else 32, "stride": 8}


def subset(rows: int, cols: int, k: int | None) -> np.ndarray:
    """k grid indices (row, col) evenly spaced in row-major order (all of them for k=None)."""
    total = rows * cols
    flat = np.arange(total) if k is None or k >= total else np.unique(np.linspace(0, total - 1, k).round())
    return np.stack(np.divmod(flat.astype(np.int64), cols), axis=1)


def extrapolate(seconds: float, positions: int, fixed: float, fixed_positions: int, total: int) -> float:
    """Full-grid time from a timed subset: a line through (fixed_positions, fixed) and (positions, seconds).

    When noise makes the subset no slower than the fixed run (tiny --quick grids on a busy machine), the
    per-position cost is unmeasurable; fall back to scaling the subset time, which over-estimates.
    """
    if positions >= total:
        return seconds
    per = (seconds - fixed) / max(positions - fixed_positions, 1)
    return fixed + per * (total - fixed_positions) if per > 0 else seconds * total / positions


def timed(fn, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# --------------------------------------------------------------------------- one model
def bench_model(name: str, args: argparse.Namespace, opts: argparse.Namespace) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from captum.attr import Occlusion  # noqa: PLC0415

    import minivis as mv  # noqa: PLC0415

    s = setting(name, args.quick)
    model, twin, x, target, patch, stride = (s[k] for k in ("model", "twin", "x", "target", "patch", "stride"))
    size = x.shape[-1]
    rows = cols = (size - patch) // stride + 1
    total = rows * cols
    cells = subset(rows, cols, opts.positions)
    k = len(cells)
    common = {"patch": patch, "stride": stride, "fill": 0.0, "batch_size": opts.batch_size}
    print(f"\n{name}: {size}x{size}, patch {patch}, stride {stride}: {total} positions, timing {k}; "
          f"target class {target}", flush=True)

    def minivis_row(mode: str) -> dict[str, Any]:
        kw = {**common, "mode": mode, "threshold": opts.tau}
        fixed, _ = timed(lambda: mv.vis.occlusion(model, x[0], target, positions=cells[:1], **kw), opts.repeat)
        seconds, (scores, info) = timed(lambda: mv.vis.occlusion(model, x[0], target, positions=cells,
                                                                return_info=True, **kw), opts.repeat)
        per = (seconds - fixed) / max(k - 1, 1)
        row = {"method": f"minivis {mode}", "timed_positions": k, "seconds": seconds, "fixed_s": fixed,
               "per_position_ms": 1e3 * per, "full_s": extrapolate(seconds, k, fixed, 1, total),
               "scores": scores}
        if mode != "naive":
            row["mac_speedup"] = info["mac_speedup"]
        print(f"  {row['method']}: {seconds:.1f} s for {k} positions", flush=True)
        return row

    rows_out = [minivis_row(mode) for mode in ("naive", "incremental", "approximate")]
    naive = rows_out[0]["scores"]
    for row in rows_out[1:]:
        row["max_abs_diff"] = float(np.abs(row["scores"].astype(np.float64) - naive).max())
    errors = []
    if rows_out[1]["max_abs_diff"] > TOLERANCE:
        errors.append(f"incremental differs from naive by {rows_out[1]['max_abs_diff']:.3g}")

    # Captum on a grid of about k positions (all of them when k is the full grid): a stride that is a
    # multiple of ours, divides H - P (so Captum's grid is a subgrid of ours) and is at most the
    # patch (Captum's rule)
    steps = [m for m in range(stride, patch + 1, stride) if (size - patch) % m == 0]
    step = stride if k == total else min(steps, key=lambda m: abs(((size - patch) // m + 1) ** 2 - k))
    captum_positions = ((size - patch) // step + 1) ** 2
    xt = torch.from_numpy(x)
    forward = lambda inp: torch.softmax(twin(inp), dim=-1)  # noqa: E731
    with torch.no_grad():
        clean_s, _ = timed(lambda: forward(xt), 3)
        for ppe in (1, opts.batch_size):
            occ = Occlusion(forward)
            seconds, attr = timed(lambda ppe=ppe, occ=occ: occ.attribute(
                xt, target=target, sliding_window_shapes=(3, patch, patch), strides=(3, step, step), baselines=0.0,
                perturbations_per_eval=ppe), opts.repeat)
            per = (seconds - clean_s) / captum_positions
            rows_out.append({"method": f"Captum Occlusion (perturbations_per_eval={ppe})",
                             "timed_positions": captum_positions, "seconds": seconds, "fixed_s": clean_s,
                             "per_position_ms": 1e3 * per,
                             "full_s": seconds if step == stride else
                             extrapolate(seconds, captum_positions, clean_s, 0, total)})
            print(f"  {rows_out[-1]['method']}: {seconds:.1f} s for {captum_positions} positions", flush=True)
    ours = mv.vis.occlusion_attribution(model, x[0], target, patch=patch, stride=step, fill=0.0,
                                        mode="incremental", batch_size=opts.batch_size)
    captum_diff = float(np.abs(ours - attr[0].numpy().mean(axis=0)).max())  # Captum's map is equal on channels
    if captum_diff > TOLERANCE:
        errors.append(f"Captum's attribution differs from minivis's by {captum_diff:.3g}")
    for row in rows_out:
        row.pop("scores", None)
        row["vs_captum_default"] = rows_out[3]["full_s"] / row["full_s"]
        row["vs_captum_batched"] = rows_out[4]["full_s"] / row["full_s"]
    return {"model": name, "size": size, "patch": patch, "stride": stride, "positions": total,
            "timed_positions": k, "captum_stride": step, "target": target, "tau": opts.tau,
            "captum_max_abs_diff": captum_diff, "rows": rows_out, "errors": errors}


# --------------------------------------------------------------------------- report
HEADERS = ["model", "method", "timed pos.", "time s", "ms/position", "full-grid s", "x Captum default",
           "x Captum batched", "MAC speed-up", "max abs diff vs naive"]


def table_rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for res in results:
        for r in res["rows"]:
            out.append([res["model"], r["method"], r["timed_positions"], r["seconds"], r["per_position_ms"],
                        r["full_s"], r["vs_captum_default"], r["vs_captum_batched"], r.get("mac_speedup"),
                        f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "-"])
    return out


def readme_markdown(command: str, device: str, threads: int, load: tuple | None, table: list, notes: list) -> str:
    loaded = "" if load is None or load[0] is None else (
        f" 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end: other processes "
        "only add time, to every row alike (they run one after the other in one process).")
    return "\n".join([
        f"Command: `{command}` on {device}, {threads} thread(s) for torch, BLAS and Numba.{loaded}", "",
        "x Captum = Captum's full-grid time / the row's (> 1: faster than Captum); Captum default is "
        "`perturbations_per_eval=1`, batched is the same batch as minivis. *max abs diff vs naive*: "
        "largest difference of the target probability over the timed positions.", "",
        markdown_table(HEADERS, table), "", *[f"* {n}" for n in notes]])


def main(argv: list[str] | None = None) -> int:
    opts, rest = extra_args(argv)
    args = parse_args(__doc__.splitlines()[0], topic="occlusion", argv=rest)
    dev = setup(args)
    if dev.name != "cpu":
        raise SystemExit("occlusion benchmark: CPU only for now (minivis's GPU backend is not there yet)")
    if args.quick:
        opts.positions, opts.batch_size, opts.repeat = 3, 4, 1
    started = time.perf_counter()
    print(f"{dev.description}, {args.threads} threads (torch, BLAS/OpenMP, Numba)")
    results = [bench_model(name, args, opts) for name in opts.models.split(",")]
    table = table_rows(results)
    print()
    print_table(HEADERS, table, title="occlusion, float32 (x Captum = Captum's full-grid time / this row's)")
    notes = []
    for res in results:
        if res["timed_positions"] < res["positions"]:
            notes.append(f"{res['model']}: minivis timed on {res['timed_positions']} of {res['positions']} "
                         f"positions, Captum on its stride-{res['captum_stride']} grid; full-grid times "
                         f"extrapolated (fixed + per-position x {res['positions']})")
        notes.append(f"{res['model']}: Captum's attribution vs minivis's max abs diff = "
                     f"{res['captum_max_abs_diff']:.1e}; approximate mode tau = {res['tau']}"
                     + (" (random weights: near-uniform probabilities, so small errors by construction)"
                        if res["model"] == "vgg16" else ""))
    errors = [f"{res['model']}: {e}" for res in results for e in res["errors"]]
    for line in notes:
        print(line)
    for line in errors:
        print(f"ERROR {line}", file=sys.stderr)
    payload = {"results": results, "notes": notes, "errors": len(errors), "error_messages": errors,
               "elapsed_s": time.perf_counter() - started,
               "ratio_definition": "Captum's (extrapolated) full-grid time / this row's (> 1: faster than Captum)"}
    load = (args.loadavg_at_start, os.getloadavg()[0]) if hasattr(os, "getloadavg") else None
    finish(args, dev, payload, readme_markdown(command_line(), dev.description, args.threads, load, table, notes),
           heading="Occlusion, CPU")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
