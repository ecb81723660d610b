"""Composed segmentation: splitting a foreground mask between detection boxes, and the real models on real photos."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hugginggpt.errors import ExpertError
from hugginggpt.experts.nanodet import NANODET_ID
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.segmentation import (
    SEGMENTATION_ID,
    SELFIE_ID,
    ForegroundSegmenter,
    segmentation_experts,
    segments_from,
)
from hugginggpt.experts.vision import Detection, OnnxModel
from hugginggpt.setup.files import VisionFiles, demo_inputs
from hugginggpt.workspace import Workspace
from parts import setup_files

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "examples"


def test_overlapping_boxes_split_the_foreground_by_nearest_centre() -> None:
    foreground = np.zeros((40, 100), np.float32)
    foreground[10:30, 10:90] = 0.9  # one blob covering two side-by-side animals
    left = Detection("zebra", 0.9, (10.0, 10.0, 60.0, 30.0))
    right = Detection("zebra", 0.6, (40.0, 10.0, 90.0, 30.0))  # overlaps the left box over x 40-60
    empty = Detection("car", 0.8, (0.0, 32.0, 100.0, 40.0))  # a box over background only
    segments, unmasked = segments_from(foreground, [right, empty, left])
    assert [s["label"] for s in segments] == ["zebra", "zebra"] and unmasked == ["car"]
    first, second = (s["mask"] for s in segments)
    assert segments[0]["score"] == 0.9  # best first
    assert not (first & second).any()
    assert (first | second).sum() == (foreground > 0.5).sum()
    # the overlap is split at its middle (x = 50): each pixel goes to the box whose centre is nearer
    assert first[20, 45] and not first[20, 55] and second[20, 55]


def test_a_box_with_too_little_foreground_gets_no_segment() -> None:
    foreground = np.zeros((50, 50), np.float32)
    foreground[0:3, 0:3] = 1.0  # 9 of the box's 2500 pixels
    segments, unmasked = segments_from(foreground, [Detection("person", 0.7, (0.0, 0.0, 50.0, 50.0))])
    assert segments == [] and unmasked == ["person"]


async def test_unavailable_before_setup(tmp_path: Path) -> None:
    (expert,) = segmentation_experts(files=VisionFiles(tmp_path / "cache"))
    card = expert.card
    assert card.id == SEGMENTATION_ID and card.task == "image-segmentation" and card.available is False
    assert card.composed_from == [SELFIE_ID, NANODET_ID] and "aerial" in card.not_for
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    ctx = ExpertContext(Workspace(tmp_path / "out", [tmp_path]), 0, "image-segmentation")
    with pytest.raises(ExpertError, match="run `hugginggpt setup`"):
        await expert.run({"image": str(image)}, ctx)


# ---- the real converted models (after `hugginggpt setup`) -------------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> VisionFiles:
    return setup_files("selfie-segmentation", "nanodet-coco", "demo-photos")


@pytest.mark.integration
def test_real_foreground_mask_finds_the_bird(files: VisionFiles) -> None:
    image = Image.open(demo_inputs(files) / "eagle.jpg").convert("RGB")
    mask = ForegroundSegmenter(OnnxModel(files.selfie)).mask(image)
    assert mask.shape == (image.height, image.width)
    foreground = mask > 0.5
    assert 0.08 < foreground.mean() < 0.4  # the eagle, not the water
    assert foreground[: image.height // 8].mean() < 0.02  # the top of the photo is water


@pytest.mark.integration
async def test_real_expert_segments_animals(files: VisionFiles, tmp_path: Path) -> None:
    (expert,) = segmentation_experts(files=files)
    assert expert.card.available is True
    image = demo_inputs(files) / "giraffe.jpg"
    ctx = ExpertContext(Workspace(tmp_path, [image.parent]), 1, "image-segmentation")
    out = await expert.run({"image": str(image)}, ctx)
    labels = Counter(s["label"] for s in out["json"]["segments"])
    assert labels == Counter({"giraffe": 1, "zebra": 1})
    assert out["text"].startswith("2 segments (1 giraffe, 1 zebra)")
    assert 0.5 < out["json"]["background"] < 1.0
    assert out["image"].media_type == "image/png" and Path(out["image"].path).is_file()


@pytest.mark.integration
@pytest.mark.needs(EXAMPLES.is_dir(), reason="../shared/jarvis-data/examples is not beside this checkout")
async def test_real_expert_splits_three_zebras(files: VisionFiles, tmp_path: Path) -> None:
    (expert,) = segmentation_experts(files=files)
    ctx = ExpertContext(Workspace(tmp_path, [EXAMPLES]), 1, "image-segmentation")
    out = await expert.run({"image": str(EXAMPLES / "c.jpg")}, ctx)
    segments = out["json"]["segments"]
    assert [s["label"] for s in segments] == ["zebra"] * 3
    assert all(s["area"] > 0.03 for s in segments) and out["json"]["unsegmented"] == []
