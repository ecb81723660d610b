"""Scene facts about an image from real models and its pixels, in short lines a small LLM can read."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ..errors import ExpertError
from .ocr import OCRReader, read_rgb, text_rows
from .vision import Classifier, Detector, plural, short_label

# Plain colour names, in the order ties are broken.
COLOURS = (
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "beige", "black", "grey", "white",
)  # fmt: skip
_INDEX = {name: number for number, name in enumerate(COLOURS)}
_VIVID = tuple(_INDEX[name] for name in ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"))

# Pixels are counted on the image scaled so its longer side is this many pixels (box averaging smooths noise).
SAMPLE_SIDE = 256
MIN_IMAGE_SHARE = 0.05  # a colour named for the whole image covers at least this share of it
MIN_OBJECT_SHARE = 0.08  # a colour named for an object covers at least this share of its box
MIN_ACCENT_SHARE = 0.02  # a vivid colour named first for an object covers at least this share of its box
ACCENT_LIFT = 4.0  # ... and is this many times as common in the box as in the rest of the image
INNER_MARGIN = 0.15  # an object's colours are counted in its box less this fraction on each side
MAX_LISTED = 6  # objects of one label listed one by one; more are tallied
MAX_TEXT_ROWS = 8
MAX_LABELS = 3
MIN_LABEL_PROBABILITY = 0.05
MIN_SURE_LABEL = 0.2  # below this the classifier's best class is not shown to the LLM at all


def colour_indices(rgb: np.ndarray) -> np.ndarray:
    """The index into COLOURS of each pixel of an (..., 3) uint8 RGB array, by hue, saturation and value."""
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    high = pixels.max(axis=-1)
    low = pixels.min(axis=-1)
    span = high - low
    v = high
    s = np.where(high > 0, span / np.where(high > 0, high, 1), 0)
    safe = np.where(span > 0, span, 1)
    h = np.where(
        high == r,
        ((g - b) / safe) % 6,
        np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = np.where(span > 0, h * 60.0, 0.0)

    out = np.full(h.shape, -1, dtype=np.int8)

    def put(mask: np.ndarray, name: str) -> None:  # first rule that matches a pixel names it
        out[mask & (out == -1)] = _INDEX[name]

    put(v < 0.2, "black")
    grey = (s < 0.2) | ((s < 0.4) & (v < 0.45))
    put(grey & (v >= 0.75), "white")
    put(grey & (v < 0.3), "black")
    put(grey, "grey")
    reds = (h < 15) | (h >= 345)
    put(reds & (s >= 0.55) & (v >= 0.35), "red")
    put(reds & (v >= 0.7), "pink")
    put(reds, "brown")
    oranges = (h >= 15) & (h < 45)
    put(oranges & (v >= 0.75) & (s >= 0.5), "orange")
    put(oranges & (v >= 0.75), "beige")
    put(oranges, "brown")
    yellows = (h >= 45) & (h < 70)
    put(yellows & (v < 0.45) & (h < 55), "brown")
    put(yellows & (v < 0.45), "green")
    put(yellows & (s < 0.3) & (v >= 0.75) & (h < 60), "beige")
    put(yellows, "yellow")
    put((h >= 70) & (h < 165), "green")
    put((h >= 165) & (h < 190), "cyan")
    put((h >= 190) & (h < 260), "blue")
    put((h >= 260) & (h < 290), "purple")
    put(v >= 0.6, "pink")
    put(v >= 0, "purple")
    return out


def vivid(rgb: np.ndarray) -> np.ndarray:
    """Which pixels of an (..., 3) uint8 RGB array are strongly coloured (saturated and not dark)."""
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    high, low = pixels.max(axis=-1), pixels.min(axis=-1)
    return (high >= 0.3) & (high - low >= 0.5 * high)


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The plain name of one colour: `colour_name((200, 30, 30)) == "red"`."""
    return COLOURS[int(colour_indices(np.array([[rgb]], dtype=np.uint8))[0, 0])]


