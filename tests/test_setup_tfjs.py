"""TF.js graph -> ONNX conversion, checked on tiny graphs the tests build against numpy references of the TF ops."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from hugginggpt.errors import HuggingGPTError
from hugginggpt.setup.tfjs import ConversionError, load_tfjs, read_weights, tfjs_to_onnx


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values: list[int]) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _strs(values: list[str]) -> dict:
    return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in values]}}


class GraphBuilder:
    """Writes a TF.js graph model (model.json + one float16-quantised weight shard) the way tfjs-converter does."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.weights: list[tuple[str, np.ndarray]] = []

    def placeholder(self, name: str, shape: list[int], dtype: str = "DT_FLOAT") -> str:
        dims = [{"size": str(d)} for d in shape]
        self.nodes.append(
            {"name": name, "op": "Placeholder", "attr": {"dtype": {"type": dtype}, "shape": {"shape": {"dim": dims}}}}
        )
        return name

    def const(self, name: str, array: np.ndarray) -> np.ndarray:
        """Adds a Const; float weights are stored as float16, so the returned array is what the model really holds."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float16).astype(np.float32)
        self.nodes.append({"name": name, "op": "Const", "attr": {}})
        self.weights.append((name, array))
        return array

    def node(self, name: str, op: str, inputs: list[str], **attr: dict) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def save(self, folder: Path, outputs: list[str]) -> Path:
        manifest, blob = [], b""
        for name, array in self.weights:
            entry = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
            if array.dtype.kind == "f":
                entry["dtype"] = "float32"
                entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                blob += array.astype(np.float16).tobytes()
            else:
                blob += array.tobytes()
            manifest.append(entry)
        (folder / "group1-shard1of1.bin").write_bytes(blob)
        spec = {
            "format": "graph-model",
            "modelTopology": {"node": self.nodes},
            "signature": {"outputs": {o: {"name": o} for o in outputs}},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": manifest}],
        }
        path = folder / "model.json"
        path.write_text(json.dumps(spec))
        return path


def _run(model_json: Path, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    proto = tfjs_to_onnx(load_tfjs(model_json), outputs=outputs)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


# ---- numpy references of the TF ops (NHWC) --------------------------------------------------------------------------


def _same_pad(x: np.ndarray, kh: int, kw: int, stride: int, value: float = 0.0) -> tuple[np.ndarray, int, int]:
    _, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    padded = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=value)
    return padded, oh, ow


def conv(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: str = "SAME", depthwise: bool = False) -> np.ndarray:
    kh, kw = w.shape[:2]
    if padding == "SAME":
        x, oh, ow = _same_pad(x, kh, kw, stride)
    else:
        oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    n = x.shape[0]
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            step = (patch[..., :, None] * w[i, j]).reshape(n, oh, ow, -1) if depthwise else patch @ w[i, j]
            out = out + step
    return np.asarray(out, np.float32)


def pool(x: np.ndarray, k: int, stride: int, kind: str) -> np.ndarray:
    if kind == "max":
        padded, oh, ow = _same_pad(x, k, k, stride, -np.inf)
        return np.stack(
            [
                np.stack(
                    [
                        padded[:, i * stride : i * stride + k, j * stride : j * stride + k].max((1, 2))
                        for j in range(ow)
                    ],
                    1,
                )
                for i in range(oh)
            ],
            1,
        )
    total, oh, ow = _same_pad(x, k, k, stride)
    ones, _, _ = _same_pad(np.ones_like(x), k, k, stride)
    rows = []
    for i in range(oh):
        cols = []
        for j in range(ow):
            window = (slice(None), slice(i * stride, i * stride + k), slice(j * stride, j * stride + k))
            cols.append(total[window].sum((1, 2)) / ones[window].sum((1, 2)))
        rows.append(np.stack(cols, 1))
    return np.stack(rows, 1)


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF's ResizeBilinear with align_corners=False, half_pixel_centers=False."""
    _, h, w, _ = x.shape

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(n_out) * (n_in / n_out)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    y0, y1, fy = axis(out_h, h)
    x0, x1, fx = axis(out_w, w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bottom = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# ---- tests ---------------------------------------------------------------------------------------------------------


def test_convolutional_graph_matches_numpy(tmp_path: Path) -> None:
    """Fused conv/depthwise (SAME, stride 2, odd size), squeeze-excite, channel constants, concat, resize, pools,
    batch-norm folding: every layout-sensitive op the converter moves to NCHW."""
    rng = np.random.default_rng(7)
    g = GraphBuilder()
    g.placeholder("x", [1, 9, 9, 3])
    w1 = g.const("w1", rng.normal(size=(3, 3, 3, 4)))
    b1 = g.const("b1", rng.normal(size=4))
    dw = g.const("dw", rng.normal(size=(3, 3, 4, 2)))
    db = g.const("db", rng.normal(size=8))
    g.const("axes", np.array([1, 2], np.int32))
    shift = g.const("shift", rng.normal(size=8))
    g.const("cat_axis", np.array(3, np.int32))
    g.const("size", np.array([10, 10], np.int32))
    w2 = g.const("w2", rng.normal(size=(1, 1, 16, 5)))
    w3 = g.const("w3", rng.normal(size=(3, 3, 5, 3)))
    scale, offset = g.const("bn_scale", rng.uniform(0.5, 1.5, 3)), g.const("bn_offset", rng.normal(size=3))
    mean, var = g.const("bn_mean", rng.normal(size=3)), g.const("bn_var", rng.uniform(0.5, 2, 3))
    same, valid = _s("SAME"), _s("VALID")
    nhwc = _s("NHWC")
    g.node(
        "c1",
        "_FusedConv2D",
        ["x", "w1", "b1"],
        strides=_ints([1, 2, 2, 1]),
        padding=same,
        data_format=nhwc,
        fused_ops=_strs(["BiasAdd", "Relu"]),
        num_args={"i": "1"},
    )
    g.node(
        "d1",
        "FusedDepthwiseConv2dNative",
        ["c1", "dw", "db"],
        strides=_ints([1, 1, 1, 1]),
        padding=same,
        data_format=nhwc,
        fused_ops=_strs(["BiasAdd", "Relu6"]),
    )
    g.node("m", "Mean", ["d1", "axes"], keep_dims={"b": True})
    g.node("s", "Sigmoid", ["m"])
    g.node("e", "Mul", ["d1", "s"])
    g.node("a", "AddV2", ["e", "shift"])
    g.node("h", "Relu6", ["a"])
    g.node("cat", "ConcatV2", ["h", "d1", "cat_axis"])
    g.node("r", "ResizeBilinear", ["cat", "size"], align_corners={"b": False}, half_pixel_centers={"b": False})
    g.node("p", "MaxPool", ["r"], ksize=_ints([1, 3, 3, 1]), strides=_ints([1, 2, 2, 1]), padding=same)
    g.node("c2", "Conv2D", ["p", "w2"], strides=_ints([1, 1, 1, 1]), padding=valid, data_format=nhwc)
    g.node("avg", "AvgPool", ["c2"], ksize=_ints([1, 2, 2, 1]), strides=_ints([1, 2, 2, 1]), padding=same)
    g.node(
        "c3",
        "_FusedConv2D",
        ["c2", "w3", "bn_scale", "bn_offset", "bn_mean", "bn_var"],
        strides=_ints([1, 1, 1, 1]),
        padding=valid,
        fused_ops=_strs(["FusedBatchNorm", "Relu"]),
        epsilon={"f": 0.001},
        num_args={"i": "4"},
    )
    g.node("gap", "Mean", ["h", "axes"], keep_dims={"b": False})
    outputs = ["c3", "cat", "avg", "gap"]
    x = rng.normal(size=(1, 9, 9, 3)).astype(np.float32)
    got = _run(g.save(tmp_path, outputs), {"x": x})

    c1 = np.maximum(conv(x, w1, 2) + b1, 0)
    d1 = np.clip(conv(c1, dw, depthwise=True) + db, 0, 6)
    h = np.clip(d1 * sigmoid(d1.mean((1, 2), keepdims=True)) + shift, 0, 6)
    cat = np.concatenate([h, d1], 3)
    c2 = conv(pool(resize_bilinear(cat, 10, 10), 3, 2, "max"), w2, padding="VALID")
    bn = scale / np.sqrt(var + 1e-3)
    c3 = np.maximum((conv(c2, w3, padding="VALID") - mean) * bn + offset, 0)
    expected = {"c3": c3, "cat": cat, "avg": pool(c2, 2, 2, "avg"), "gap": h.mean((1, 2))}
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4, err_msg=name)


