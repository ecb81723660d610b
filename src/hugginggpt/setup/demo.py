"""The demo-input steps: photos from Debian packages (`files.DEMO_PHOTOS`) and an image with printed text (for OCR),
written to the demo folder (`files.demo_inputs()`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fetch import apt_download, extract_deb
from .files import DEMO_PHOTOS, VisionFiles, atomic_write

DEMO_DEBS = ("darknet", "python3-skimage")
DEMO_TEXT = ("HuggingGPT runs offline", "Plan, select, execute, answer.")


def demo_photos(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"fetching photos from Debian packages {', '.join(DEMO_DEBS)} with apt-get download (24 MB)")
    debs = apt_download(DEMO_DEBS, work, log)
    for package, member, name in DEMO_PHOTOS:
        extracted = extract_deb(debs[package], member, work / "photos")
        atomic_write(files.demo / name, extracted.read_bytes())
    versions = {p: d.name.split("_")[1] for p, d in debs.items()}
    return {"packages": ", ".join(f"{p} {v}" for p, v in versions.items())}


def demo_text_image(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    log("drawing an image with printed text (for OCR)")
    path = work / "sign.png"
    draw_text_image(DEMO_TEXT, path)
    atomic_write(files.demo / "sign.png", path.read_bytes())
    return {"text": " / ".join(DEMO_TEXT)}


def draw_text_image(lines: tuple[str, ...] | list[str], path: Path, *, size: int = 56) -> Path:
    """Black text on a white card, large enough for OCR."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    margin = size // 2
    boxes = [font.getbbox(line) for line in lines]
    width = max(b[2] for b in boxes) + 2 * margin
    line_height = int(size * 1.4)
    image = Image.new("RGB", (width, line_height * len(lines) + 2 * margin), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, fill="black", font=font)
    image.save(path)
    return path