def _shares(indices: np.ndarray) -> np.ndarray:
    counts = np.bincount(indices.reshape(-1).astype(np.int64), minlength=len(COLOURS)).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


class ColourShare(BaseModel):
    name: str
    share: float = Field(description="fraction of the pixels, 0-1")


def dominant_colours(image: Any, *, top: int = 4, min_share: float = MIN_IMAGE_SHARE) -> list[ColourShare]:
    """The plain colours covering most of a Pillow image, largest share first."""
    shares = _shares(colour_indices(_sample(image)))
    return _ranked(shares, top, min_share)


def _ranked(shares: np.ndarray, top: int, min_share: float) -> list[ColourShare]:
    order = sorted(range(len(COLOURS)), key=lambda i: (-shares[i], i))
    found = [ColourShare(name=COLOURS[i], share=round(float(shares[i]), 3)) for i in order if shares[i] >= min_share]
    if not found and shares.sum():
        found = [ColourShare(name=COLOURS[order[0]], share=round(float(shares[order[0]]), 3))]
    return found[:top]


def _sample(image: Any) -> np.ndarray:
    from PIL import Image

    scale = SAMPLE_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def object_colours(
    indices: np.ndarray, strong: np.ndarray, box: tuple[float, float, float, float], scale: float
) -> list[str]:
    """The colours of an object, from the pixels of the middle of its box (where the object most likely is)
    against the rest of the image: a vivid colour concentrated in the box comes first even when it is thin (a red
    bicycle frame); then the colour most over-represented in the box (at most two). `indices` are the colour
    indices of the sampled image, `strong` its vivid pixels, `scale` the sample's size over the original's."""
    x1, y1, x2, y2 = (v * scale for v in box)
    dx, dy = (x2 - x1) * INNER_MARGIN, (y2 - y1) * INNER_MARGIN
    inner = _mask(indices.shape, (x1 + dx, y1 + dy, x2 - dx, y2 - dy))
    whole = _mask(indices.shape, (x1, y1, x2, y2))
    within = _shares(indices[inner])
    outside = _shares(indices[~whole]) if (~whole).any() else np.zeros(len(COLOURS))
    chosen: list[int] = []
    vivid_within = _shares(np.where(strong[inner], indices[inner], _INDEX["grey"])) if inner.any() else within
    vivid_outside = _shares(np.where(strong[~whole], indices[~whole], _INDEX["grey"])) if (~whole).any() else outside
    accents = [
        i for i in _VIVID if vivid_within[i] >= MIN_ACCENT_SHARE and vivid_within[i] >= ACCENT_LIFT * vivid_outside[i]
    ]
    if accents:
        chosen.append(max(accents, key=lambda i: vivid_within[i]))
    lift = within - outside
    common = [i for i in range(len(COLOURS)) if within[i] >= MIN_OBJECT_SHARE and i not in chosen]
    ranked = sorted(common, key=lambda i: (-lift[i], -within[i]))
    if ranked and lift[ranked[0]] > 0:
        chosen.append(ranked[0])
        second = ranked[1:2]
        if not accents and second and lift[second[0]] >= 0.5 * lift[ranked[0]] and within[second[0]] >= 0.1:
            chosen.append(second[0])
    elif not chosen:
        chosen.append(int(np.argmax(within)))
    return [COLOURS[i] for i in chosen]


