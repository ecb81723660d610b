"""TF.js graph models (model.json + weight shards) converted to ONNX with the `onnx` package, without TensorFlow.

One module: it is one converter, long for its table of TF ops, each op a method that shares the converter's graph
state (the converted values, and which tensors are held as NCHW)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HuggingGPTError

OPSET = 18

_DTYPES = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_HALF": np.dtype(np.float16),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_INT8": np.dtype(np.int8),
    "DT_BOOL": np.dtype(np.bool_),
}
_MANIFEST_DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "bool": np.dtype(np.bool_),
}
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)
_UNARY = {
    "Relu": "Relu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "Exp": "Exp",
    "Log": "Log",
    "Sqrt": "Sqrt",
    "Neg": "Neg",
    "Abs": "Abs",
    "Floor": "Floor",
    "Ceil": "Ceil",
    "Elu": "Elu",
    "Softplus": "Softplus",
    "Reciprocal": "Reciprocal",
    "Identity": "Identity",
    "StopGradient": "Identity",
}
_BINARY = {
    "Add": "Add",
    "AddV2": "Add",
    "BiasAdd": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Div": "Div",
    "Maximum": "Max",
    "Minimum": "Min",
    "Pow": "Pow",
    "Equal": "Equal",
    "Greater": "Greater",
    "Less": "Less",
    "GreaterEqual": "GreaterOrEqual",
    "LessEqual": "LessOrEqual",
}
_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}
_CONV = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")


class ConversionError(HuggingGPTError, ValueError):
    """A model could not be converted: unsupported op, missing weights, or a malformed model file."""


@dataclass
class TfjsModel:
    """A parsed TF.js graph model: its nodes, its weights as arrays, and its signature."""

    nodes: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]


def load_tfjs(model_json: Path) -> TfjsModel:
    """Read model.json and the weight shards it lists (float16- or uint8-quantised weights are dequantised)."""
    try:
        spec = json.loads(Path(model_json).read_text())
        nodes = spec["modelTopology"]["node"]
        groups = spec["weightsManifest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"{model_json} is not a TF.js graph model: {exc}") from exc
    weights = read_weights(groups, Path(model_json).parent)
    signature = spec.get("signature") or {}
    inputs = list((signature.get("inputs") or {}).keys()) or [n["name"] for n in nodes if n["op"] == "Placeholder"]
    outputs = list((signature.get("outputs") or {}).keys())
    if not outputs:
        consumed = {_node_name(ref) for n in nodes for ref in n.get("input", [])}
        outputs = [n["name"] for n in nodes if n["name"] not in consumed and n["op"] not in ("Const", "Placeholder")]
    return TfjsModel(nodes=nodes, weights=weights, inputs=inputs, outputs=outputs)


def read_weights(groups: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Weights from a TF.js weightsManifest: each group's shards are concatenated, then read in order."""
    weights: dict[str, np.ndarray] = {}
    for group in groups:
        try:
            data = b"".join((folder / path).read_bytes() for path in group["paths"])
        except OSError as exc:
            raise ConversionError(f"missing weight shard: {exc}") from exc
        offset = 0
        for entry in group["weights"]:
            shape = [int(d) for d in entry["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = entry.get("quantization")
            stored = _MANIFEST_DTYPES.get(quant["dtype"] if quant else entry["dtype"])
            if stored is None:
                raise ConversionError(f"weight {entry['name']!r} has unsupported dtype {entry['dtype']!r}")
            end = offset + count * stored.itemsize
            if end > len(data):
                raise ConversionError(f"weight shards end before weight {entry['name']!r}")
            array = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset = end
            target = _MANIFEST_DTYPES[entry["dtype"]]
            if quant and "scale" in quant:
                array = array.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant.get("min", 0.0))
            weights[entry["name"]] = array.astype(target).reshape(shape)
    return weights


def tfjs_to_onnx(model: TfjsModel, *, outputs: list[str] | None = None, name: str = "tfjs") -> Any:
    """Convert a TF.js graph model to an `onnx.ModelProto` (opset 18). Activations run in NCHW inside the graph;
    inputs and outputs keep TF's NHWC layout, so callers feed and read tensors exactly as for the TF.js model."""
    import onnx

    converter = _Converter(model)
    graph = converter.convert(outputs or model.outputs, name)
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="hugginggpt.experts.tfjs"
    )
    proto.ir_version = min(proto.ir_version, 9)
    proto = onnx.shape_inference.infer_shapes(proto)
    onnx.checker.check_model(proto)
    return proto


