"""The OCR expert reads back text that the test draws into images."""

from __future__ import annotations

import asyncio
import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.embedded import embedded_experts
from hugginggpt.experts.ocr import OCRLine, text_rows
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.workspace import Workspace


@pytest.fixture(scope="module")
def ocr():
    return next(e for e in embedded_experts(Settings()) if e.card.task == "image-to-text")


@pytest.fixture
def ctx(tmp_path):
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=0, task="image-to-text")


def _draw(path, lines, size=(900, 320)):
    image = Image.new("RGB", size, (250, 250, 245))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for number, line in enumerate(lines):
        draw.text((40, 40 + number * 110), line, fill=(20, 20, 20), font=font)
    image.save(path)
    return path


def _words(value):
    return re.findall(r"[a-z0-9]+", value.lower())


@pytest.mark.integration
async def test_ocr_reads_back_the_drawn_lines_in_order(ocr, ctx, tmp_path):
    lines = ["Meet me at the harbour", "Tuesday 7 pm, pier 42"]
    image = _draw(tmp_path / "note.png", lines)
    out = await ocr.run({"image": str(image)}, ctx)
    assert _words(out["text"]) == _words(" ".join(lines))
    found = out["json"]["lines"]
    assert [_words(line["text"]) for line in found] == [_words(line) for line in lines]
    for line in found:
        assert 0.5 < line["score"] <= 1.0
        assert len(line["box"]) == 4
        assert all(0 <= x <= 900 and 0 <= y <= 320 for x, y in line["box"])
    assert found[0]["box"][0][1] < found[1]["box"][0][1]


@pytest.mark.integration
async def test_an_image_without_text_is_an_error_that_says_so(ocr, ctx, tmp_path):
    """Not an empty string: the tasks that need the text are skipped with this reason."""
    image = tmp_path / "blank.jpg"
    Image.new("RGB", (400, 300), (90, 140, 200)).save(image)
    with pytest.raises(ExpertError, match=r"^no readable text found in blank\.jpg$"):
        await ocr.run({"image": str(image)}, ctx)


@pytest.mark.integration
async def test_the_expert_and_a_second_user_share_one_reader(ocr, ctx, tmp_path):
    image = _draw(tmp_path / "shared.png", ["Gate B12"])
    before = await ocr.run({"image": str(image)}, ctx)
    lines = await asyncio.to_thread(ocr.reader.read, Image.open(image).convert("RGB"))
    assert [line.text for line in lines] == before["text"].splitlines()


def _piece(text, left, top, right, bottom):
    return OCRLine(text=text, score=0.9, box=[(left, top), (right, top), (right, bottom), (left, bottom)])


def test_pieces_on_one_row_are_joined_left_to_right_and_rows_go_top_to_bottom():
    pieces = [
        _piece("$400.50", 650, 482, 780, 516),
        _piece("INVOICE", 50, 40, 260, 76),
        _piece("Total due", 50, 480, 210, 514),
        _piece("Pay by 30 April", 50, 580, 300, 610),
    ]
    rows = text_rows(pieces)
    assert [row.text for row in rows] == ["INVOICE", "Total due  $400.50", "Pay by 30 April"]
    assert (rows[1].left, rows[1].top, rows[1].right, rows[1].bottom) == (50, 480, 780, 516)


def test_pieces_on_rows_that_only_touch_stay_apart():
    rows = text_rows([_piece("upper", 0, 0, 100, 30), _piece("lower", 0, 26, 100, 56)])
    assert [row.text for row in rows] == ["upper", "lower"]


async def test_ocr_says_when_the_file_is_not_an_image(ocr, ctx, tmp_path):
    bogus = tmp_path / "photo.png"
    bogus.write_text("not a picture")
    with pytest.raises(ExpertError, match=r"photo\.png is not an image"):
        await ocr.run({"image": str(bogus)}, ctx)
