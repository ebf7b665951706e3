"""The main job's cost: ``minivis gallery`` from an empty cache, then again with the cache (redraw only).

Each build runs as its own ``minivis gallery`` process (as a user runs it, PyTorch never imported), with
the same thread count as the other benchmarks; we record its wall time, its user+sys CPU time (on a
shared machine the wall time grows with the load, the CPU time much less), its peak resident memory,
and the seconds of each stage as the build prints them. The build runs its parts in worker processes
(``minivis gallery --workers``, default min(2, CPUs)), so the peak memory is the largest *sum* of the
proportional set sizes of the build and its workers, sampled every 0.2 s from ``/proc`` (GNU time's
maximum RSS is the largest single process). There is no reference implementation to
compare with: the ratio column is the issue's target (300 s on 2 cores) over the measured wall time.

    python benchmarks/site.py            # default mode, the README's numbers
    python benchmarks/site.py --quick    # --fast mode (a smoke test of the harness)
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, fmt, markdown_table, parse_args, print_table, update_readme_section, write_json

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 300.0  # the target for the default build on 2 cores
STAGE_LINE = re.compile(r"site: (\S+): (\d+) pages in ([0-9.]+) s")


def tree_rss_mb(pid: int) -> float:
    """Memory of ``pid`` and all its descendants, in MB: the sum of their proportional set sizes (a page
    shared by n processes, e.g. what the forked workers share with the build, counts 1/n in each; summed
    RSS would count it n times). Linux ``/proc`` (VmRSS where smaps_rollup is missing); 0 elsewhere."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup")
            text = rollup.read_text() if rollup.exists() else Path(f"/proc/{p}/status").read_text()
            found = re.search(r"^(?:Pss|VmRSS):\s+(\d+)", text, re.MULTILINE)
            total += int(found.group(1)) if found else 0
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, AttributeError, ValueError):
            continue
    return total / 1024


class PeakMemory:
    """Samples ``tree_rss_mb(pid)`` every ``interval`` seconds in a thread; ``.peak`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def build(out: Path, mode: str, threads: int) -> dict[str, Any]:
    """One ``minivis gallery`` run in a child process: wall, user+sys, peak RSS, stage times."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    flags = {"fast": ["--fast"], "default": [], "full": ["--full"]}[mode]
    # GNU time reports this run's own peak memory (getrusage of children keeps the largest child's so far)
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").is_file() else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([*timer, sys.executable, "-m", "minivis.cli", "gallery", *flags, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakMemory(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    tree_peak = sampler.stop()
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"minivis gallery failed:\n{proc.stderr[-3000:]}")
    stages = {m.group(1): float(m.group(3)) for m in STAGE_LINE.finditer(proc.stderr + proc.stdout)}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_mb": (int(peak.group(1)) if peak else after.ru_maxrss) / 1024, "peak_tree_mb": tree_peak,
            "stages": stages,
            "time_v": proc.stderr[proc.stderr.find("Command being timed"):] if peak else "",
            "loadavg_after": os.getloadavg()[0]}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], topic="site")
    mode = "fast" if args.quick else "default"
    folder = Path(tempfile.mkdtemp(prefix="minivis-site-"))
    load_before = os.getloadavg()[0]
    try:
        cold = build(folder / "site", mode, args.threads)
        warm = build(folder / "site", mode, args.threads)  # same folder: every result comes from the cache
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    headers = ["run", "wall s", "user+sys s", "peak memory MB (all processes, PSS)", "largest process MB",
               "target 300 s / wall"]
    rows = [[name, fmt(r["wall_s"], 1), fmt(r["cpu_s"], 1), fmt(r["peak_tree_mb"], 0), fmt(r["peak_rss_mb"], 0),
             fmt(TARGET_S / r["wall_s"])]
            for name, r in (("first run (empty cache)", cold), ("second run (cached: redraw only)", warm))]
    print_table(headers, rows, title=f"minivis gallery ({mode} mode, {args.threads} threads)")
    stage_rows = [[stage, fmt(cold["stages"].get(stage), 1), fmt(warm["stages"].get(stage), 1)]
                  for stage in cold["stages"]]
    print_table(["stage", "first run s", "second run s"], stage_rows,
                title="per stage (seconds of its parts, summed over the workers)")
    markdown = (markdown_table(headers, rows) + "\n\n" + markdown_table(["stage", "first run s", "second run s"],
                                                                       stage_rows)
                + f"\n\n`minivis gallery` in {mode} mode, {args.threads} threads (the default workers), one child "
                  f"process per run (stage seconds are its parts' seconds summed over the workers); "
                  f"load average {load_before:.1f} before the first run and {warm['loadavg_after']:.1f} after "
                  f"the second. Command: `python benchmarks/site.py`.")
    payload = {"mode": mode, "threads": args.threads, "target_s": TARGET_S, "cold": cold, "warm": warm,
               "loadavg_before": load_before}
    path = write_json(Path(args.out) / "site-cpu.json", {"topic": "site", "quick": args.quick, **payload})
    print(f"\nwrote {path}")
    if args.readme is not None:
        update_readme_section(Path(args.readme), "site-cpu", markdown, "The site (`minivis gallery`), CPU")
        print(f"updated the site-cpu table in {args.readme}")


if __name__ == "__main__":
    if not RESULTS_DIR.is_dir():
        RESULTS_DIR.mkdir(parents=True)
    main()
