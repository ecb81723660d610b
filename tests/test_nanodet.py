"""NanoDet: preprocessing and box decoding on outputs the tests build, and the real converted model on real photos."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hugginggpt.errors import ExpertError
from hugginggpt.experts.nanodet import (
    NANODET_BINS,
    NANODET_ID,
    NANODET_INPUT,
    NanoDet,
    decode,
    nanodet_experts,
    preprocess,
)
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.vision import COCO_LABELS, OnnxModel
from hugginggpt.setup.files import VisionFiles, demo_inputs
from hugginggpt.workspace import Workspace
from parts import setup_files

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "examples"
ZEBRA = COCO_LABELS.index("zebra")
DOG = COCO_LABELS.index("dog")


def _empty_outputs() -> list[np.ndarray]:
    """The six outputs of a model that sees nothing: per stride, low class scores and flat box distributions."""
    outputs = []
    for stride in (8, 16, 32):
        cells = (NANODET_INPUT // stride) ** 2
        outputs.append(np.full((1, cells, 80), 0.01, np.float32))
        outputs.append(np.zeros((1, cells, 4 * NANODET_BINS), np.float32))
    return outputs


def _put(
    outputs: list[np.ndarray], stride: int, row: int, col: int, cls: int, score: float, sides: tuple[int, ...]
) -> None:
    """One confident cell: `sides` are the bins (left, top, right, bottom) its box distributions peak at."""
    level = (8, 16, 32).index(stride)
    scores, boxes = outputs[2 * level], outputs[2 * level + 1]
    cell = row * (NANODET_INPUT // stride) + col
    scores[0, cell, cls] = score
    logits = np.full((4, NANODET_BINS), -30.0, np.float32)
    for side, peak in enumerate(sides):
        logits[side, peak] = 30.0
    boxes[0, cell] = logits.reshape(-1)


def test_decode_places_the_box_from_the_cell_centre_and_distributions() -> None:
    outputs = _empty_outputs()
    _put(outputs, 16, row=5, col=7, cls=ZEBRA, score=0.9, sides=(3, 2, 4, 1))
    (found,) = decode(outputs, (NANODET_INPUT * 2, NANODET_INPUT), min_score=0.35, iou=0.5)
    cx, cy = (7 + 0.5) * 16, (5 + 0.5) * 16
    expected = np.array([(cx - 3 * 16) * 2, cy - 2 * 16, (cx + 4 * 16) * 2, cy + 1 * 16])
    assert found.label == "zebra" and found.score == pytest.approx(0.9)
    np.testing.assert_allclose(found.box, expected, atol=1e-3)


def test_decode_thresholds_suppresses_overlaps_and_keeps_other_classes() -> None:
    outputs = _empty_outputs()
    _put(outputs, 8, row=20, col=20, cls=ZEBRA, score=0.8, sides=(5, 5, 5, 5))
    _put(outputs, 8, row=20, col=21, cls=ZEBRA, score=0.6, sides=(5, 5, 5, 5))  # the same zebra, one cell over
    _put(outputs, 32, row=1, col=1, cls=DOG, score=0.7, sides=(1, 1, 1, 1))
    _put(outputs, 32, row=10, col=10, cls=DOG, score=0.2, sides=(1, 1, 1, 1))  # below the threshold
    found = decode(outputs, (NANODET_INPUT, NANODET_INPUT), min_score=0.35, iou=0.5)
    assert [(d.label, round(d.score, 2)) for d in found] == [("zebra", 0.8), ("dog", 0.7)]
    assert decode(_empty_outputs(), (100, 100), min_score=0.35, iou=0.5) == []


def test_decode_rejects_outputs_of_another_model() -> None:
    with pytest.raises(ExpertError, match="stride-32 level"):
        decode(_empty_outputs()[:4], (10, 10), min_score=0.3, iou=0.5)
    with pytest.raises(ExpertError, match="expected"):
        decode([np.zeros((4, 4), np.float32)], (10, 10), min_score=0.3, iou=0.5)


def test_preprocess_is_bgr_normalised_nchw() -> None:
    batch = preprocess(Image.new("RGB", (50, 30), (255, 0, 0)))
    assert batch.shape == (1, 3, NANODET_INPUT, NANODET_INPUT) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, :, 0, 0], [-103.53 / 57.375, -116.28 / 57.12, (255 - 123.675) / 58.395])


async def test_unavailable_before_setup(tmp_path: Path) -> None:
    (expert,) = nanodet_experts(files=VisionFiles(tmp_path / "cache"))
    assert expert.card.id == NANODET_ID and expert.card.available is False
    assert expert.card.task == "object-detection" and expert.card.not_for
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    ctx = ExpertContext(Workspace(tmp_path / "out", [tmp_path]), 0, "object-detection")
    with pytest.raises(ExpertError, match="run `hugginggpt setup`"):
        await expert.run({"image": str(image)}, ctx)


# ---- the real converted model (after `hugginggpt setup`) -------------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> VisionFiles:
    return setup_files("nanodet-coco", "demo-photos")


def _counts(files: VisionFiles, path: Path) -> Counter[str]:
    detector = NanoDet(OnnxModel(files.nanodet))
    return Counter(d.label for d in detector.detect(Image.open(path).convert("RGB")))


@pytest.mark.integration
def test_real_model_finds_the_animals_on_demo_photos(files: VisionFiles) -> None:
    demo = demo_inputs(files)
    assert _counts(files, demo / "giraffe.jpg") == Counter({"giraffe": 1, "zebra": 1})
    # a person with a dog and a horse: all three (the CenterNet detector misses the horse)
    assert _counts(files, demo / "person.jpg") == Counter({"person": 1, "dog": 1, "horse": 1})
    dog = _counts(files, demo / "dog.jpg")
    assert dog["dog"] == 1 and dog["bicycle"] == 1


@pytest.mark.integration
@pytest.mark.needs(EXAMPLES.is_dir(), reason="../shared/jarvis-data/examples is not beside this checkout")
def test_real_model_counts_three_zebras(files: VisionFiles) -> None:
    assert _counts(files, EXAMPLES / "c.jpg") == Counter({"zebra": 3})
    savanna = _counts(files, EXAMPLES / "f.jpg")  # 3 giraffes and 3 zebras in front (the third giraffe scores 0.36)
    assert savanna["zebra"] == 3 and savanna["giraffe"] >= 2 and set(savanna) <= {"giraffe", "zebra"}


@pytest.mark.integration
async def test_real_expert_outputs(files: VisionFiles, tmp_path: Path) -> None:
    (expert,) = nanodet_experts(files=files)
    assert expert.card.available is True
    image = demo_inputs(files) / "giraffe.jpg"
    ctx = ExpertContext(Workspace(tmp_path, [image.parent]), 1, "object-detection")
    out = await expert.run({"image": str(image)}, ctx)
    assert out["text"] == "1 giraffe, 1 zebra"
    assert out["json"]["counts"] == {"giraffe": 1, "zebra": 1}
    assert Path(out["image"].path).is_file() and out["image"].media_type == "image/jpeg"
