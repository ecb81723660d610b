"""Embedded OCR expert: RapidOCR (PP-OCRv6 detection and recognition, ONNX) reads the text printed in an image."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import ExpertError
from ..types import ModelCard
from .protocol import ExpertContext, LocalExpert, Outputs

# Images are scaled so their longer side is at most this many pixels before text detection. RapidOCR's default
# (shorter side at least 736) blows small images up, which is slow and splits words.
DETECTION_MAX_SIDE = 960


class OCRExpert(LocalExpert):
    """image-to-text by OCR: the lines of printed text found in an image, top to bottom, with boxes and scores.
    It reads text; it does not describe what the image shows."""

    def __init__(self, card: ModelCard, lock: threading.Lock | None = None, *, threads: int | None = None) -> None:
        super().__init__(card, lock)
        self.threads = threads

    def load(self) -> None:
        from rapidocr import RapidOCR

        params = {
            "Global.log_level": "error",
            "Det.limit_type": "max",
            "Det.limit_side_len": DETECTION_MAX_SIDE,
        }
        if self.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
        self._engine = RapidOCR(params=params)

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        path = args.get("image")
        if not path:
            raise ExpertError("image-to-text needs an 'image' file")
        image = _load_rgb(Path(path))
        result = self._engine(image)
        texts = result.txts or ()
        scores = result.scores or ()
        boxes = result.boxes if result.boxes is not None else ()
        lines = [
            {"text": text, "score": round(float(score), 4), "box": [[round(float(x)), round(float(y))] for x, y in box]}
            for text, score, box in zip(texts, scores, boxes, strict=True)
        ]
        return {"text": "\n".join(line["text"] for line in lines), "json": {"lines": lines}}


def _load_rgb(path: Path):
    """The image in RGB; PIL reads more formats than OpenCV and gives a clear error on a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ExpertError(f"{path.name} is not an image that can be read: {exc}") from None