def _node_name(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


def _ref_key(ref: str) -> str:
    """`node` and `node:0` are the same tensor; `node:1` is the second output."""
    name, _, index = ref.partition(":")
    return f"{name}:{index or 0}"


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    value = (node.get("attr") or {}).get(key)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "f" in items:
            return [float(v) for v in items["f"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    return value


@dataclass
class _Value:
    """A converted tensor: its ONNX name, whether it is an NHWC tensor held as NCHW, and what is known of it."""

    name: str
    nchw: bool = False
    rank: int | None = None
    dtype: np.dtype | None = None


class _Converter:
    """Walks the TF graph in topological order and emits ONNX nodes, tracking which tensors are held as NCHW."""

    def __init__(self, model: TfjsModel) -> None:
        import onnx

        self.onnx = onnx
        self.model = model
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.values: dict[str, _Value | np.ndarray] = {}
        self._names: set[str] = set()
        self._layouts: dict[tuple[str, bool], str] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "Placeholder": self._placeholder,
            "Const": self._const_node,
            "Conv2D": self._conv,
            "_FusedConv2D": self._conv,
            "DepthwiseConv2dNative": self._conv,
            "FusedDepthwiseConv2dNative": self._conv,
            "MaxPool": self._pool,
            "AvgPool": self._pool,
            "ResizeBilinear": self._resize,
            "ResizeNearestNeighbor": self._resize,
            "Relu6": self._relu6,
            "LeakyRelu": self._leaky_relu,
            "Rsqrt": self._rsqrt,
            "Square": self._square,
            "FloorDiv": self._floor_div,
            "FloorMod": self._floor_mod,
            "Cast": self._cast,
            "ConcatV2": self._concat,
            "Reshape": self._reshape,
            "ExpandDims": self._expand_dims,
            "Squeeze": self._squeeze,
            "StridedSlice": self._strided_slice,
            "GatherV2": self._gather,
            "TopKV2": self._topk,
            "Transpose": self._transpose,
            "Pack": self._pack,
            "Softmax": self._softmax,
            "Pad": self._pad,
            "PadV2": self._pad,
            "SplitV": self._split,
            "SparseToDense": self._sparse_to_dense,
            "AddN": self._add_n,
            "Conv2DBackpropInput": self._conv_transpose,
        }
        for op in _UNARY:
            self._handlers[op] = self._unary
        for op in _BINARY:
            self._handlers.setdefault(op, self._binary)
        for op in _REDUCE:
            self._handlers[op] = self._reduce

    # ---- graph walk ------------------------------------------------------------------------------------------

    def convert(self, outputs: list[str], name: str) -> Any:
        helper = self.onnx.helper
        by_name = {n["name"]: n for n in self.model.nodes}
        missing = [o for o in outputs if _node_name(o) not in by_name]
        if missing:
            raise ConversionError(f"outputs not in the graph: {', '.join(missing)}")
        unsupported = sorted({n["op"] for n in self._needed(outputs, by_name) if n["op"] not in self._handlers})
        if unsupported:
            raise ConversionError(f"unsupported TF ops: {', '.join(unsupported)}")
        for node in self._needed(outputs, by_name):
            self._handlers[node["op"]](node)
        graph_outputs = []
        for output in outputs:
            value = self.values[_ref_key(output)]
            if isinstance(value, np.ndarray):
                value = _Value(self._initializer(value, output), rank=value.ndim, dtype=value.dtype)
            source = self._layout(value, nchw=False)
            self._emit("Identity", [source], [output])
            elem = self.onnx.helper.np_dtype_to_tensor_dtype(value.dtype) if value.dtype is not None else 1
            graph_outputs.append(
                helper.make_tensor_value_info(output, elem, None if value.rank is None else [None] * value.rank)
            )
        return helper.make_graph(self.nodes, name, self.inputs, graph_outputs, self.initializers)

    def _needed(self, outputs: list[str], by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The nodes the outputs depend on, in an order where every input comes first."""
        order: list[dict[str, Any]] = []
        state: dict[str, int] = {}
        stack = [(_node_name(o), False) for o in reversed(outputs)]
        while stack:
            node_name, done = stack.pop()
            if done:
                state[node_name] = 2
                order.append(by_name[node_name])
                continue
            if state.get(node_name):
                if state[node_name] == 1:
                    raise ConversionError(f"the graph has a cycle through {node_name!r}")
                continue
            if node_name not in by_name:
                raise ConversionError(f"node {node_name!r} is used but not defined")
            state[node_name] = 1
            stack.append((node_name, True))
            for ref in reversed(by_name[node_name].get("input", [])):
                if not ref.startswith("^") and not state.get(_node_name(ref)):
                    stack.append((_node_name(ref), False))
        return order

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        candidate, i = base, 0
        while candidate in self._names:
            i += 1
            candidate = f"{base}_{i}"
        self._names.add(candidate)
        return candidate

    def _emit(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        self.nodes.append(
            self.onnx.helper.make_node(op, inputs, outputs, name=self._fresh(f"{op}/{outputs[0]}"), **attrs)
        )

    def _initializer(self, array: np.ndarray, hint: str) -> str:
        name = self._fresh(f"{hint}/const")
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _op(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self._fresh(hint)
        self._emit(op, inputs, [out], **attrs)
        return out

    def _args(self, node: dict[str, Any]) -> list[_Value | np.ndarray]:
        refs = [ref for ref in node.get("input", []) if not ref.startswith("^")]
        try:
            return [self.values[_ref_key(ref)] for ref in refs]
        except KeyError as exc:
            raise ConversionError(f"{node['name']}: input {exc} has not been converted") from exc

    def _set(self, node: dict[str, Any], value: _Value | np.ndarray, index: int = 0) -> None:
        self.values[f"{node['name']}:{index}"] = value

    def _const(self, node: dict[str, Any], value: _Value | np.ndarray, what: str) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise ConversionError(f"{node['name']} ({node['op']}): {what} must be a constant")
        return value

    def _layout(self, value: _Value, *, nchw: bool) -> str:
        """The ONNX name of `value` in the layout asked for, inserting (and caching) a Transpose when needed."""
        if value.nchw == nchw:
            return value.name
        if not nchw and value.rank not in (4, None):
            return value.name
        key = (value.name, nchw)
        if key not in self._layouts:
            perm = _TO_NCHW if nchw else _TO_NHWC
            self._layouts[key] = self._op(
                "Transpose", [value.name], f"{value.name}/{'nchw' if nchw else 'nhwc'}", perm=perm
            )
        return self._layouts[key]

    def _tensor(self, value: _Value | np.ndarray, hint: str, *, nchw: bool = False) -> str:
        if isinstance(value, np.ndarray):
            if nchw and value.ndim == 4:
                value = value.transpose(_TO_NCHW)
            return self._initializer(value, hint)
        return self._layout(value, nchw=nchw)

    def _nhwc(self, node: dict[str, Any], value: _Value | np.ndarray) -> str:
        return self._tensor(value, node["name"], nchw=False)

    def _result(self, node: dict[str, Any], index: int = 0) -> str:
        name = f"{node['name']}:{index}"
        self._names.add(name)
        return name

    # ---- sources -----------------------------------------------------------------------------------------------

    def _placeholder(self, node: dict[str, Any]) -> None:
        dtype = _DTYPES.get(_attr(node, "dtype", "DT_FLOAT"), np.dtype(np.float32))
        shape_attr = _attr(node, "shape", {}) or {}
        dims = [int(d.get("size", -1)) for d in shape_attr.get("shape", shape_attr).get("dim", [])]
        shape = [d if d >= 0 else None for d in dims] or None
        helper = self.onnx.helper
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        self.inputs.append(helper.make_tensor_value_info(node["name"], elem, shape))
        self._names.add(node["name"])
        self._set(node, _Value(node["name"], rank=len(dims) if shape else None, dtype=dtype))

    def _const_node(self, node: dict[str, Any]) -> None:
        if node["name"] not in self.model.weights:
            raise ConversionError(f"constant {node['name']!r} has no value in the weights manifest")
        self._set(node, self.model.weights[node["name"]])

    # ---- layout-sensitive ops (run in NCHW) ----------------------------------------------------------------------

    def _spatial(self, node: dict[str, Any]) -> tuple[list[int], list[int], dict[str, Any]]:
        fmt = _attr(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise ConversionError(f"{node['name']}: data_format {fmt} is not supported (only NHWC)")
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dilations = _attr(node, "dilations", [1, 1, 1, 1])
        padding = _attr(node, "padding", "VALID")
        pad: dict[str, Any]
        if padding == "SAME":
            pad = {"auto_pad": "SAME_UPPER"}
        elif padding == "VALID":
            pad = {"auto_pad": "VALID"}
        elif padding == "EXPLICIT":
            p = _attr(node, "explicit_paddings", [0] * 8)
            pad = {"pads": [p[2], p[4], p[3], p[5]]}
        else:
            raise ConversionError(f"{node['name']}: padding {padding!r} is not supported")
        return strides[1:3], dilations[1:3], pad

    def _conv(self, node: dict[str, Any]) -> None:
        args = self._args(node)
        x, kernel = args[0], self._const(node, args[1], "the filter")
        strides, dilations, pad = self._spatial(node)
        depthwise = "Depthwise" in node["op"]
        if depthwise:
            kh, kw, cin, mult = kernel.shape
            weight = kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
            group = cin
        else:
            weight = kernel.transpose(3, 2, 0, 1)
            group = 1
        weight = weight.astype(np.float32)
        bias: np.ndarray | None = None
        fused = _attr(node, "fused_ops", []) if node["op"].startswith(("_Fused", "Fused")) else []
        extra = args[2:]
        activations: list[str] = []
        for op in fused:
            if op == "BiasAdd":
                bias = self._const(node, extra.pop(0), "the bias").astype(np.float32)
            elif op == "FusedBatchNorm":
                scale, offset, mean, var = (self._const(node, extra.pop(0), "batch norm") for _ in range(4))
                factor = scale / np.sqrt(var + _attr(node, "epsilon", 1e-3))
                weight = weight * factor.reshape(-1, 1, 1, 1)
                bias = (offset - mean * factor).astype(np.float32)
            elif op in ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"):
                activations.append(op)
            else:
                raise ConversionError(f"{node['name']}: fused op {op!r} is not supported")
        inputs = [self._tensor(x, node["name"], nchw=True), self._initializer(weight.astype(np.float32), node["name"])]
        if bias is not None:
            inputs.append(self._initializer(bias, node["name"]))
        out = self._result(node) if not activations else self._fresh(f"{node['name']}/conv")
        self._emit("Conv", inputs, [out], strides=strides, dilations=dilations, group=group, **pad)
        for i, act in enumerate(activations):
            target = self._result(node) if i == len(activations) - 1 else self._fresh(f"{node['name']}/{act}")
            self._activation(act, out, target, alpha=_attr(node, "leakyrelu_alpha", 0.2))
            out = target
        self._set(node, _Value(out, nchw=True, rank=4, dtype=np.dtype(np.float32)))

    def _activation(self, op: str, source: str, target: str, *, alpha: float = 0.2) -> None:
        if op == "Relu6":
            zero = self._initializer(np.array(0.0, np.float32), target)
            six = self._initializer(np.array(6.0, np.float32), target)
            self._emit("Clip", [source, zero, six], [target])
        elif op == "LeakyRelu":
            self._emit("LeakyRelu", [source], [target], alpha=alpha)
        else:
            self._emit(op, [source], [target])

    def _pool(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        strides, _, pad = self._spatial(node)
        kernel = _attr(node, "ksize", [1, 1, 1, 1])[1:3]
        op = "MaxPool" if node["op"] == "MaxPool" else "AveragePool"
        extra = {} if op == "MaxPool" else {"count_include_pad": 0}
        out = self._result(node)
        self._emit(
            op, [self._tensor(x, node["name"], nchw=True)], [out], kernel_shape=kernel, strides=strides, **pad, **extra
        )
        self._set(node, _Value(out, nchw=True, rank=4, dtype=np.dtype(np.float32)))

    def _resize(self, node: dict[str, Any]) -> None:
        x, size = self._args(node)
        sizes = self._const(node, size, "the output size").astype(np.int64)
        align = _attr(node, "align_corners", False)
        half = _attr(node, "half_pixel_centers", False)
        if node["op"] == "ResizeBilinear":
            coord = "align_corners" if align else ("half_pixel" if half else "asymmetric")
            attrs = {"mode": "linear", "coordinate_transformation_mode": coord}
        else:
            coord = "align_corners" if align else ("half_pixel" if half else "asymmetric")
            nearest = "round_prefer_ceil" if (align or half) else "floor"
            attrs = {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest}
        out = self._result(node)
        inputs = [self._tensor(x, node["name"], nchw=True), "", "", self._initializer(sizes, node["name"])]
        self._emit("Resize", inputs, [out], axes=[2, 3], **attrs)
        self._set(node, _Value(out, nchw=True, rank=4, dtype=np.dtype(np.float32)))

    # ---- element-wise ops (keep the layout of their inputs) -------------------------------------------------------

    def _unary(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        if isinstance(x, np.ndarray):
            x = _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        out = self._result(node)
        attrs = {"alpha": _attr(node, "alpha", 1.0)} if node["op"] == "Elu" else {}
        self._emit(_UNARY[node["op"]], [x.name], [out], **attrs)
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=x.dtype))

    def _same_layout(self, node: dict[str, Any], args: list[_Value | np.ndarray]) -> tuple[list[str], _Value]:
        """Bring element-wise operands to one layout: NCHW when a 4-D operand already is and the others can follow
        (constants are permuted, 4-D tensors transposed), NHWC otherwise. Returns the names and a template value."""
        values = [a for a in args if isinstance(a, _Value)]
        ranks = [a.ndim if isinstance(a, np.ndarray) else a.rank for a in args]
        rank = None if any(r is None for r in ranks) else max(ranks, default=0)
        dtype = next((v.dtype for v in values if v.dtype is not None), None)
        if dtype is None:
            dtype = next((a.dtype for a in args if isinstance(a, np.ndarray)), None)
        nchw = any(v.nchw for v in values) and all(
            (isinstance(a, np.ndarray) and a.ndim <= 4) or (isinstance(a, _Value) and (a.nchw or a.rank in (0, 4)))
            for a in args
        )
        names = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                array = arg
                if nchw and array.ndim > 0:
                    array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(_TO_NCHW)
                names.append(self._initializer(array, node["name"]))
            elif arg.rank == 0:
                names.append(arg.name)
            else:
                names.append(self._layout(arg, nchw=nchw))
        return names, _Value("", nchw=nchw, rank=4 if nchw else rank, dtype=dtype)

    def _binary(self, node: dict[str, Any]) -> None:
        args = self._args(node)
        names, template = self._same_layout(node, args)
        out = self._result(node)
        self._emit(_BINARY[node["op"]], names, [out])
        dtype = np.dtype(np.bool_) if _BINARY[node["op"]] in ("Equal", "Greater", "Less") else template.dtype
        self._set(node, _Value(out, nchw=template.nchw, rank=template.rank, dtype=dtype))

    def _relu6(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        x = x if isinstance(x, _Value) else _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        out = self._result(node)
        self._activation("Relu6", x.name, out)
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=x.dtype))

    def _leaky_relu(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        x = x if isinstance(x, _Value) else _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        out = self._result(node)
        self._activation("LeakyRelu", x.name, out, alpha=_attr(node, "alpha", 0.2))
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=x.dtype))

    def _rsqrt(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        x = x if isinstance(x, _Value) else _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        root = self._op("Sqrt", [x.name], f"{node['name']}/sqrt")
        out = self._result(node)
        self._emit("Reciprocal", [root], [out])
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=x.dtype))

    def _square(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        x = x if isinstance(x, _Value) else _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        out = self._result(node)
        self._emit("Mul", [x.name, x.name], [out])
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=x.dtype))

    def _floor_div(self, node: dict[str, Any]) -> None:
        names, template = self._same_layout(node, self._args(node))
        a, b = names
        out = self._result(node)
        if template.dtype is not None and template.dtype.kind in "iu":
            # exact floor division for integers of any sign: (a - a mod b) / b, with Python-style mod
            mod = self._op("Mod", [a, b], f"{node['name']}/mod", fmod=0)
            self._emit("Div", [self._op("Sub", [a, mod], f"{node['name']}/sub"), b], [out])
        else:
            self._emit("Floor", [self._op("Div", [a, b], f"{node['name']}/div")], [out])
        self._set(node, _Value(out, nchw=template.nchw, rank=template.rank, dtype=template.dtype))

    def _floor_mod(self, node: dict[str, Any]) -> None:
        names, template = self._same_layout(node, self._args(node))
        a, b = names
        out = self._result(node)
        if template.dtype is not None and template.dtype.kind in "iu":
            self._emit("Mod", [a, b], [out], fmod=0)
        else:
            floor = self._op("Floor", [self._op("Div", [a, b], f"{node['name']}/div")], f"{node['name']}/floor")
            self._emit("Sub", [a, self._op("Mul", [floor, b], f"{node['name']}/mul")], [out])
        self._set(node, _Value(out, nchw=template.nchw, rank=template.rank, dtype=template.dtype))

    def _cast(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        target = _DTYPES.get(_attr(node, "DstT", "DT_FLOAT"))
        if target is None:
            raise ConversionError(f"{node['name']}: cast to {_attr(node, 'DstT')} is not supported")
        if isinstance(x, np.ndarray):
            self._set(node, x.astype(target))
            return
        out = self._result(node)
        self._emit("Cast", [x.name], [out], to=self.onnx.helper.np_dtype_to_tensor_dtype(target))
        self._set(node, _Value(out, nchw=x.nchw, rank=x.rank, dtype=target))

    def _reduce(self, node: dict[str, Any]) -> None:
        x, axes_arg = self._args(node)
        if isinstance(x, np.ndarray):
            x = _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        axes = [int(a) for a in np.atleast_1d(self._const(node, axes_arg, "the axes"))]
        keep = bool(_attr(node, "keep_dims", False))
        if any(a < 0 for a in axes):
            if x.rank is None:
                raise ConversionError(f"{node['name']}: negative reduction axes need a known rank")
            axes = [a % x.rank for a in axes]
        nchw = x.nchw
        if nchw and not keep:
            kept = [a for a in range(4) if a not in axes]
            if [a for a in _TO_NCHW if a in kept] != kept:
                nchw = False
        onnx_axes = [_TO_NCHW.index(a) for a in axes] if nchw else axes
        source = self._layout(x, nchw=nchw)
        out = self._result(node)
        axes_name = self._initializer(np.array(sorted(onnx_axes), np.int64), node["name"])
        self._emit(_REDUCE[node["op"]], [source, axes_name], [out], keepdims=int(keep))
        rank = None if x.rank is None else (x.rank if keep else x.rank - len(axes))
        self._set(node, _Value(out, nchw=nchw and keep, rank=rank, dtype=x.dtype))

    def _concat(self, node: dict[str, Any]) -> None:
        *parts, axis_arg = self._args(node)
        axis = int(self._const(node, axis_arg, "the axis"))
        names, template = self._same_layout(node, parts)
        rank = template.rank
        if axis < 0:
            if rank is None:
                raise ConversionError(f"{node['name']}: a negative concat axis needs a known rank")
            axis %= rank
        if template.nchw:
            axis = _TO_NCHW.index(axis)
        out = self._result(node)
        self._emit("Concat", names, [out], axis=axis)
        self._set(node, _Value(out, nchw=template.nchw, rank=rank, dtype=template.dtype))

    # ---- shape ops (NHWC, as in TF) --------------------------------------------------------------------------------

    def _int64(self, node: dict[str, Any], value: _Value | np.ndarray) -> str:
        if isinstance(value, np.ndarray):
            return self._initializer(value.astype(np.int64), node["name"])
        return self._op("Cast", [value.name], f"{node['name']}/int64", to=self.onnx.TensorProto.INT64)

    def _reshape(self, node: dict[str, Any]) -> None:
        x, shape = self._args(node)
        out = self._result(node)
        self._emit("Reshape", [self._nhwc(node, x), self._int64(node, shape)], [out])
        rank = int(np.asarray(shape).size) if isinstance(shape, np.ndarray) else None
        self._set(node, _Value(out, rank=rank, dtype=getattr(x, "dtype", None)))

    def _expand_dims(self, node: dict[str, Any]) -> None:
        x, dim = self._args(node)
        out = self._result(node)
        axis = np.atleast_1d(self._const(node, dim, "the dimension")).astype(np.int64)
        self._emit("Unsqueeze", [self._nhwc(node, x), self._initializer(axis, node["name"])], [out])
        rank = x.ndim if isinstance(x, np.ndarray) else x.rank
        self._set(node, _Value(out, rank=None if rank is None else rank + 1, dtype=getattr(x, "dtype", None)))

    def _squeeze(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        dims = _attr(node, "squeeze_dims", []) or _attr(node, "axis", [])
        out = self._result(node)
        inputs = [self._nhwc(node, x)]
        if dims:
            inputs.append(self._initializer(np.array(dims, np.int64), node["name"]))
        self._emit("Squeeze", inputs, [out])
        rank = x.ndim if isinstance(x, np.ndarray) else x.rank
        new_rank = None if rank is None or not dims else rank - len(dims)
        self._set(node, _Value(out, rank=new_rank, dtype=getattr(x, "dtype", None)))

    def _strided_slice(self, node: dict[str, Any]) -> None:
        x, begin_arg, end_arg, strides_arg = self._args(node)
        begin = self._const(node, begin_arg, "begin").astype(np.int64)
        end = self._const(node, end_arg, "end").astype(np.int64)
        steps = self._const(node, strides_arg, "strides").astype(np.int64)
        if _attr(node, "ellipsis_mask", 0) or _attr(node, "new_axis_mask", 0):
            raise ConversionError(f"{node['name']}: StridedSlice with ellipsis or new axes is not supported")
        begin_mask, end_mask = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0)
        shrink = _attr(node, "shrink_axis_mask", 0)
        big = np.iinfo(np.int64).max
        starts, ends = begin.copy(), end.copy()
        for i, step in enumerate(steps):
            if begin_mask >> i & 1:
                starts[i] = 0 if step > 0 else big
            if end_mask >> i & 1:
                ends[i] = big if step > 0 else -big
            if shrink >> i & 1:
                ends[i] = starts[i] + 1 if starts[i] != -1 else big
        axes = np.arange(len(steps), dtype=np.int64)
        init = [self._initializer(a, node["name"]) for a in (starts, ends, axes, steps)]
        squeezed = [i for i in range(len(steps)) if shrink >> i & 1]
        out = self._result(node)
        target = self._fresh(f"{node['name']}/slice") if squeezed else out
        self._emit("Slice", [self._nhwc(node, x), *init], [target])
        if squeezed:
            self._emit("Squeeze", [target, self._initializer(np.array(squeezed, np.int64), node["name"])], [out])
        rank = x.ndim if isinstance(x, np.ndarray) else x.rank
        self._set(
            node, _Value(out, rank=None if rank is None else rank - len(squeezed), dtype=getattr(x, "dtype", None))
        )

    def _gather(self, node: dict[str, Any]) -> None:
        params, indices, axis_arg = self._args(node)
        if _attr(node, "batch_dims", 0):
            raise ConversionError(f"{node['name']}: GatherV2 with batch_dims is not supported")
        axis = int(self._const(node, axis_arg, "the axis"))
        out = self._result(node)
        self._emit("Gather", [self._nhwc(node, params), self._nhwc(node, indices)], [out], axis=axis)
        ranks = [a.ndim if isinstance(a, np.ndarray) else a.rank for a in (params, indices)]
        rank = None if None in ranks else ranks[0] - 1 + ranks[1]
        self._set(node, _Value(out, rank=rank, dtype=getattr(params, "dtype", None)))

    def _topk(self, node: dict[str, Any]) -> None:
        x, k_arg = self._args(node)
        k = np.atleast_1d(self._const(node, k_arg, "k")).astype(np.int64)
        values, indices = self._result(node, 0), self._fresh(f"{node['name']}/indices")
        sorted_flag = int(bool(_attr(node, "sorted", True)))
        self._emit(
            "TopK", [self._nhwc(node, x), self._initializer(k, node["name"])], [values, indices], sorted=sorted_flag
        )
        index_out = self._result(node, 1)
        self._emit("Cast", [indices], [index_out], to=self.onnx.TensorProto.INT32)
        rank = x.ndim if isinstance(x, np.ndarray) else x.rank
        self._set(node, _Value(values, rank=rank, dtype=getattr(x, "dtype", None)), 0)
        self._set(node, _Value(index_out, rank=rank, dtype=np.dtype(np.int32)), 1)

    def _transpose(self, node: dict[str, Any]) -> None:
        x, perm_arg = self._args(node)
        perm = [int(p) for p in self._const(node, perm_arg, "the permutation")]
        out = self._result(node)
        self._emit("Transpose", [self._nhwc(node, x)], [out], perm=perm)
        self._set(node, _Value(out, rank=len(perm), dtype=getattr(x, "dtype", None)))

    def _pack(self, node: dict[str, Any]) -> None:
        parts = self._args(node)
        axis = int(_attr(node, "axis", 0))
        axis_name = self._initializer(np.array([axis], np.int64), node["name"])
        names = [self._op("Unsqueeze", [self._nhwc(node, p), axis_name], f"{node['name']}/unsqueeze") for p in parts]
        rank = parts[0].ndim if isinstance(parts[0], np.ndarray) else parts[0].rank
        out = self._result(node)
        if axis < 0:
            if rank is None:
                raise ConversionError(f"{node['name']}: a negative Pack axis needs a known rank")
            axis %= rank + 1
        self._emit("Concat", names, [out], axis=axis)
        self._set(node, _Value(out, rank=None if rank is None else rank + 1, dtype=getattr(parts[0], "dtype", None)))

    def _softmax(self, node: dict[str, Any]) -> None:
        (x,) = self._args(node)
        out = self._result(node)
        self._emit("Softmax", [self._nhwc(node, x)], [out], axis=-1)
        self._set(node, _Value(out, rank=getattr(x, "rank", None), dtype=getattr(x, "dtype", None)))

    def _pad(self, node: dict[str, Any]) -> None:
        """Pad and PadV2 (constant padding); the paddings are a constant [rank, 2] of (before, after)."""
        x, paddings_arg, *rest = self._args(node)
        paddings = self._const(node, paddings_arg, "the paddings").astype(np.int64).reshape(-1, 2)
        value = self._const(node, rest[0], "the pad value") if rest else np.array(0, np.float32)
        if isinstance(x, np.ndarray):
            x = _Value(self._initializer(x, node["name"]), rank=x.ndim, dtype=x.dtype)
        nchw = x.nchw and len(paddings) == 4
        if nchw:
            paddings = paddings[list(_TO_NCHW)]
        pads = self._initializer(np.concatenate([paddings[:, 0], paddings[:, 1]]), node["name"])
        fill = self._initializer(np.asarray(value, dtype=x.dtype or np.float32).reshape(()), node["name"])
        out = self._result(node)
        self._emit("Pad", [self._layout(x, nchw=nchw), pads, fill], [out], mode="constant")
        self._set(node, _Value(out, nchw=nchw, rank=len(paddings), dtype=x.dtype))

    def _split(self, node: dict[str, Any]) -> None:
        """SplitV: sizes (a constant, at most one -1) along a constant axis; one output per piece (`node:i`)."""
        x, sizes_arg, axis_arg = self._args(node)
        sizes = self._const(node, sizes_arg, "the split sizes").astype(np.int64).reshape(-1)
        axis = int(self._const(node, axis_arg, "the axis"))
        if (sizes < 0).any():
            raise ConversionError(f"{node['name']}: SplitV with an inferred (-1) size is not supported")
        rank = x.ndim if isinstance(x, np.ndarray) else x.rank
        if axis < 0:
            if rank is None:
                raise ConversionError(f"{node['name']}: a negative split axis needs a known rank")
            axis %= rank
        outs = [self._result(node, i) for i in range(len(sizes))]
        split = self._initializer(sizes, node["name"])
        self._emit("Split", [self._nhwc(node, x), split], outs, axis=axis)
        for i, out in enumerate(outs):
            self._set(node, _Value(out, rank=rank, dtype=getattr(x, "dtype", None)), i)

    def _sparse_to_dense(self, node: dict[str, Any]) -> None:
        """SparseToDense of constants (TF's converters leave it in shape arithmetic): folded here with numpy."""
        indices, shape, values, default = (self._const(node, a, "every SparseToDense input") for a in self._args(node))
        dense = np.full(np.atleast_1d(shape).astype(np.int64), default, dtype=values.dtype)
        index = np.atleast_2d(indices.astype(np.int64))
        if index.shape[0] == 1 and dense.ndim == 1 and index.shape[1] != 1:
            index = index.T
        dense[tuple(index.T)] = values
        self._set(node, dense)

    def _add_n(self, node: dict[str, Any]) -> None:
        """AddN: the element-wise sum of its inputs (ONNX Sum), in one shared layout."""
        names, template = self._same_layout(node, self._args(node))
        out = self._result(node)
        self._emit("Sum", names, [out])
        self._set(node, _Value(out, nchw=template.nchw, rank=template.rank, dtype=template.dtype))

    def _conv_transpose(self, node: dict[str, Any]) -> None:
        """Conv2DBackpropInput (a transposed convolution, as Keras' Conv2DTranspose saves it): output size given,
        filter [kh, kw, out_channels, in_channels]. TF's SAME crops the smaller half of the padding at the start."""
        sizes_arg, kernel_arg, x = self._args(node)
        sizes = self._const(node, sizes_arg, "the output size").astype(np.int64)
        kernel = self._const(node, kernel_arg, "the filter").astype(np.float32)
        strides, dilations, _ = self._spatial(node)
        padding = _attr(node, "padding", "VALID")
        if padding not in ("SAME", "VALID"):
            raise ConversionError(f"{node['name']}: padding {padding!r} is not supported for Conv2DBackpropInput")
        if not isinstance(x, _Value) or x.rank not in (4, None):
            raise ConversionError(f"{node['name']}: the input must be a 4-D tensor")
        kh, kw = kernel.shape[:2]
        begins, ends, extra = [], [], []
        for axis, (k, stride, dilation) in enumerate(zip((kh, kw), strides, dilations, strict=True)):
            target = int(sizes[1 + axis])
            span = (k - 1) * dilation + 1
            if padding == "SAME":
                total = max((-(-target // stride) - 1) * stride + span - target, 0)
                before = total // 2
            else:
                total, before = 0, 0
            # ConvTranspose gives stride * (in - 1) + span - pads; the input size follows from the TF output size
            natural = stride * ((target + total - span) // stride) + span - total
            begins.append(before)
            ends.append(total - before)
            extra.append(target - natural)
        if any(e < 0 or e >= s for e, s in zip(extra, strides, strict=True)):
            raise ConversionError(f"{node['name']}: output size {sizes.tolist()} does not fit the transposed conv")
        weight = kernel.transpose(3, 2, 0, 1)
        out = self._result(node)
        self._emit(
            "ConvTranspose",
            [self._tensor(x, node["name"], nchw=True), self._initializer(weight, node["name"])],
            [out],
            strides=strides,
            dilations=dilations,
            pads=[*begins, *ends],
            output_padding=extra,
        )
        self._set(node, _Value(out, nchw=True, rank=4, dtype=np.dtype(np.float32)))
