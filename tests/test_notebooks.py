"""Lessons open as notebooks: jupytext turns the percent script into a notebook and nbclient runs it in a
real Jupyter kernel (ipykernel) under MINIVIS_FAST=1, so the "open it as a notebook" promise is checked,
inline figures included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LESSONS_DIR = REPO / "lessons"
NOTEBOOK_LESSONS = ["01_convolution_and_its_transpose.py", "06_filters_activations_receptive_fields.py"]
TIMEOUT_S = 300  # per cell; a FAST lesson on 2 shared cores with Numba compiling from a cold cache


@pytest.mark.parametrize("name", NOTEBOOK_LESSONS)
def test_lesson_runs_as_a_notebook(name: str, tmp_path: Path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel", reason="needs ipykernel for the python3 kernel")
    notebook = jupytext.read(LESSONS_DIR / name)
    # The kernel inherits the environment: small sizes, figures into tmp_path, and this checkout's minivis.
    monkeypatch.setenv("MINIVIS_FAST", "1")
    monkeypatch.setenv("MINIVIS_FIGURES", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # let the kernel pick its inline backend, as in Jupyter
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(LESSONS_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "every code cell ran"
    errors = [o for cell in code for o in cell.outputs if o.get("output_type") == "error"]
    assert not errors
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no figure was shown inline"
    assert sorted(tmp_path.glob(f"{name[:2]}_*.png")), f"{name}: no figure saved to MINIVIS_FIGURES"
