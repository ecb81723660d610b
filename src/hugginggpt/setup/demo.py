"""The demo-input steps: photos from Debian packages (`files.DEMO_PHOTOS`) and an image with printed text (for OCR),
written to the demo folder (`files.demo_inputs()`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fetch import apt_download, check_sha256, extract_deb
from .files import DEMO_PHOTOS, VisionFiles, atomic_write

DEMO_DEBS = ("darknet", "python3-skimage")
DEMO_TEXT = ("HuggingGPT runs offline", "Plan, select, execute, answer.")
# sha256 of each photo as the Debian packages ship it (apt checks the .deb against the signed archive; these pin
# the photos themselves, so a changed package is noticed rather than demoed)
DEMO_PHOTO_SHA256 = {
    "dog.jpg": "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866",
    "giraffe.jpg": "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1",
    "horses.jpg": "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4",
    "kite.jpg": "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e",
    "person.jpg": "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1",
    "eagle.jpg": "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
}


def demo_photos(files: VisionFiles, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"fetching photos from Debian packages {', '.join(DEMO_DEBS)} with apt-get download (24 MB)")
    debs = apt_download(DEMO_DEBS, work, log)
    for package, member, name in DEMO_PHOTOS:
        extracted = extract_deb(debs[package], member, work / "photos")
        check_sha256(extracted, DEMO_PHOTO_SHA256[name])
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