def _mask(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> np.ndarray:
    height, width = shape
    x1, y1 = max(0, min(int(box[0]), width - 1)), max(0, min(int(box[1]), height - 1))
    x2, y2 = max(x1 + 1, min(round(box[2]), width)), max(y1 + 1, min(round(box[3]), height))
    mask = np.zeros(shape, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def position(box: tuple[float, float, float, float], width: int, height: int) -> str:
    """Where a box's centre lies, in thirds: `top left`, `centre`, `bottom`, `right`."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    column = ("left", "centre", "right")[min(2, int(3 * cx / max(width, 1)))]
    row = ("top", "middle", "bottom")[min(2, int(3 * cy / max(height, 1)))]
    if row == "middle":
        return column
    return row if column == "centre" else f"{row} {column}"


class SceneObject(BaseModel):
    label: str
    score: float
    position: str
    colours: list[str] = Field(default_factory=list)
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in pixels (not shown to the LLM)")


class SceneLabel(BaseModel):
    label: str
    probability: float


class SceneText(BaseModel):
    text: str
    position: str


class SceneFacts(BaseModel):
    """What real models and the pixels say about one image. A source that could not run is None, and `missing`
    says why; an empty list means the source ran and found nothing."""

    image: str
    width: int
    height: int
    colours: list[ColourShare] = Field(default_factory=list)
    objects: list[SceneObject] | None = None
    labels: list[SceneLabel] | None = None
    text: list[SceneText] | None = None
    missing: dict[str, str] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list, description="ids of the models that produced these facts")

    def counts(self) -> dict[str, int]:
        """Objects per label, most frequent first."""
        counts = Counter(o.label for o in self.objects or ())
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def colour_names(self) -> set[str]:
        """Every colour named in the facts (the image's and the objects')."""
        names = {c.name for c in self.colours}
        for obj in self.objects or ():
            names.update(obj.colours)
        return names

    def lines(self) -> list[str]:
        """The facts as short sentences, without boxes or scores a small model could misread."""
        lines = [f"Image {self.image}, {self.width}x{self.height} pixels."]
        if self.objects is None:
            lines.append(f"Objects: unknown ({self.missing.get('objects', 'no object detector')}).")
        elif not self.objects:
            lines.append("Objects: none found (the detector knows 80 common kinds: people, animals, vehicles, things).")
        else:
            lines.append("Objects found: " + ", ".join(plural(label, n) for label, n in self.counts().items()) + ".")
            for label, count in self.counts().items():
                lines.append(self._object_line(label, count))
        if self.colours:
            shares = ", ".join(f"{c.name} {c.share:.0%}" for c in self.colours)
            lines.append(f"Main colours of the whole image: {shares}.")
        if self.labels is None:
            lines.append(f"Kind of picture: unknown ({self.missing.get('labels', 'no image classifier')}).")
        elif self.labels and self.labels[0].probability >= MIN_SURE_LABEL:
            guesses = ", ".join(f"{short_label(lb.label)} {lb.probability:.0%}" for lb in self.labels)
            lines.append(f"The whole picture looks most like (ImageNet classes): {guesses}.")
        elif self.labels:
            lines.append("The whole picture matches no ImageNet class well.")
        if self.text is None:
            lines.append(f"Text: unknown ({self.missing.get('text', 'no OCR')}).")
        elif not self.text:
            lines.append("Text written in the image: none found.")
        else:
            shown = "; ".join(f'"{t.text}" ({t.position})' for t in self.text[:MAX_TEXT_ROWS])
            more = f" and {len(self.text) - MAX_TEXT_ROWS} more lines" if len(self.text) > MAX_TEXT_ROWS else ""
            lines.append(f"Text written in the image: {shown}{more}.")
        return lines

    def render(self) -> str:
        return "\n".join(self.lines())

    def summary(self) -> str:
        """One line: what was found, for a reply that says what the facts were."""
        parts = []
        if self.objects is not None:
            counts = ", ".join(plural(label, n) for label, n in self.counts().items())
            parts.append(f"objects: {counts or 'none found'}")
        if self.colours:
            parts.append("colours: " + ", ".join(c.name for c in self.colours))
        if self.text is not None:
            parts.append("text: " + ("; ".join(f'"{t.text}"' for t in self.text[:3]) if self.text else "none"))
        return "; ".join(parts)

    def _object_line(self, label: str, count: int) -> str:
        found = [o for o in self.objects or () if o.label == label]
        described = [f"{' and '.join(o.colours) or 'colour unknown'} ({o.position})" for o in found]
        if count > MAX_LISTED:
            colours = Counter(o.colours[0] for o in found if o.colours)
            tally = ", ".join(f"{n} {name}" for name, n in colours.most_common())
            return f"- {plural(label, count)}, by main colour: {tally}."
        return f"- {plural(label, count)}: " + "; ".join(described) + "."


@dataclass
class SceneReader:
    """Reads the scene facts of an image with whichever models it was given (each optional; a missing one is
    named in `missing`, never guessed). Blocking: call it in a worker thread. Each model is used under its lock,
    the same lock its own expert takes, so one model runs one call at a time."""

    detector: Detector | None = None
    classifier: Classifier | None = None
    ocr: OCRReader | None = None
    detector_lock: threading.Lock = field(default_factory=threading.Lock)
    classifier_lock: threading.Lock = field(default_factory=threading.Lock)
    source_ids: dict[str, str] = field(default_factory=dict)  # "objects" / "labels" / "text" -> model id
    missing: dict[str, str] = field(default_factory=dict)  # why a source has no model, e.g. "run hugginggpt setup"

    def read(self, path: Path, *, objects: bool = True, labels: bool = True, text: bool = True) -> SceneFacts:
        path = Path(path)
        image = read_rgb(path)
        width, height = image.size
        sample = _sample(image)
        indices = colour_indices(sample)
        strong = vivid(sample)
        facts = SceneFacts(
            image=path.name,
            width=width,
            height=height,
            colours=_ranked(_shares(indices), 4, MIN_IMAGE_SHARE),
            missing=dict(self.missing),
        )
        if objects:
            facts.objects = self._objects(image, indices, strong, sample.shape[1] / width, facts)
        if labels:
            facts.labels = self._labels(image, facts)
        if text:
            facts.text = self._text(image, facts)
        facts.sources = [self.source_ids[s] for s in ("objects", "labels", "text") if s in self.source_ids]
        return facts

    def _objects(
        self, image: Any, indices: np.ndarray, strong: np.ndarray, scale: float, facts: SceneFacts
    ) -> list[SceneObject] | None:
        if self.detector is None:
            facts.missing.setdefault("objects", "no object detector is installed: run `hugginggpt setup`")
            return None
        try:
            with self.detector_lock:
                detections = self.detector.detect(image)
        except ExpertError as exc:
            facts.missing["objects"] = str(exc)
            return None
        return [
            SceneObject(
                label=d.label,
                score=round(d.score, 3),
                position=position(d.box, facts.width, facts.height),
                colours=object_colours(indices, strong, d.box, scale),
                box=tuple(round(v, 1) for v in d.box),
            )
            for d in sorted(detections, key=lambda d: ((d.box[0] + d.box[2]) / 2, -d.score))
        ]

    def _labels(self, image: Any, facts: SceneFacts) -> list[SceneLabel] | None:
        if self.classifier is None:
            facts.missing.setdefault("labels", "no image classifier is installed: run `hugginggpt setup`")
            return None
        try:
            with self.classifier_lock:
                top = self.classifier.classify(image)
        except ExpertError as exc:
            facts.missing["labels"] = str(exc)
            return None
        kept = [top[0], *(p for p in top[1:] if p[1] >= MIN_LABEL_PROBABILITY)][:MAX_LABELS] if top else []
        return [SceneLabel(label=label, probability=round(p, 3)) for label, p in kept]

    def _text(self, image: Any, facts: SceneFacts) -> list[SceneText] | None:
        if self.ocr is None:
            facts.missing.setdefault("text", "no OCR model is installed")
            return None
        try:
            rows = text_rows(self.ocr.read(image))
        except ExpertError as exc:
            facts.missing["text"] = str(exc)
            return None
        return [
            SceneText(text=row.text, position=position((row.left, row.top, row.right, row.bottom), *image.size))
            for row in rows
        ]
