"""Every lesson runs as a script under MINIVIS_FAST=1, writes figures, parses as a jupytext
percent notebook, and is listed in lessons/README.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LESSONS_DIR = REPO / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))

DEFAULT_TIMEOUT_S = 300  # generous for a FAST lesson on 2 shared cores, Numba compiling from a cold cache
SLOW = {
    # "NN_name.py": timeout_s for lessons that train or optimise (also marked slow)
}


def _params():
    for path in LESSONS:
        marks = [pytest.mark.slow] if path.name in SLOW else []
        yield pytest.param(path, id=path.stem, marks=marks)


def test_there_are_lessons():
    assert LESSONS, f"no lessons found under {LESSONS_DIR}"


@pytest.mark.parametrize("path", list(_params()))
def test_lesson_runs_and_saves_figures(path: Path, tmp_path: Path):
    env = dict(os.environ, MINIVIS_FAST="1", MPLBACKEND="Agg", MINIVIS_FIGURES=str(tmp_path))
    # a script's sys.path starts at lessons/, not here: put this checkout first, so that the lesson
    # imports the minivis under test even where another checkout is the one installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    try:
        result = subprocess.run([sys.executable, str(path)], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=SLOW.get(path.name, DEFAULT_TIMEOUT_S))
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{path.name} did not finish in {err.timeout} s")
    assert result.returncode == 0, (
        f"{path.name} exited with {result.returncode}\n--- stdout (tail)\n{result.stdout[-3000:]}"
        f"\n--- stderr (tail)\n{result.stderr[-3000:]}"
    )
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs, f"{path.name} wrote no PNG figure to MINIVIS_FIGURES"
    assert all(p.stat().st_size > 0 for p in pngs)
    prefix = path.name[:2] + "_"
    assert all(p.name.startswith(prefix) for p in pngs), (
        f"{path.name}: figure names should start with {prefix!r} (lessons share one folder), "
        f"got {[p.name for p in pngs]}"
    )


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_a_jupytext_percent_script(path: Path):
    jupytext = pytest.importorskip("jupytext")
    text = path.read_text(encoding="utf-8")
    assert jupytext.formats.guess_format(text, ".py")[0] == "percent", f"{path.name}: not in percent format"
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert "markdown" in kinds and "code" in kinds, f"{path.name}: needs both prose and code cells"
    assert kinds[0] == "markdown", f"{path.name}: should open with a prose cell (the question)"
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_readme_lists_every_lesson():
    readme = (LESSONS_DIR / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in LESSONS if p.name not in readme]
    assert not missing, f"lessons/README.md does not list {missing}"


def test_no_committed_notebooks():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    notebooks = subprocess.run(["git", "ls-files", "lessons/*.ipynb"], cwd=REPO, capture_output=True,
                               text=True).stdout.split()
    assert not notebooks, f"the .py lessons are the source; don't commit notebooks: {notebooks}"
