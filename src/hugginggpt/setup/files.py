"""Where `hugginggpt setup` puts its results in the user cache, and whether a step's results are intact. The vision
experts read this at request time to find their converted ONNX files, so it imports nothing else of `setup`."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import cache_dir
from ..workspace import sha256_of

STEPS = (
    "centernet-coco",
    "nanodet-coco",
    "selfie-segmentation",
    "efficientnet-lite0",
    "demo-photos",
    "demo-text-image",
)
# bump a step's version when its output changes, so cached results are rebuilt
STEP_VERSIONS = {
    "centernet-coco": 1,
    "nanodet-coco": 1,
    "selfie-segmentation": 1,
    "efficientnet-lite0": 1,
    "demo-photos": 1,
    "demo-text-image": 1,
}

# demo photos: (deb package, path inside it, name in the demo folder); `setup.demo` fetches them
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
        if not entry or entry.get("version") != STEP_VERSIONS[step]:
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


def demo_inputs(files: VisionFiles | None = None) -> Path:
    """The folder of demo inputs (photos and a generated image with text) that `hugginggpt setup` fills."""
    return (files or VisionFiles.default()).demo


# The demo uses three embedded experts in one graph: COCO detection, OCR, and text-to-speech fed by the OCR.
DEMO_REQUEST = "Count the objects in kite.jpg, read the text in sign.png, and read that text aloud."
DEMO_FILES = ("kite.jpg", "sign.png")


def missing_demo_files(folder: Path) -> list[str]:
    """The files the demo request needs that are not in `folder` (empty once `hugginggpt setup` ran)."""
    return [name for name in DEMO_FILES if not (folder / name).is_file()]


def read_manifest(files: VisionFiles) -> dict[str, Any]:
    try:
        data = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_write(path: Path, data: bytes) -> None:
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
def locked(path: Path) -> Iterator[None]:
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
