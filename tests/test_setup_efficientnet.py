"""Reading PyTorch checkpoints without torch, and the EfficientNet-Lite0 ONNX graph against a numpy forward pass."""

from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from hugginggpt.setup.efficientnet import (
    BN_EPSILON,
    LITE0_BLOCKS,
    efficientnet_lite0_to_onnx,
    read_torch_checkpoint,
)
from hugginggpt.setup.tfjs import ConversionError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    """Pickles like a torch tensor in a state dict: torch._utils._rebuild_tensor_v2(storage, offset, size, stride)."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Just enough of a `torch` module for pickle to write the globals a real checkpoint names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _storage_type(torch: types.ModuleType, data: np.ndarray) -> type:
    return torch.LongStorage if data.dtype == np.int64 else torch.FloatStorage


def _pickle_state(state: dict, torch: types.ModuleType, legacy: bool) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)

    def persistent_id(obj):
        if isinstance(obj, _Storage):
            if legacy:
                return ("storage", _storage_type(torch, obj.data), obj.key, "cpu", obj.data.size, None)
            return ("storage", _storage_type(torch, obj.data), obj.key, "cpu", obj.data.size)
        return None

    pickler.persistent_id = persistent_id
    pickler.dump(state)
    return buffer.getvalue()


def _example_state() -> tuple[dict, dict[str, np.ndarray], list[_Storage]]:
    """A shared storage holding a 2x3 matrix and its transpose as a strided view, an offset view, and an int64."""
    shared = _Storage("100", np.arange(12, dtype=np.float32))
    counter = _Storage("200", np.array([7], np.int64))
    state = collections.OrderedDict(
        matrix=_Tensor(shared, 0, (2, 3), (3, 1)),
        transposed=_Tensor(shared, 0, (3, 2), (1, 3)),
        tail=_Tensor(shared, 6, (2, 3), (3, 1)),
        count=_Tensor(counter, 0, (), ()),
    )
    base = np.arange(12, dtype=np.float32)
    want = {
        "matrix": base[:6].reshape(2, 3),
        "transposed": base[:6].reshape(2, 3).T,
        "tail": base[6:].reshape(2, 3),
        "count": np.array(7, np.int64),
    }
    return state, want, [shared, counter]


def _check(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype, key


def test_reads_legacy_checkpoint(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    state, want, storages = _example_state()
    with (tmp_path / "legacy.pth").open("wb") as out:
        for header in (_LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, out, protocol=2)
        out.write(_pickle_state(state, fake_torch, legacy=True))
        pickle.dump([s.key for s in storages], out, protocol=2)
        for storage in storages:
            out.write(np.array([storage.data.size], "<i8").tobytes() + storage.data.tobytes())
    _check(read_torch_checkpoint(tmp_path / "legacy.pth"), want)


def test_reads_zip_checkpoint(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    state, want, storages = _example_state()
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as archive:
        archive.writestr("archive/data.pkl", _pickle_state(state, fake_torch, legacy=False))
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.data.tobytes())
    _check(read_torch_checkpoint(tmp_path / "new.pth"), want)


def test_refuses_code_in_checkpoint(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    with (tmp_path / "evil.pth").open("wb") as out:
        for header in (_LEGACY_MAGIC, 1001, {}):
            pickle.dump(header, out, protocol=2)
        pickle.dump({"x": Evil()}, out, protocol=2)
    with pytest.raises(ConversionError, match=r"refers to posix\.getcwd"):
        read_torch_checkpoint(tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="cannot read checkpoint"):
        read_torch_checkpoint(tmp_path / "junk.pth")


class _Touch:
    """Unpickles to a call of `Path(witness).touch()`: a global a checkpoint must never get to run."""

    def __init__(self, witness: Path) -> None:
        self.witness = witness

    def __reduce__(self):
        return self.witness.touch, ()


@pytest.mark.parametrize("position", ["magic", "protocol", "sys_info", "storage_keys"])
def test_refuses_code_in_every_legacy_pickle(tmp_path: Path, fake_torch: types.ModuleType, position: str) -> None:
    """Each pickle of a legacy checkpoint (the three headers, the state dict, the storage keys) goes through a
    restricted unpickler: a disallowed global anywhere is refused before it is called."""
    witness = tmp_path / "ran"
    state, _, storages = _example_state()
    headers = {"magic": _LEGACY_MAGIC, "protocol": 1001, "sys_info": {"protocol_version": 1001, "little_endian": True}}
    keys: object = [s.key for s in storages]
    if position == "storage_keys":
        keys = [_Touch(witness)]
    else:
        headers[position] = _Touch(witness)
    with (tmp_path / "evil.pth").open("wb") as out:
        for header in headers.values():
            pickle.dump(header, out, protocol=2)
        out.write(_pickle_state(state, fake_torch, legacy=True))
        pickle.dump(keys, out, protocol=2)
        for storage in storages:
            out.write(np.array([storage.data.size], "<i8").tobytes() + storage.data.tobytes())
    with pytest.raises(ConversionError, match=r"checkpoint refers to (__builtin__|builtins)\.getattr"):
        read_torch_checkpoint(tmp_path / "evil.pth")
    assert not witness.exists()


# ---- the network ---------------------------------------------------------------------------------------------------


def _random_lite0(rng: np.random.Generator) -> dict[str, np.ndarray]:
    state: dict[str, np.ndarray] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        state[f"{name}.weight"] = (rng.normal(size=(out, inp, k, k)) / np.sqrt(inp * k * k)).astype(np.float32)

    def bn(name: str, n: int) -> None:
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(1, np.int64)

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    index = 0
    for repeats, kernel, _stride, expand, c_in, c_out in LITE0_BLOCKS:
        for r in range(repeats):
            inputs = c_in if r == 0 else c_out
            mid = inputs * expand
            if expand != 1:
                conv(f"_blocks.{index}._expand_conv", mid, inputs, 1)
                bn(f"_blocks.{index}._bn0", mid)
            conv(f"_blocks.{index}._depthwise_conv", mid, 1, kernel)
            bn(f"_blocks.{index}._bn1", mid)
            conv(f"_blocks.{index}._project_conv", c_out, mid, 1)
            bn(f"_blocks.{index}._bn2", c_out)
            index += 1
    conv("_conv_head", 1280, 320, 1)
    bn("_bn1", 1280)
    state["_fc.weight"] = (rng.normal(size=(1000, 1280)) / 36).astype(np.float32)
    state["_fc.bias"] = rng.normal(0, 0.1, 1000).astype(np.float32)
    return state


def _conv_same(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """NCHW convolution with TF 'SAME' padding (extra pixel at the bottom/right), as Conv2dStaticSamePadding does."""
    _, _, h, width = x.shape
    k = w.shape[2]
    oh, ow = -(-h // stride), -(-width // stride)
    ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - width, 0)
    x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    out = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float64)
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            if groups == 1:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
            else:
                out += patch * w[:, 0, i, j][None, :, None, None]
    return out


def _reference(state: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    def bn(y: np.ndarray, name: str) -> np.ndarray:
        g, b = state[f"{name}.weight"], state[f"{name}.bias"]
        m, v = state[f"{name}.running_mean"], state[f"{name}.running_var"]
        return (y - m[:, None, None]) / np.sqrt(v[:, None, None] + BN_EPSILON) * g[:, None, None] + b[:, None, None]

    def relu6(y: np.ndarray) -> np.ndarray:
        return np.clip(y, 0, 6)

    y = relu6(bn(_conv_same(x, state["_conv_stem.weight"], 2, 1), "_bn0"))
    index = 0
    for repeats, _kernel, stride, expand, c_in, c_out in LITE0_BLOCKS:
        for r in range(repeats):
            p = f"_blocks.{index}"
            inputs, s = (c_in, stride) if r == 0 else (c_out, 1)
            z = y
            if expand != 1:
                z = relu6(bn(_conv_same(z, state[f"{p}._expand_conv.weight"], 1, 1), f"{p}._bn0"))
            z = relu6(bn(_conv_same(z, state[f"{p}._depthwise_conv.weight"], s, z.shape[1]), f"{p}._bn1"))
            z = bn(_conv_same(z, state[f"{p}._project_conv.weight"], 1, 1), f"{p}._bn2")
            y = z + y if s == 1 and inputs == c_out else z
            index += 1
    y = relu6(bn(_conv_same(y, state["_conv_head.weight"], 1, 1), "_bn1"))
    return y.mean((2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]


def test_lite0_graph_matches_numpy_forward() -> None:
    rng = np.random.default_rng(3)
    state = _random_lite0(rng)
    model = efficientnet_lite0_to_onnx(state, image_size=40)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.uniform(-1, 1, (2, 3, 40, 40)).astype(np.float32)
    (logits,) = session.run(None, {"image": x})
    want = _reference(state, x.astype(np.float64))
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits, want, rtol=1e-3, atol=1e-3)
    assert np.abs(want).max() > 0.1  # the signal survived the 16 blocks, so the comparison means something


def test_lite0_rejects_other_state_dicts() -> None:
    state = _random_lite0(np.random.default_rng(4))
    del state["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(ConversionError, match=r"_blocks\.3\._depthwise_conv\.weight"):
        efficientnet_lite0_to_onnx(state)
    state = _random_lite0(np.random.default_rng(4))
    state["_blocks.16._depthwise_conv.weight"] = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ConversionError, match="more than 16 blocks"):
        efficientnet_lite0_to_onnx(state)
