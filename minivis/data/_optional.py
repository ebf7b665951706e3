"""Lazy imports of the optional packages (scikit-learn, scikit-image, mlxtend) with an error that
says what to install: minivis itself runs on NumPy, SciPy and Pillow alone."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, pip_name: str, needed_by: str) -> ModuleType:
    """Import ``module`` (e.g. "sklearn.datasets") or raise ImportError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{needed_by} needs the optional package {pip_name!r} ({module} could not be imported: {e}); "
            f"install it with `pip install {pip_name}` or `pip install 'minivis[data]'`"
        ) from e