def test_postprocessing_ops_match_numpy(tmp_path: Path) -> None:
    """The integer and shape ops CenterNet's decoding uses: peak picking, top-k, floor div/mod (negatives too),
    expand, cast, strided slices with masks and shrinking, gather, concat on the last axis."""
    rng = np.random.default_rng(11)
    g = GraphBuilder()
    g.placeholder("heat", [1, 4, 4, 3])
    g.placeholder("table", [1, 16, 6])
    g.const("flat", np.array([1, -1], np.int32))
    g.const("k", np.array(5, np.int32))
    g.const("three", np.array(3, np.int32))
    g.const("ten", np.array(10, np.int32))
    g.const("minus1", np.array(-1, np.int32))
    g.const("rows", np.array([16, 6], np.int32))
    g.const("zero", np.array(0, np.int32))
    for n, v in [("b", [0, 0, 1]), ("e", [0, 0, 3]), ("st", [1, 1, 1])]:
        g.const(n, np.array(v, np.int32))
    g.const("b2", np.array([0, 0, 2], np.int32))
    g.const("e2", np.array([0, 0, 3], np.int32))
    g.node("pool", "MaxPool", ["heat"], ksize=_ints([1, 3, 3, 1]), strides=_ints([1, 1, 1, 1]), padding=_s("SAME"))
    g.node("peak", "Equal", ["heat", "pool"])
    g.node("peakf", "Cast", ["peak"], DstT={"type": "DT_FLOAT"})
    g.node("kept", "Mul", ["heat", "peakf"])
    g.node("scores", "Reshape", ["kept", "flat"])
    g.node("top", "TopKV2", ["scores", "k"], sorted={"b": True})
    g.node("cls", "FloorMod", ["top:1", "three"])
    g.node("cell", "FloorDiv", ["top:1", "three"])
    g.node("shifted", "Sub", ["cell", "ten"])
    g.node("ndiv", "FloorDiv", ["shifted", "three"])
    g.node("nmod", "FloorMod", ["shifted", "three"])
    g.node("clsf", "Cast", ["cls"], DstT={"type": "DT_FLOAT"})
    g.node("clsx", "ExpandDims", ["clsf", "minus1"])
    g.node("tab2", "Reshape", ["table", "rows"])
    g.node("cellv", "Reshape", ["cell", "minus1"])
    g.node("picked", "GatherV2", ["tab2", "cellv", "zero"], batch_dims={"i": "0"})
    g.node("pick3", "ExpandDims", ["picked", "zero"])
    g.node("sl", "StridedSlice", ["pick3", "b", "e", "st"], begin_mask={"i": "3"}, end_mask={"i": "3"})
    g.node(
        "col",
        "StridedSlice",
        ["pick3", "b2", "e2", "st"],
        begin_mask={"i": "3"},
        end_mask={"i": "3"},
        shrink_axis_mask={"i": "4"},
    )
    g.node("colx", "ExpandDims", ["col", "minus1"])
    g.node("topx", "ExpandDims", ["top", "minus1"])
    g.node("out", "ConcatV2", ["sl", "colx", "topx", "clsx", "minus1"])
    heat = rng.uniform(size=(1, 4, 4, 3)).astype(np.float32)
    table = rng.normal(size=(1, 16, 6)).astype(np.float32)
    got = _run(g.save(tmp_path, ["out", "ndiv", "nmod"]), {"heat": heat, "table": table})

    padded, _, _ = _same_pad(heat, 3, 3, 1, -np.inf)
    pooled = np.stack(
        [np.stack([padded[:, i : i + 3, j : j + 3].max((1, 2)) for j in range(4)], 1) for i in range(4)], 1
    )
    scores = (heat * (heat == pooled)).reshape(1, -1)
    order = np.argsort(-scores[0], kind="stable")[:5]
    cell, cls = order // 3, order % 3
    picked = table[0][cell][None]
    want = np.concatenate(
        [picked[:, :, 1:3], picked[:, :, 2:3], scores[0][order][None, :, None], cls[None, :, None].astype(np.float32)],
        -1,
    )
    np.testing.assert_allclose(got["out"], want, rtol=1e-6)
    np.testing.assert_array_equal(got["ndiv"], np.floor_divide(cell - 10, 3)[None])
    np.testing.assert_array_equal(got["nmod"], np.mod(cell - 10, 3)[None])
    assert (cell - 10 < 0).any() and (cell - 10 >= 0).any()  # both signs of floor division really ran


