"""Embedded OCR expert: RapidOCR (PP-OCRv6 detection and recognition, ONNX) reads the text printed in an image."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..errors import ExpertError
from ..types import ModelCard
from .protocol import ExpertContext, LocalExpert, Outputs

# Images are scaled so their longer side is at most this many pixels before text detection. RapidOCR's default
# (shorter side at least 736) blows small images up, which is slow and splits words.
DETECTION_MAX_SIDE = 960


class OCRLine(BaseModel):
    """One piece of text the OCR found: its words, the recogniser's confidence, and its box (4 corner points)."""

    text: str
    score: float
    box: list[tuple[int, int]]

    @property
    def top(self) -> int:
        return min(y for _, y in self.box)

    @property
    def bottom(self) -> int:
        return max(y for _, y in self.box)

    @property
    def left(self) -> int:
        return min(x for x, _ in self.box)

    @property
    def right(self) -> int:
        return max(x for x, _ in self.box)

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score, "box": [list(point) for point in self.box]}


class OCRRow(BaseModel):
    """Text pieces on one row of the page, left to right, joined with wide gaps kept as two spaces
    (a table's label and value, e.g. `Total due  $482.50`)."""

    text: str
    top: int
    bottom: int
    left: int
    right: int


class OCRReader:
    """The RapidOCR engine, loaded on first use and used by one caller at a time (the OCR expert and the
    composed experts share one reader)."""

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._engine is not None:
            return
        from rapidocr import RapidOCR

        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Det.limit_type": "max",
            "Det.limit_side_len": DETECTION_MAX_SIDE,
        }
        if self.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
        self._engine = RapidOCR(params=params)

    def read(self, image: Any) -> list[OCRLine]:
        """The text pieces in an RGB Pillow image, in the engine's reading order (top to bottom); pieces without a
        letter or digit are dropped."""
        with self._lock:
            self._load()
            result = self._engine(image)
        texts = result.txts or ()
        scores = result.scores or ()
        boxes = result.boxes if result.boxes is not None else ()
        return [
            OCRLine(
                text=text,
                score=round(float(score), 4),
                box=[(round(float(x)), round(float(y))) for x, y in box],
            )
            for text, score, box in zip(texts, scores, boxes, strict=True)
            if any(char.isalnum() for char in text)  # a lone "_" or "-" is an edge, not text
        ]


def text_rows(lines: list[OCRLine]) -> list[OCRRow]:
    """The pieces grouped into rows (pieces whose vertical centres lie within each other's height), top to
    bottom, each row left to right."""
    rows: list[list[OCRLine]] = []
    for line in sorted(lines, key=lambda piece: (piece.top + piece.bottom) / 2):
        centre = (line.top + line.bottom) / 2
        for row in rows:
            last = row[-1]
            if last.top <= centre <= last.bottom and line.top <= (last.top + last.bottom) / 2 <= line.bottom:
                row.append(line)
                break
        else:
            rows.append([line])
    result = []
    for row in rows:
        row.sort(key=lambda piece: piece.left)
        result.append(
            OCRRow(
                text="  ".join(piece.text.strip() for piece in row),
                top=min(piece.top for piece in row),
                bottom=max(piece.bottom for piece in row),
                left=min(piece.left for piece in row),
                right=max(piece.right for piece in row),
            )
        )
    return result


def read_rgb(path: Path) -> Any:
    """The image in RGB, turned upright by its EXIF orientation; PIL reads more formats than OpenCV and gives a
    clear error on a bad file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ExpertError(f"{path.name} is not an image that can be read: {exc}") from None


class OCRExpert(LocalExpert):
    """image-to-text by OCR: the lines of printed text found in an image, top to bottom, with boxes and scores.
    It reads text; it does not describe what the image shows. An image with no readable text is an error (so the
    tasks that need its text are skipped with that reason), not an empty string."""

    def __init__(
        self,
        card: ModelCard,
        lock: threading.Lock | None = None,
        *,
        threads: int | None = None,
        reader: OCRReader | None = None,
    ) -> None:
        super().__init__(card, lock)
        self.reader = reader or OCRReader(threads=threads)

    def load(self) -> None:
        self.reader.load()

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        path = args.get("image")
        if not path:
            raise ExpertError("image-to-text needs an 'image' file")
        lines = self.reader.read(read_rgb(Path(path)))
        if not lines:
            raise ExpertError(f"no readable text found in {Path(path).name}")
        return {"text": "\n".join(line.text for line in lines), "json": {"lines": [line.as_json() for line in lines]}}
