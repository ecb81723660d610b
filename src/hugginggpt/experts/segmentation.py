"""image-segmentation composed from two real models: a foreground mask (MediaPipe selfie segmentation, converted to
ONNX by `hugginggpt setup`) cut into labelled segments by the NanoDet COCO boxes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ExpertError
from ..setup.files import VisionFiles
from ..types import ModelCard
from .media import segmentation_output
from .nanodet import NANODET_ID, NanoDet
from .protocol import ExpertContext, LocalExpert, Outputs
from .vision import Detection, Detector, OnnxModel, _image_arg, _open_image, count_summary

SELFIE_ID = "embedded/mediapipe-selfie-segmentation"
SEGMENTATION_ID = "embedded/composed-segmentation"
SELFIE_INPUT = 256
SELFIE_INPUT_NAME = "input_1"
# a detection whose box is less than this much foreground gets no segment (the mask did not see the object)
MIN_BOX_FOREGROUND = 0.1


class ForegroundSegmenter:
    """MediaPipe selfie segmentation (256x256 RGB in [0, 1]): the probability that each pixel is foreground.
    Trained on people; animals and other close subjects usually come out as foreground as well."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def mask(self, image: Any) -> np.ndarray:
        """Foreground probabilities [height, width] in 0..1, at the size of `image`."""
        from PIL import Image

        resized = image.convert("RGB").resize((SELFIE_INPUT, SELFIE_INPUT), Image.Resampling.BILINEAR)
        batch = (np.asarray(resized, dtype=np.float32) / 255.0)[None]
        (out,) = self.model.run({SELFIE_INPUT_NAME: batch})
        if out.shape != (1, SELFIE_INPUT, SELFIE_INPUT, 1):
            raise ExpertError(f"selfie segmentation output has shape {out.shape}, expected [1, 256, 256, 1]")
        probs = Image.fromarray(np.clip(out[0, :, :, 0], 0, 1).astype(np.float32), mode="F")
        return np.asarray(probs.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)


def segments_from(foreground: np.ndarray, detections: list[Detection]) -> tuple[list[dict[str, Any]], list[str]]:
    """Labelled segments: each foreground pixel goes to the detection whose box holds it nearest its centre
    (distance scaled by the box's half-size, so overlapping boxes split the pixels between them). Returns the
    segments (`label`, `score`, `box`, boolean `mask`), best score first, and the labels of the detections left
    without one (less than a tenth of their box is foreground: the mask did not see the object)."""
    height, width = foreground.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    ranked = sorted(detections, key=lambda d: -d.score)
    nearest = np.full(foreground.shape, np.inf, dtype=np.float32)
    owner = np.full(foreground.shape, -1, dtype=np.int32)
    for index, det in enumerate(ranked):
        x1, y1, x2, y2 = det.box
        half_w, half_h = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
        distance = np.maximum(np.abs(xs - (x1 + x2) / 2) / half_w, np.abs(ys - (y1 + y2) / 2) / half_h)
        closer = (distance <= 1.0) & (distance < nearest)
        nearest[closer] = distance[closer]
        owner[closer] = index
    owner[foreground <= 0.5] = -1
    segments, unmasked = [], []
    for index, det in enumerate(ranked):
        x1, y1, x2, y2 = det.box
        box_area = max((x2 - x1) * (y2 - y1), 1.0)
        mask = owner == index
        if mask.sum() < MIN_BOX_FOREGROUND * box_area:
            unmasked.append(det.label)
            continue
        segments.append({"label": det.label, "score": det.score, "box": det.as_json()["box"], "mask": mask})
    return segments, unmasked


def segmentation_card(*, available: bool) -> ModelCard:
    return ModelCard(
        id=SEGMENTATION_ID,
        task="image-segmentation",
        backend="embedded",
        available=available,
        license="Apache-2.0",
        tags=["segmentation", "composed", "onnx"],
        priority=-1,  # composed: a real segmentation network ranks first when one is installed
        composed_from=[SELFIE_ID, NANODET_ID],
        description=(
            "segments composed from two real models, not a segmentation network trained on classes: a foreground "
            "mask (MediaPipe selfie segmentation, trained on people; animals and other close subjects usually come "
            "out as foreground too) cut by the NanoDet COCO-80 boxes, which give each segment its label; draws the "
            "coloured segments on the image and gives each one's share of the image"
        ),
        not_for=(
            "scenes without distinct foreground subjects (aerial or satellite images, landscapes, roads, sky), "
            "background classes such as grass, road or sky, and things outside the 80 COCO classes"
        ),
    )


class ComposedSegmentationExpert(LocalExpert):
    """image-segmentation: COCO-labelled segments from the foreground mask and NanoDet boxes, plus `background`."""

    def __init__(self, segmenter: ForegroundSegmenter, detector: Detector, *, available: bool) -> None:
        super().__init__(segmentation_card(available=available))
        self.segmenter = segmenter
        self.detector = detector

    def load(self) -> None:
        self.segmenter.model.session()
        self.detector.model.session()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        from PIL import Image

        path = _image_arg(args)
        image = _open_image(path)
        foreground = self.segmenter.mask(image)
        segments, unmasked = segments_from(foreground, self.detector.detect(image))
        covered = np.zeros(foreground.shape, dtype=bool)
        for segment in segments:
            covered |= segment["mask"]
        pillow = [
            {"label": s["label"], "score": s["score"], "mask": Image.fromarray(s["mask"].astype(np.uint8) * 255)}
            for s in segments
        ]
        outputs = segmentation_output(path, pillow, ctx)
        found = outputs["json"]["segments"]  # type: ignore[index]
        for entry, segment in zip(found, segments, strict=True):
            entry["box"] = segment["box"]
        background = round(float(1.0 - covered.mean()), 4)
        if segments:
            parts = ", ".join(f"{s['label']} {_share(s['area'])}" for s in found)
            noun = "segment" if len(segments) == 1 else "segments"
            text = f"{len(segments)} {noun} ({count_summary([s['label'] for s in segments])}): {parts}"
            text += f"; background {_share(background)}"
        else:
            text = "no COCO object stood out from the background, so there are no segments"
        if unmasked:
            text += f"; found but not segmented (no clear foreground): {count_summary(unmasked)}"
        outputs["text"] = text
        outputs["json"] = {
            "segments": found,
            "background": background,
            "unsegmented": unmasked,
            "composed_from": [SELFIE_ID, NANODET_ID],
        }
        return outputs


def _share(fraction: float) -> str:
    """`26%` of the image; `<1%` rather than a misleading `0%`."""
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"


def segmentation_experts(settings: Settings | None = None, files: VisionFiles | None = None) -> list[LocalExpert]:
    """The composed segmentation expert; available only when `hugginggpt setup` has cached both of its models.
    `files` defaults to the user cache; `settings` is accepted for symmetry with the other expert factories."""
    files = files or VisionFiles.default()
    available = files.ready("selfie-segmentation") and files.ready("nanodet-coco")
    return [
        ComposedSegmentationExpert(
            ForegroundSegmenter(OnnxModel(files.selfie)), NanoDet(OnnxModel(files.nanodet)), available=available
        )
    ]
