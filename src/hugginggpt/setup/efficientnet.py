"""EfficientNet-Lite0 from a PyTorch state dict to ONNX, read with numpy and built with `onnx` (no torch needed)."""

from __future__ import annotations

import collections
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .tfjs import OPSET, ConversionError

# EfficientNet-Lite0 blocks as (repeats, kernel, stride, expand ratio, input filters, output filters), from
# efficientnet_lite_builder.py; lite models use ReLU6, no squeeze-excite, and TF "SAME" padding.
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPSILON = 1e-3
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


# ---- reading PyTorch checkpoints without torch ------------------------------------------------------------------
# every pickle in a checkpoint is read with a restricted unpickler (never `pickle.load`): a downloaded checkpoint
# cannot run code, whichever of its pickles a global is hidden in


@dataclass
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    dtype: np.dtype
    size: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        if self.storage.data is None:
            raise ConversionError("checkpoint storage was never read")
        base = self.storage.data
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.shape, strides=tuple(s * itemsize for s in self.stride)
        )
        return np.array(view)


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any):
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles a state dict, resolving only the few globals a state dict uses (never arbitrary code)."""

    def __init__(self, handle: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(handle)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise ConversionError(f"checkpoint refers to {module}.{name}, which a plain state dict never needs")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ConversionError(f"unexpected persistent id in checkpoint: {pid!r}")
        storage_type, key, _location, size = pid[1], str(pid[2]), pid[3], int(pid[4])
        if len(pid) > 5 and pid[5] is not None:
            raise ConversionError("checkpoint uses storage views, which this reader does not support")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, size)
        return self.storages[key]


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles the plain values around a legacy checkpoint's state dict (its magic number, protocol version,
    system info and storage keys): numbers, strings, lists and dicts only, so any global or persistent id is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise ConversionError(f"checkpoint refers to {module}.{name}, which a plain state dict never needs")

    def persistent_load(self, pid: Any) -> Any:
        raise ConversionError(f"unexpected persistent id in checkpoint header: {pid!r}")


def _load_plain(handle: BinaryIO) -> Any:
    return _PlainUnpickler(handle).load()


def read_torch_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict (legacy or zip serialisation) as numpy arrays, without importing torch."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip_checkpoint(path)
        with path.open("rb") as handle:
            return _read_legacy_checkpoint(handle)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ConversionError(f"cannot read checkpoint {path}: {exc}") from exc


def _read_legacy_checkpoint(handle: BinaryIO) -> dict[str, np.ndarray]:
    if _load_plain(handle) != _LEGACY_MAGIC:
        raise ConversionError("not a PyTorch checkpoint (bad magic number)")
    _load_plain(handle)  # protocol version
    sys_info = _load_plain(handle)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ConversionError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _CheckpointUnpickler(handle, storages).load()
    for key in _load_plain(handle):
        storage = storages[str(key)]
        count = int(np.frombuffer(handle.read(8), "<i8")[0])
        raw = handle.read(count * storage.dtype.itemsize)
        if len(raw) != count * storage.dtype.itemsize:
            raise ConversionError("checkpoint ends inside a tensor")
        storage.data = np.frombuffer(raw, storage.dtype)
    return _materialise(result)


def _read_zip_checkpoint(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ConversionError("zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        with archive.open(pkl) as handle:
            result = _CheckpointUnpickler(handle, storages).load()  # type: ignore[arg-type]
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}data/{key}"), storage.dtype)
    return _materialise(result)


def _materialise(result: Any) -> dict[str, np.ndarray]:
    if isinstance(result, dict) and "state_dict" in result:
        result = result["state_dict"]
    if not isinstance(result, dict):
        raise ConversionError("checkpoint does not hold a state dict")
    return {str(k): v.array() for k, v in result.items() if isinstance(v, _TensorRef)}


# ---- building the ONNX graph -----------------------------------------------------------------------------------


class _Graph:
    def __init__(self) -> None:
        import onnx

        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _take(state: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in state:
        raise ConversionError(f"state dict has no {key!r}: is this EfficientNet-Lite0?")
    return state[key].astype(np.float32)


def _conv_bn(
    graph: _Graph,
    state: dict[str, np.ndarray],
    x: str,
    conv: str,
    bn: str,
    *,
    stride: int = 1,
    group: int = 1,
    relu6: bool = True,
) -> str:
    """Conv (no bias) + BatchNorm folded into one Conv, then ReLU6."""
    weight = _take(state, f"{conv}.weight")
    gamma, beta = _take(state, f"{bn}.weight"), _take(state, f"{bn}.bias")
    mean, var = _take(state, f"{bn}.running_mean"), _take(state, f"{bn}.running_var")
    factor = gamma / np.sqrt(var + BN_EPSILON)
    folded = (weight * factor.reshape(-1, 1, 1, 1)).astype(np.float32)
    bias = (beta - mean * factor).astype(np.float32)
    y = graph.op(
        "Conv",
        [x, graph.const(folded, f"{conv}.weight"), graph.const(bias, f"{conv}.bias")],
        conv,
        strides=[stride, stride],
        group=group,
        auto_pad="SAME_UPPER",
    )
    if not relu6:
        return y
    zero, six = graph.const(np.array(0.0, np.float32), "zero"), graph.const(np.array(6.0, np.float32), "six")
    return graph.op("Clip", [y, zero, six], f"{conv}.relu6")


def efficientnet_lite0_to_onnx(state: dict[str, np.ndarray], *, image_size: int = 224) -> Any:
    """The EfficientNet-Lite0 forward pass (as efficientnet-lite-pytorch 0.1.0 defines it, ReLU6 throughout) as an
    ONNX model: input `image` [N,3,H,W] normalised as (rgb - 127) / 128, output `logits` [N,1000]."""
    import onnx

    graph = _Graph()
    x = _conv_bn(graph, state, "image", "_conv_stem", "_bn0", stride=2)
    index = 0
    for repeats, _kernel, stride, expand, c_in, c_out in LITE0_BLOCKS:
        for r in range(repeats):
            prefix = f"_blocks.{index}"
            block_in = x
            block_stride = stride if r == 0 else 1
            inputs = c_in if r == 0 else c_out
            if expand != 1:
                x = _conv_bn(graph, state, x, f"{prefix}._expand_conv", f"{prefix}._bn0")
            x = _conv_bn(
                graph,
                state,
                x,
                f"{prefix}._depthwise_conv",
                f"{prefix}._bn1",
                stride=block_stride,
                group=inputs * expand,
            )
            x = _conv_bn(graph, state, x, f"{prefix}._project_conv", f"{prefix}._bn2", relu6=False)
            if block_stride == 1 and inputs == c_out:
                x = graph.op("Add", [x, block_in], f"{prefix}.skip")
            index += 1
    if f"_blocks.{index}._depthwise_conv.weight" in state:
        raise ConversionError(f"state dict has more than {index} blocks: it is not EfficientNet-Lite0")
    x = _conv_bn(graph, state, x, "_conv_head", "_bn1")
    x = graph.op("GlobalAveragePool", [x], "pool")
    x = graph.op("Flatten", [x], "flatten", axis=1)
    fc_w, fc_b = _take(state, "_fc.weight"), _take(state, "_fc.bias")
    graph.nodes.append(
        onnx.helper.make_node(
            "Gemm", [x, graph.const(fc_w, "_fc.weight"), graph.const(fc_b, "_fc.bias")], ["logits"], transB=1
        )
    )
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes,
            "efficientnet_lite0",
            [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 3, image_size, image_size])],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", fc_w.shape[0]])],
            graph.initializers,
        ),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="hugginggpt.experts.efficientnet",
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model