def test_weights_dequantise_uint8_across_shards(tmp_path: Path) -> None:
    ints = np.arange(-3, 3, dtype=np.int32)
    codes = np.array([0, 128, 255], np.uint8)
    blob = ints.tobytes() + codes.tobytes()
    (tmp_path / "a.bin").write_bytes(blob[:10])
    (tmp_path / "b.bin").write_bytes(blob[10:])
    groups = [
        {
            "paths": ["a.bin", "b.bin"],
            "weights": [
                {"name": "i", "shape": [2, 3], "dtype": "int32"},
                {
                    "name": "q",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                },
            ],
        }
    ]
    weights = read_weights(groups, tmp_path)
    np.testing.assert_array_equal(weights["i"], ints.reshape(2, 3))
    np.testing.assert_allclose(weights["q"], codes * 0.5 - 1.0)
    assert weights["q"].dtype == np.float32


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    g = GraphBuilder()
    g.placeholder("x", [1, 3])
    g.node("y", "Erfinv", ["x"])
    with pytest.raises(ConversionError, match="unsupported TF ops: Erfinv") as info:
        tfjs_to_onnx(load_tfjs(g.save(tmp_path, ["y"])))
    assert isinstance(info.value, HuggingGPTError)


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConversionError, match=r"not a TF\.js graph model"):
        load_tfjs(tmp_path / "bad.json")
    g = GraphBuilder()
    g.placeholder("x", [1, 3])
    g.node("y", "Relu", ["x"])
    path = g.save(tmp_path, ["y"])
    with pytest.raises(ConversionError, match="outputs not in the graph: nope"):
        tfjs_to_onnx(load_tfjs(path), outputs=["nope"])
    spec = json.loads(path.read_text())
    spec["weightsManifest"][0]["weights"].append({"name": "w", "shape": [4], "dtype": "float32"})
    path.write_text(json.dumps(spec))
    with pytest.raises(ConversionError, match="shards end before weight 'w'"):
        load_tfjs(path)


