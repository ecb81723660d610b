"""The vision experts: counting words, suppression, drawing, availability, and the real models on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.registry import ExpertRegistry, default_registry
from hugginggpt.experts.vision import (
    CAPTION_ID,
    CLASSIFIER_ID,
    DETECTOR_ID,
    Detection,
    compose_caption,
    count_summary,
    draw_detections,
    non_max_suppression,
    plural,
    vision_experts,
)
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.setup.files import STEPS, VisionFiles, demo_inputs
from hugginggpt.workspace import Workspace, sha256_of
from parts import need, setup_files

CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}
JARVIS_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "examples"


def test_plural_and_counts() -> None:
    assert plural("zebra", 2) == "2 zebras"
    assert plural("person", 1) == "1 person"
    assert plural("person", 3) == "3 people"
    assert plural("wine glass", 2) == "2 wine glasses"
    assert plural("bus", 2) == "2 buses"
    assert plural("teddy bear", 2) == "2 teddy bears"
    assert plural("skis", 2) == "2 skis"
    assert count_summary(["zebra", "person", "zebra"]) == "2 zebras, 1 person"


def test_non_max_suppression_keeps_best_of_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 4]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.4], np.float32)
    assert non_max_suppression(boxes, scores, 0.5) == [1, 2, 3]  # box 0 overlaps box 1 (IoU 0.81); box 3 only 0.4


def test_compose_caption() -> None:
    cat = [Detection("cat", 0.8, (0, 0, 5, 5)), Detection("cat", 0.7, (5, 5, 9, 9))]
    assert compose_caption([("tabby, tabby cat", 0.6)], cat) == "a photo of a tabby; objects: 2 cats"
    assert compose_caption([("espresso", 0.9)], []) == "a photo of an espresso"
    assert compose_caption([("ox", 0.1)], cat) == "a photo with 2 cats"
    assert compose_caption([("ox", 0.1)], []) == "possibly a photo of an ox (unsure: 10%)"


def test_draw_detections_marks_the_boxes(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 120), "white")
    path = draw_detections(image, [Detection("dog", 0.87, (50.0, 40.0, 150.0, 110.0))], tmp_path / "out.png")
    drawn = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert drawn.shape == (120, 200, 3)
    assert (drawn[75, 50] != 255).any() and (drawn[75, 100] == 255).all()  # the left edge is drawn, the inside not
    assert (drawn[30:40, 50:80] != 255).any()  # the label tag above the box


async def test_unconverted_models_are_unavailable(tmp_path: Path) -> None:
    experts = vision_experts(files=VisionFiles(tmp_path))
    assert {e.card.id: e.card.available for e in experts} == {
        DETECTOR_ID: False,
        CLASSIFIER_ID: False,
        CAPTION_ID: False,
    }
    assert all(e.card.backend == "embedded" and e.card.license for e in experts)
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    ctx = ExpertContext(Workspace(tmp_path / "out", [tmp_path]), 0, "object-detection")
    with pytest.raises(ExpertError, match="run `hugginggpt setup`"):
        await experts[0].run({"image": str(image)}, ctx)


# ---- the real converted models (after `hugginggpt setup`) -----------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> VisionFiles:
    return setup_files(*STEPS)


@pytest.fixture(scope="module")
def experts(files: VisionFiles) -> dict[str, object]:
    return {e.card.task: e for e in vision_experts(files=files)}


async def _run(expert, image: Path, tmp_path: Path) -> dict:
    ctx = ExpertContext(Workspace(tmp_path, [image.parent]), 1, expert.card.task)
    return await expert.run({"image": str(image)}, ctx)


@pytest.mark.integration
async def test_detection_on_the_dog_photo(experts, files: VisionFiles, tmp_path: Path) -> None:
    photo = demo_inputs(files) / "dog.jpg"
    out = await _run(experts["object-detection"], photo, tmp_path)
    objects = out["json"]["objects"]
    labels = {o["label"] for o in objects}
    assert {"dog", "bicycle"} <= labels and labels & {"car", "truck"}
    assert "1 dog" in out["text"] and "bicycle" in out["text"]
    width, height = Image.open(photo).size
    dog = next(o["box"] for o in objects if o["label"] == "dog")
    assert dog["xmax"] < 0.5 * width and dog["ymax"] > 0.6 * height  # the dog sits bottom left in this photo
    assert all(0 <= o["box"]["xmin"] < o["box"]["xmax"] <= width for o in objects)
    artifact = out["image"]
    drawn = Path(artifact.path)
    assert drawn.is_file() and artifact.sha256 == sha256_of(drawn) and artifact.media_type == "image/jpeg"
    assert Image.open(drawn).size == (width, height)
    difference = np.abs(np.asarray(Image.open(drawn), int) - np.asarray(Image.open(photo), int))
    assert (difference > 60).mean() > 0.005  # boxes and tags were drawn, not just re-encoding noise


@pytest.mark.integration
async def test_detection_counts_animals_and_people(experts, files: VisionFiles, tmp_path: Path) -> None:
    giraffe = (await _run(experts["object-detection"], demo_inputs(files) / "giraffe.jpg", tmp_path))["json"]["counts"]
    assert giraffe.get("giraffe", 0) >= 1 and giraffe.get("zebra", 0) >= 1
    kite = await _run(experts["object-detection"], demo_inputs(files) / "kite.jpg", tmp_path)
    assert kite["json"]["counts"]["person"] >= 3 and kite["json"]["counts"]["kite"] >= 3
    assert "people" in kite["text"] and "kites" in kite["text"]


@pytest.mark.integration
async def test_classification_names_the_cat_and_the_coffee(experts, files: VisionFiles, tmp_path: Path) -> None:
    cat = await _run(experts["image-classification"], demo_inputs(files) / "chelsea.png", tmp_path)
    top5 = [p["label"] for p in cat["json"]["predictions"]]
    assert len(top5) == 5 and CAT_CLASSES & set(top5[:3])
    coffee = await _run(experts["image-classification"], demo_inputs(files) / "coffee.png", tmp_path)
    best = coffee["json"]["predictions"][0]
    assert best["label"] == "espresso" and best["score"] > 0.5
    assert coffee["text"].startswith("espresso (")


@pytest.mark.integration
async def test_composed_caption(experts, files: VisionFiles, tmp_path: Path) -> None:
    out = await _run(experts["image-to-text"], demo_inputs(files) / "giraffe.jpg", tmp_path)
    assert out["text"].startswith("a photo of a zebra") and "giraffe" in out["text"]
    assert out["json"]["composed_from"] == [CLASSIFIER_ID, DETECTOR_ID]


@pytest.mark.integration
async def test_jarvis_zebras(experts, tmp_path: Path) -> None:
    """The paper's "how many zebras" photos: one zebra, three zebras, giraffes among zebras."""
    need(JARVIS_EXAMPLES.is_dir(), f"{JARVIS_EXAMPLES} is not here (../shared is absent on a bare clone)")
    counts = {}
    for n in "bcf":
        out = await _run(experts["object-detection"], JARVIS_EXAMPLES / f"{n}.jpg", tmp_path)
        counts[n] = out["json"]["counts"]
    assert counts["b"] == {"zebra": 1}
    assert 2 <= counts["c"]["zebra"] <= 3
    assert counts["f"]["zebra"] >= 2 and counts["f"]["giraffe"] >= 1


