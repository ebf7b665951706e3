"""``site.core.fingerprint``: the hash that keys cached site results to the model they came from."""

from __future__ import annotations

import hashlib

import numpy as np

import minivis as mv
from minivis import nn
from minivis.site.core import fingerprint


def _before(model) -> str:
    """The fingerprint as it was computed before ``validate.host`` (``getattr(value, "data", value)``): the
    reference every existing cache was keyed with."""
    digest = hashlib.sha1(type(model).__name__.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(np.asarray(getattr(value, "data", value))).tobytes())
    return digest.hexdigest()[:16]


class _Duck:
    """Anything with a ``state_dict``: what fingerprint reads."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state


def _arange_model() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    model.load_state_dict({k: (np.arange(v.size, dtype=v.dtype).reshape(v.shape) / 7 + 0.5).astype(v.dtype)
                           if v.dtype.kind == "f" else np.array(4) for k, v in model.state_dict().items()})
    return model


def test_fingerprints_are_unchanged_so_cached_builds_stay_valid():
    model = _arange_model()
    assert fingerprint(model) == _before(model) == "99d1d56f234b0a40"  # computed by the code before host()
    rng = np.random.default_rng(0)
    block = rng.standard_normal((4, 6))
    state = {"a": block.astype(np.float32), "b": block[:, ::2], "c": np.array(3, np.int64), "d": block > 0,
             "e": block.T.astype(np.float16)}  # dtypes, a 0-d array, strided views
    assert fingerprint(_Duck(state)) == _before(_Duck(state))
    state["b"] = state["b"].copy()
    state["b"][0, 0] += 1e-12
    assert fingerprint(_Duck(state)) != _before(_Duck({**state, "b": block[:, ::2]}))  # it follows the values


def test_tensors_hash_as_their_arrays_and_any_dtype_hashes():
    block = np.random.default_rng(1).standard_normal((3, 5))
    assert fingerprint(_Duck({"w": mv.tensor(block)})) == fingerprint(_Duck({"w": block}))
    stamps = np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]")  # its memoryview could not be made
    assert fingerprint(_Duck({"t": stamps})) != fingerprint(_Duck({"t": stamps + 1}))