def test_pad_split_and_sparse_to_dense_match_numpy(tmp_path: Path) -> None:
    """Pad before a conv (NHWC tensor), PadV2 with a fill value after one (a tensor held as NCHW), SplitV into
    unequal pieces, and SparseToDense folded from constants into a Reshape's shape (as TF's ONNX importers leave)."""
    rng = np.random.default_rng(11)
    g = GraphBuilder()
    g.placeholder("x", [1, 5, 5, 3])
    g.const("pads", np.array([[0, 0], [1, 1], [2, 0], [0, 0]], np.int32))
    w = g.const("w", rng.normal(size=(3, 3, 3, 3)))
    g.const("pads2", np.array([[0, 0], [0, 1], [1, 0], [0, 0]], np.int32))
    g.const("fill", np.array(1.5, np.float32))
    g.const("sizes", np.array([1, 2], np.int32))
    g.const("split_axis", np.array(3, np.int32))
    g.const("where", np.array([[1]], np.int64))
    g.const("dense_shape", np.array([2], np.int64))
    g.const("values", np.array([-1], np.int64))
    g.const("zeros", np.array(0, np.int64))
    g.const("base", np.array([1, 0], np.int64))
    g.node("p", "Pad", ["x", "pads"])
    g.node("c", "Conv2D", ["p", "w"], strides=_ints([1, 1, 1, 1]), padding=_s("VALID"), data_format=_s("NHWC"))
    g.node("p2", "PadV2", ["c", "pads2", "fill"])
    g.node("sp", "SplitV", ["p2", "sizes", "split_axis"], num_split={"i": "2"})
    g.node("std", "SparseToDense", ["where", "dense_shape", "values", "zeros"])
    g.node("shape", "AddV2", ["base", "std"])
    g.node("flat", "Reshape", ["sp:1", "shape"])
    outputs = ["sp", "flat"]
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    got = _run(g.save(tmp_path, outputs), {"x": x})

    padded = np.pad(x, ((0, 0), (1, 1), (2, 0), (0, 0)))
    c = conv(padded, w, padding="VALID")
    p2 = np.pad(c, ((0, 0), (0, 1), (1, 0), (0, 0)), constant_values=1.5)
    np.testing.assert_allclose(got["sp"], p2[..., :1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["flat"], p2[..., 1:].reshape(1, -1), rtol=1e-4, atol=1e-4)


def conv_transpose(x: np.ndarray, w: np.ndarray, out_hw: tuple[int, int], stride: int, padding: str) -> np.ndarray:
    """TF's conv2d_transpose: the gradient of a conv of an `out_hw` input, filter [kh, kw, out, in]."""
    kh, kw, cout, _ = w.shape
    pads = []
    for size, k in zip(out_hw, (kh, kw), strict=True):
        total = max((-(-size // stride) - 1) * stride + k - size, 0) if padding == "SAME" else 0
        pads.append(total // 2)
    out = np.zeros((1, out_hw[0] + 2 * kh, out_hw[1] + 2 * kw, cout), np.float32)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            for a in range(kh):
                for b in range(kw):
                    out[0, i * stride + a - pads[0] + kh, j * stride + b - pads[1] + kw] += w[a, b] @ x[0, i, j]
    return out[:, kh : kh + out_hw[0], kw : kw + out_hw[1]]


@pytest.mark.parametrize(("size", "padding"), [(6, "SAME"), (5, "SAME"), (7, "VALID")])
def test_transposed_conv_and_add_n_match_numpy(tmp_path: Path, size: int, padding: str) -> None:
    """Conv2DBackpropInput (stride 2, even and odd output sizes, SAME and VALID) after a conv, summed with AddN."""
    rng = np.random.default_rng(size)
    g = GraphBuilder()
    g.placeholder("x", [1, 3, 3, 2])
    g.const("w", rng.normal(size=(3, 3, 4, 2)))
    g.const("sizes", np.array([1, size, size, 4], np.int32))
    g.const("shift", rng.normal(size=(1, size, size, 4)))
    g.node("relu", "Relu", ["x"])
    g.node(
        "up",
        "Conv2DBackpropInput",
        ["sizes", "w", "relu"],
        strides=_ints([1, 2, 2, 1]),
        padding=_s(padding),
        data_format=_s("NHWC"),
        dilations=_ints([1, 1, 1, 1]),
    )
    g.node("sum", "AddN", ["up", "shift", "up"], N={"i": "3"})
    x = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    got = _run(g.save(tmp_path, ["sum"]), {"x": x})
    shift = np.asarray(g.weights[2][1], np.float32)
    up = conv_transpose(np.maximum(x, 0), np.asarray(g.weights[0][1]), (size, size), 2, padding)
    assert got["sum"].shape == (1, size, size, 4)
    np.testing.assert_allclose(got["sum"], 2 * up + shift, rtol=1e-4, atol=1e-4)
