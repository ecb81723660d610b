"""The OCR expert reads back text that the test draws into images."""

from __future__ import annotations

import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.embedded import embedded_experts
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
async def test_ocr_finds_no_text_in_a_plain_image(ocr, ctx, tmp_path):
    image = tmp_path / "blank.jpg"
    Image.new("RGB", (400, 300), (90, 140, 200)).save(image)
    out = await ocr.run({"image": str(image)}, ctx)
    assert out == {"text": "", "json": {"lines": []}}


async def test_ocr_says_when_the_file_is_not_an_image(ocr, ctx, tmp_path):
    bogus = tmp_path / "photo.png"
    bogus.write_text("not a picture")
    with pytest.raises(ExpertError, match=r"photo\.png is not an image"):
        await ocr.run({"image": str(bogus)}, ctx)
