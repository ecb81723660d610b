"""The end-to-end suite's inputs: demo photos, documents drawn with Pillow, espeak-ng speech and text files."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import HuggingGPTError

DEMO_PHOTOS = (
    "dog.jpg",
    "giraffe.jpg",
    "horses.jpg",
    "kite.jpg",
    "person.jpg",
    "eagle.jpg",
    "chelsea.png",
    "coffee.png",
    "sign.png",
)

# Printed documents: (file name, lines). Each is drawn black on white, left-aligned, one line per row.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    "invoice.png": (
        "INVOICE",
        "Northwind Supplies Ltd.",
        "Invoice No. 2025-117",
        "Invoice date: 14 March 2025",
        "Bill to: Green Leaf Cafe",
        "3 x Paper cups (box)        36.00",
        "2 x Coffee beans 1 kg       54.50",
        "1 x Milk frother            89.90",
        "Subtotal                   180.40",
        "VAT 20%                     36.08",
        "TOTAL DUE              EUR 216.48",
        "Payment due by 13 April 2025",
    ),
    "receipt.png": (
        "CORNER BAKERY",
        "12 High Street",
        "2 x Croissant         5.00",
        "1 x Sourdough loaf    4.50",
        "1 x Cappuccino        3.20",
        "TOTAL                12.70",
        "Paid by card",
        "Thank you!",
    ),
    "letter.png": (
        "Dear Ms. Patel,",
        "We are pleased to confirm your booking at the",
        "Harbour View Hotel from 3 June to 6 June 2025.",
        "Your room number is 214.",
        "Breakfast is served from 7 to 10 am.",
        "Kind regards,",
        "Tom Becker, Front Desk",
    ),
    "notice.png": (
        "PLATFORM 4 CLOSED",
        "PLEASE USE PLATFORM 2",
    ),
}

# Speech read by Debian's espeak-ng, an independent voice (not the pipeline's own text-to-speech).
SPEECH: dict[str, str] = {
    "reminder.wav": "Remember to buy milk, eggs and bread on the way home.",
    "weather.wav": "Tomorrow will be sunny, with a high of twenty five degrees.",
    "meeting.wav": (
        "Good morning everyone. The team meeting is moved to Thursday at three in the afternoon. "
        "Please bring the quarterly sales report. Anna will present the new marketing plan, "
        "and then we will discuss the budget for next year."
    ),
}

TEXT_FILES: dict[str, str] = {
    "notes.txt": (
        "Notes from the town council, 2 May.\n\n"
        "The central library will reopen on 1 June after eight months of renovation. The building now has a "
        "new children's reading room, a cafe on the ground floor and solar panels on the roof. Opening hours "
        "will be longer than before: from 8 am to 8 pm on weekdays and from 10 am to 4 pm on Saturdays. "
        "Library cards issued before the renovation stay valid. Volunteers are needed for the opening day; "
        "anyone who wants to help should write to the library office before 20 May.\n"
    ),
    "sales.csv": "month,units_sold\nJanuary,120\nFebruary,95\nMarch,143\nApril,88\n",
    "todo.md": "# Saturday\n\n- Water the plants\n- Call grandma\n- Return the library books\n",
}

TABULAR = ("invoice.png", "receipt.png")  # drawn in a monospaced font, so their columns line up

SILENCE = "silence.wav"
BLANK = "blank.png"


def _font(size: int, *, mono: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    for path in (f"/usr/share/fonts/truetype/dejavu/{name}", name):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def draw_document(lines: tuple[str, ...], path: Path, *, size: int = 28, mono: bool = False) -> Path:
    """Draw text lines black on white, as a scanned page or a photographed sign would show them."""
    font = _font(size, mono=mono)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(line, font=font)) for line in lines) + 2 * size
    step = int(size * 1.6)
    image = Image.new("RGB", (width, step * len(lines) + 2 * size), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((size, size + row * step), line, fill="black", font=font)
    image.save(path)
    return path


def speak(text: str, path: Path) -> Path:
    """Speech for `text` by espeak-ng, as a mono 16-bit WAV. A clear error when espeak-ng is not installed."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise HuggingGPTError("the e2e suite's speech inputs need Debian's espeak-ng: apt-get install espeak-ng")
    try:
        subprocess.run(
            [binary, "-v", "en-us", "-s", "130", "-g", "4", "-w", str(path), text], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        raise HuggingGPTError(f"espeak-ng failed on {path.name}: {exc.stderr.decode(errors='replace')}") from exc
    return path


def write_silence(path: Path, seconds: float = 2.0, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


def build_inputs(folder: Path, demo: Path | None = None) -> Path:
    """Fill `folder` with every input the suite's cases name; returns it. The demo photos come from `demo`
    (default: the folder `hugginggpt setup` fills); missing ones are a clear error."""
    from ..setup.files import demo_inputs

    source = demo or demo_inputs()
    missing = [name for name in DEMO_PHOTOS if not (source / name).is_file()]
    if missing:
        raise HuggingGPTError(f"the demo photos {', '.join(missing)} are not in {source}; run `hugginggpt setup`")
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEMO_PHOTOS:
        shutil.copyfile(source / name, folder / name)
    for name, lines in DOCUMENTS.items():
        draw_document(lines, folder / name, mono=name in TABULAR)
    Image.new("RGB", (480, 320), "white").save(folder / BLANK)
    for name, text in SPEECH.items():
        speak(text, folder / name)
    write_silence(folder / SILENCE)
    for name, text in TEXT_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def input_names() -> list[str]:
    """Every file name `build_inputs` writes."""
    return [*DEMO_PHOTOS, *DOCUMENTS, BLANK, *SPEECH, SILENCE, *TEXT_FILES]
