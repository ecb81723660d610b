"""Scene facts: colour names and shares from drawn pixels, positions, per-object colours, missing sources said
plainly, and the real detector, classifier and OCR on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from hugginggpt.errors import ExpertError
from hugginggpt.experts.ocr import OCRReader
from hugginggpt.experts.scene import (
    ColourShare,
    SceneFacts,
    SceneLabel,
    SceneObject,
    SceneReader,
    SceneText,
    colour_indices,
    colour_name,
    dominant_colours,
    object_colours,
    position,
    vivid,
)
from hugginggpt.experts.vision import Classifier, Detector, OnnxModel
from hugginggpt.setup.files import VisionFiles, demo_inputs
from parts import setup_files

PLAIN = {
    (220, 30, 30): "red",
    (250, 140, 20): "orange",
    (240, 220, 40): "yellow",
    (40, 160, 60): "green",
    (30, 80, 200): "blue",
    (120, 40, 170): "purple",
    (250, 150, 190): "pink",
    (120, 70, 30): "brown",
    (10, 10, 10): "black",
    (250, 250, 250): "white",
    (128, 128, 128): "grey",
    (225, 200, 160): "beige",
}


@pytest.mark.parametrize(("rgb", "name"), PLAIN.items())
def test_plain_colours_get_their_everyday_names(rgb, name) -> None:
    assert colour_name(rgb) == name


def test_dominant_colours_are_the_shares_of_the_drawn_areas() -> None:
    image = Image.new("RGB", (400, 200), (30, 80, 200))
    ImageDraw.Draw(image).rectangle((300, 0, 399, 199), fill=(240, 220, 40))  # the right quarter yellow
    colours = dominant_colours(image)
    assert [c.name for c in colours] == ["blue", "yellow"]
    assert colours[0].share == pytest.approx(0.75, abs=0.02) and colours[1].share == pytest.approx(0.25, abs=0.02)


def test_a_single_colour_image_has_one_colour() -> None:
    colours = dominant_colours(Image.new("RGB", (64, 48), (40, 160, 60)))
    assert [(c.name, c.share) for c in colours] == [("green", 1.0)]


def test_positions_are_thirds_of_the_image() -> None:
    assert position((0, 0, 10, 10), 300, 300) == "top left"
    assert position((140, 140, 160, 160), 300, 300) == "centre"
    assert position((250, 120, 290, 160), 300, 300) == "right"
    assert position((120, 250, 160, 290), 300, 300) == "bottom"
    assert position((200, 200, 300, 300), 300, 300) == "bottom right"


def _pixels(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(image, dtype=np.uint8)
    return colour_indices(rgb), vivid(rgb)


def test_a_thin_vivid_object_is_named_by_its_colour_not_the_background() -> None:
    """A red frame (a bicycle's) over a yellow wall that also fills the rest of the picture: the frame is a small
    share of its box, but it is the colour that sets the object apart."""
    image = Image.new("RGB", (300, 200), (235, 215, 60))
    draw = ImageDraw.Draw(image)
    draw.polygon([(100, 150), (150, 60), (200, 150)], outline=(210, 25, 30), width=3)
    box = (90.0, 50.0, 210.0, 160.0)
    assert object_colours(*_pixels(image), box, 1.0)[0] == "red"


def test_a_solid_object_is_named_by_the_colour_of_its_box() -> None:
    image = Image.new("RGB", (300, 200), (40, 160, 60))
    ImageDraw.Draw(image).rectangle((40, 40, 120, 160), fill=(250, 250, 250))
    assert object_colours(*_pixels(image), (40.0, 40.0, 120.0, 160.0), 1.0) == ["white"]


def test_without_models_only_the_pixels_are_described_and_the_rest_is_said_to_be_unknown(tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (30, 80, 200)).save(path)
    facts = SceneReader(missing={"objects": "no detector here"}).read(path)
    assert facts.objects is None and facts.labels is None and facts.text is None
    assert [c.name for c in facts.colours] == ["blue"]
    text = facts.render()
    assert "Objects: unknown (no detector here)" in text
    assert "blue 100%" in text
    assert "Text: unknown" in text and "Kind of picture: unknown" in text
    assert facts.counts() == {} and facts.sources == []


def _facts(**fields) -> SceneFacts:
    return SceneFacts(image="field.png", width=300, height=200, **fields)


def _object(label: str, colour: str, where: str = "centre") -> SceneObject:
    return SceneObject(label=label, score=0.5, position=where, colours=[colour], box=(0, 0, 1, 1))


def test_the_facts_read_as_short_lines_without_boxes_or_scores() -> None:
    facts = _facts(
        objects=[_object("zebra", "black", "left"), _object("giraffe", "brown"), _object("zebra", "grey", "right")],
        colours=[ColourShare(name="green", share=0.55), ColourShare(name="brown", share=0.2)],
        labels=[SceneLabel(label="zebra", probability=0.55)],
        text=[SceneText(text="Zoo exit", position="top")],
    )
    assert facts.lines() == [
        "Image field.png, 300x200 pixels.",
        "Objects found: 2 zebras, 1 giraffe.",
        "- 2 zebras: black (left); grey (right).",
        "- 1 giraffe: brown (centre).",
        "Main colours of the whole image: green 55%, brown 20%.",
        "The whole picture looks most like (ImageNet classes): zebra 55%.",
        'Text written in the image: "Zoo exit" (top).',
    ]
    assert facts.summary() == 'objects: 2 zebras, 1 giraffe; colours: green, brown; text: "Zoo exit"'


def test_an_unsure_imagenet_class_is_not_shown_and_many_objects_are_tallied() -> None:
    people = [_object("person", colour) for colour in ["blue"] * 4 + ["red"] * 3]
    facts = _facts(objects=people, labels=[SceneLabel(label="envelope", probability=0.06)], text=[])
    text = facts.render()
    assert "envelope" not in text and "matches no ImageNet class well" in text
    assert "- 7 people, by main colour: 4 blue, 3 red." in text


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(b"this is not a jpeg")
    with pytest.raises(ExpertError, match=r"holiday\.jpg is not an image that can be read"):
        SceneReader().read(path)


# ---- the real models (after `hugginggpt setup`) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader() -> SceneReader:
    files = setup_files("centernet-coco", "efficientnet-lite0")
    return SceneReader(
        detector=Detector(OnnxModel(files.detector)),
        classifier=Classifier(OnnxModel(files.classifier), files.imagenet_labels),
        ocr=OCRReader(),
        source_ids={"objects": "detector", "labels": "classifier", "text": "ocr"},
    )


@pytest.mark.integration
def test_the_dog_photo_has_a_dog_a_red_bicycle_and_a_yellow_wall(reader: SceneReader) -> None:
    """dog.jpg: a dark dog sits on a white porch in front of a red racing bicycle and a yellow wall."""
    facts = reader.read(demo_inputs(VisionFiles.default()) / "dog.jpg")
    counts = facts.counts()
    assert counts.get("dog") == 1 and counts.get("bicycle") == 1
    bicycle = next(o for o in facts.objects if o.label == "bicycle")
    dog = next(o for o in facts.objects if o.label == "dog")
    assert bicycle.colours[0] == "red"
    assert dog.colours[0] in ("black", "brown") and "left" in dog.position
    assert "yellow" in [c.name for c in facts.colours]
    assert facts.text == [] and facts.sources == ["detector", "classifier", "ocr"]
    text = facts.render()
    assert "1 bicycle: red" in text and "box" not in text.lower()


@pytest.mark.integration
def test_drawn_text_is_read_with_its_position(reader: SceneReader, tmp_path: Path) -> None:
    path = tmp_path / "poster.png"
    image = Image.new("RGB", (900, 600), (250, 250, 245))
    ImageDraw.Draw(image).text((60, 480), "Open every Sunday", fill=(20, 20, 20), font=ImageFont.load_default(size=52))
    image.save(path)
    facts = reader.read(path)
    assert [(t.text.lower(), t.position) for t in facts.text] == [("open every sunday", "bottom left")]
    assert facts.objects == []
    assert "Objects: none found" in facts.render() and '"Open every Sunday" (bottom left)' in facts.render()
