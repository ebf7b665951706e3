import os

import numpy as np
import pytest

from minivis.kernels import cpu_workspace

os.environ.setdefault("MPLBACKEND", "Agg")

# Every array the kernels hand out inside a method goes through the buffer pool, not only the
# large ones: the methods' parity tests then also check that no array is reused while alive.
cpu_workspace.MIN_BYTES = 0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