@pytest.mark.integration
async def test_pipeline_counts_objects_with_the_detector(files: VisionFiles, tmp_path: Path) -> None:
    """The paper's demo through the whole pipeline: a (scripted) plan asks for detection; the real expert runs."""
    plan = {"tasks": [{"task": "object-detection", "id": 0, "dep": [-1], "args": {"image": "giraffe.jpg"}}]}
    llm = ScriptedLLM(json.dumps(plan), fallback="There is a giraffe and a zebra.")
    registry = default_registry(Settings(), llm)
    assert isinstance(registry, ExpertRegistry) and registry.get("object-detection", DETECTOR_ID).card.available
    gpt = HuggingGPT(llm, registry, settings=Settings(output_dir=tmp_path))
    answer = await gpt.run("What animals are in giraffe.jpg?", inputs=[demo_inputs(files)])
    (result,) = answer.results
    assert result.status == "ok" and result.model_id == "embedded/nanodet-coco"  # the stronger COCO detector
    assert result.outputs["json"]["counts"]["giraffe"] >= 1
    assert [a.media_type for a in answer.artifacts()] == ["image/jpeg"]


@pytest.mark.integration
async def test_unreadable_image_is_a_clear_error(experts, tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a picture")
    for task in ("object-detection", "image-classification", "image-to-text"):
        with pytest.raises(ExpertError, match="cannot read image notes.jpg"):
            await _run(experts[task], fake, tmp_path)
