"""Small helpers every lesson shares: where figures go, the FAST flag, and saving a figure.

    from _common import FAST, savefig, sized
    n = sized(full=256, fast=32)   # MINIVIS_FAST=1 picks the small size (the test suite sets it)
    savefig(fig, "01_conv_matrix")  # -> $MINIVIS_FIGURES/01_conv_matrix.png (or lessons/figures/)

Lessons import this module by its bare name: ``python lessons/NN_topic.py`` puts ``lessons/`` on
``sys.path``, and a notebook opened from ``lessons/`` runs there too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

FAST: bool = os.environ.get("MINIVIS_FAST", "") == "1"
"""True when MINIVIS_FAST=1: lessons shrink their sizes so that every one runs in the tests."""


def _interactive() -> bool:
    """True inside Jupyter/IPython, where figures should also be shown inline."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


# Run as a script (or in the tests) there is no screen to draw on: render off-screen to PNG.
# An explicit MPLBACKEND from the user still wins.
if not _interactive() and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)


def figure_dir() -> Path:
    """The folder for figures: ``$MINIVIS_FIGURES`` if set, else ``lessons/figures/`` (git-ignored)."""
    folder = Path(os.environ.get("MINIVIS_FIGURES") or Path(__file__).resolve().parent / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sized(full, fast):
    """``fast`` under MINIVIS_FAST=1, else ``full`` (image sizes, step counts, sample counts)."""
    return fast if FAST else full


def savefig(fig: plt.Figure, name: str, dpi: int = 120) -> Path:
    """Save ``fig`` as ``<figure_dir>/<name>.png``, print where, and close it (show it in a notebook)."""
    path = figure_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    print(f"saved {path}")
    if _interactive():
        plt.show()
    else:
        plt.close(fig)
    return path
