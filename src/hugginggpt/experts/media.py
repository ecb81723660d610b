"""Typed expert outputs shared by backends: label lists, boxes drawn on images, mask overlays, WAV files."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

from ..errors import ExpertError
from .protocol import ExpertContext, Outputs

_AUDIO_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"))


def need(args: dict[str, str], key: str) -> str:
    """A required argument, or ExpertError naming it."""
    value = args.get(key)
    if value is None or not str(value).strip():
        raise ExpertError(f"missing argument {key!r}")
    return value


def num(value: Any) -> float:
    return round(float(value), 4)


def labels_output(items: list[dict[str, Any]], limit: int = 5) -> Outputs:
    """`{"text": "top (0.93)", "json": {"labels": [...]}}` from items with `label` and `score`, best first."""
    ranked = sorted(items, key=lambda i: -float(i.get("score", 0)))[:limit]
    labels = [{"label": str(i["label"]), "score": num(i["score"])} for i in ranked]
    if not labels:
        raise ExpertError("the model returned no labels")
    top = labels[0]
    return {"text": f"{top['label']} ({top['score']:.2f})", "json": {"labels": labels}}


def open_image(path: str) -> Any:
    """An input image as RGB (Pillow), or ExpertError when it cannot be read."""
    try:
        from PIL import Image
    except ImportError:
        raise ExpertError("image tasks need Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise ExpertError(f"cannot read image {Path(path).name}: {exc}") from None


def detection_output(image_path: str, found: list[dict[str, Any]], ctx: ExpertContext) -> Outputs:
    """Objects (`label`, `score`, `box` with xmin/ymin/xmax/ymax) as counts, JSON, and the image with boxes drawn."""
    objects = [
        {"label": str(o["label"]), "score": num(o["score"]), "box": {k: int(v) for k, v in dict(o["box"]).items()}}
        for o in sorted(found, key=lambda o: -float(o["score"]))
    ]
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["label"]] = counts.get(obj["label"], 0) + 1
    text = ", ".join(f"{n} {label}" for label, n in counts.items()) or "no objects found"
    outputs: Outputs = {"text": text, "json": {"objects": objects}}
    image = open_image(image_path)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for obj in objects:
        box = obj["box"]
        corners = (box["xmin"], box["ymin"], max(box["xmax"], box["xmin"]), max(box["ymax"], box["ymin"]))
        draw.rectangle(corners, outline=(255, 0, 0), width=max(1, min(image.size) // 150))
        draw.text((corners[0] + 2, corners[1] + 2), f"{obj['label']} {obj['score']:.2f}", fill=(255, 0, 0))
    path = ctx.output_path(".png")
    image.save(path)
    outputs["image"] = ctx.artifact(path, "image")
    return outputs


def segmentation_output(image_path: str, segments: list[dict[str, Any]], ctx: ExpertContext) -> Outputs:
    """Segments (`label`, `score`, `mask` as a Pillow image) as labels, JSON with areas, and a coloured overlay."""
    import numpy as np
    from PIL import Image

    image = open_image(image_path)
    canvas = np.asarray(image, dtype=np.float32).copy()
    rng = np.random.default_rng(0)
    found = []
    for segment in segments:
        mask = np.asarray(segment["mask"].convert("L").resize(image.size), dtype=np.uint8) > 127
        canvas[mask] = canvas[mask] * 0.5 + rng.integers(40, 256, size=3) * 0.5
        score = segment.get("score")
        label = str(segment.get("label"))
        found.append({"label": label, "score": None if score is None else num(score), "area": num(mask.mean())})
    path = ctx.output_path(".png")
    Image.fromarray(canvas.clip(0, 255).astype("uint8")).save(path)
    text = ", ".join(s["label"] for s in found) or "no segments found"
    return {"text": text, "image": ctx.artifact(path, "image"), "json": {"segments": found}}


def image_output(image: Any, ctx: ExpertContext, text: str | None = None) -> Outputs:
    """A Pillow image saved as PNG into the workspace."""
    path = ctx.output_path(".png")
    image.save(path)
    outputs: Outputs = {"image": ctx.artifact(path, "image")}
    if text:
        outputs["text"] = text
    return outputs


def audio_suffix(data: bytes) -> str:
    """The file suffix of encoded audio bytes, from their magic number (default .wav)."""
    return next((suffix for magic, suffix in _AUDIO_MAGIC if data.startswith(magic)), ".wav")


def write_wav(path: Path, samples: Any, rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV."""
    import numpy as np

    pcm = (np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def read_wav(path: Path) -> tuple[Any, int]:
    """Mono float32 samples and the sample rate of a PCM WAV file (channels averaged)."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            frames = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ExpertError(f"cannot read {path.name} as WAV: {exc}") from None
    if width not in (1, 2, 4):
        raise ExpertError(f"{path.name}: {8 * width}-bit WAV is not supported")
    if rate <= 0:
        raise ExpertError(f"{path.name}: a WAV file needs a sample rate above 0")
    frames = frames[: len(frames) - len(frames) % (width * channels)]  # a damaged file may end in part of a frame
    if not frames:
        raise ExpertError(f"{path.name} holds no audio samples")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    data = np.frombuffer(frames, dtype=dtype).astype(np.float32)
    data = (data - 128.0) / 128.0 if width == 1 else data / float(np.iinfo(dtype).max)
    return data.reshape(-1, channels).mean(axis=1), rate
