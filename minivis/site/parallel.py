"""Running the parts of a build side by side: ``workers`` processes, each on one CPU thread.

The build is mostly Python and matplotlib, about one CPU-second per wall-second (benchmarks/README.md,
"The site"): one process cannot keep a second core busy, and threads would share one interpreter. So
the stages are cut into independent parts (a photo, a model's microscope, a synthesis page: ``Part``)
and ``workers`` processes run them, the costliest first, each part with Numba and BLAS on one thread
(``cpu_threads.limit_threads``), so that two workers on two cores do not oversubscribe them.

The workers are forked from the build (POSIX), so they start with its context (models, photos,
fixtures) without pickling it; what comes back is each part's pages, notes and seconds. Where fork
is missing, or ``workers == 1``, the parts run one after the other in this process.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

try:
    import resource  # POSIX: a worker's peak memory, reported with each part
except ImportError:  # pragma: no cover
    resource = None

from minivis import backend
from minivis.site.core import BuildContext, Page, Part, Stage

SKIPPED = (FileNotFoundError, ImportError)  # missing data or an optional package: a note, not a failure


@dataclass
class PartResult:
    """What one part returns: its pages (None: skipped, ``skipped`` says why), the notes it added, its seconds."""

    stage: int
    part: int
    name: str
    pages: list[Page] | None
    skipped: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_mb: float = 0.0  # the peak resident memory of the process that ran it, so far


def stage_parts(stage: Stage, ctx: BuildContext) -> list[Part]:
    """A stage's parts, or the whole stage as one part."""
    return stage.parts(ctx) if stage.parts is not None else [Part(stage.name, stage.build)]


def run_part(ctx: BuildContext, part: Part, stage: int, index: int) -> PartResult:
    """``part.build(ctx)``, timed; a missing dataset or package gives a skipped result, anything else raises."""
    before = len(ctx.notes)
    start = time.perf_counter()
    try:
        pages, skipped = part.build(ctx), ""
    except SKIPPED as err:
        pages, skipped = None, str(err)
    notes = ctx.notes[before:]
    del ctx.notes[before:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if resource else 0.0  # Linux: kB
    return PartResult(stage, index, part.name, pages, skipped, notes, time.perf_counter() - start, peak)


# The work of a parallel build, set before the pool forks its workers (which inherit it).
_WORK: tuple[BuildContext, list[tuple[int, int, Part]]] | None = None


def _run_in_worker(job: int) -> PartResult:
    ctx, jobs = _WORK
    stage, index, part = jobs[job]
    threads = backend.kernels("threads", np.empty(0), "minivis gallery")  # minivis/kernels/cpu_threads.py
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    with threads.limit_threads(1), threadpool_limits(1):
        return run_part(ctx, part, stage, index)


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def run_parts(ctx: BuildContext, jobs: Sequence[tuple[int, int, Part]], workers: int) -> list[PartResult]:
    """Run every (stage index, part index, part) and return the results as they finish.

    With ``workers > 1`` (and fork available) the parts run in that many forked processes, costliest
    first, under one progress bar; the first error other than a skip stops the build (and is raised).
    """
    global _WORK
    if workers <= 1 or len(jobs) <= 1 or not can_fork():
        return [run_part(ctx, part, s, i) for s, i, part in jobs]
    order = sorted(range(len(jobs)), key=lambda j: -jobs[j][2].cost)
    worker_ctx = BuildContext(out=ctx.out, mode=ctx.mode, cache=ctx.cache, models=ctx.models,
                              photo_names=ctx.photo_names, photos=ctx.photos, fashion=ctx.fashion,
                              progress=False)  # one bar here instead of interleaved bars from each worker
    _WORK = (worker_ctx, list(jobs))
    results = []
    bar = tqdm(total=len(jobs), desc=f"site ({workers} workers)", unit="part", disable=not ctx.progress)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = {pool.submit(_run_in_worker, j) for j in order}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        raise
                    results.append(result)
                    bar.update(1)
                    if ctx.progress:
                        tqdm.write(f"site: part {result.name} in {result.seconds:.1f} s (worker peak "
                                   f"{result.peak_mb:.0f} MB)")
    finally:
        bar.close()
        _WORK = None
    return results
