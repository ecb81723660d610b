"""The Haar-cascade face detector on a face the test draws, on blank images, and on the shared demo photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

from hugginggpt.config import Settings
from hugginggpt.experts.embedded import embedded_experts
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "examples"


@pytest.fixture(scope="module")
def faces():
    return next(e for e in embedded_experts(Settings()) if e.card.id == "opencv/haarcascade_frontalface_alt")


@pytest.fixture
def ctx(tmp_path):
    workspace = Workspace(tmp_path / "out", [tmp_path, EXAMPLES])
    return ExpertContext(workspace=workspace, task_id=0, task="object-detection")


def _draw_face(path):
    """A plain cartoon face: skin oval, hair, brows, eyes, nose and mouth, softened like a photo."""
    image = Image.new("RGB", (400, 400), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((110, 80, 290, 320), fill=(225, 180, 150))
    draw.pieslice((100, 50, 300, 200), 180, 360, fill=(60, 40, 20))
    for left in (135, 210):
        draw.rectangle((left, 140, left + 55, 150), fill=(60, 40, 30))
        draw.ellipse((left + 5, 160, left + 50, 185), fill=(40, 30, 30))
    draw.polygon([(200, 185), (185, 240), (215, 240)], fill=(205, 160, 130))
    draw.ellipse((165, 260, 235, 280), fill=(150, 60, 60))
    image.filter(ImageFilter.GaussianBlur(3)).save(path)
    return path


@pytest.mark.integration
async def test_finds_the_drawn_face_and_draws_its_box(faces, ctx, tmp_path):
    out = await faces.run({"image": str(_draw_face(tmp_path / "face.png"))}, ctx)
    assert out["text"] == "1 face found"
    [face] = out["json"]["objects"]
    box = face["box"]
    assert face["label"] == "face"
    assert box["xmin"] < 150 and box["xmax"] > 250 and box["ymin"] < 160 and box["ymax"] > 260
    drawn = Image.open(out["image"].path).convert("RGB")
    assert drawn.size == (400, 400)
    assert drawn.getpixel((box["xmin"], (box["ymin"] + box["ymax"]) // 2)) == (255, 40, 40)


@pytest.mark.integration
async def test_finds_no_face_in_a_plain_image(faces, ctx, tmp_path):
    blank = tmp_path / "sky.png"
    Image.new("RGB", (640, 480), (120, 170, 230)).save(blank)
    out = await faces.run({"image": str(blank)}, ctx)
    assert out["json"] == {"objects": [], "counts": {"face": 0}}
    assert out["text"] == "0 faces found"


@pytest.mark.integration
@pytest.mark.needs(EXAMPLES.is_dir(), reason="../shared/jarvis-data/examples is not beside this checkout")
async def test_finds_the_boys_face_and_none_on_the_cat(faces, ctx):
    boy = await faces.run({"image": str(EXAMPLES / "e.jpg")}, ctx)
    cat = await faces.run({"image": str(EXAMPLES / "a.jpg")}, ctx)
    assert boy["json"]["counts"] == {"face": 1}
    assert cat["json"]["counts"] == {"face": 0}
