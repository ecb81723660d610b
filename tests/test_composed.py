"""The composed experts: document QA (OCR text + LLM, answer checked against the text) and VQA (scene facts + LLM,
answer checked against the facts), their cards, bad input, and the real embedded LLM on drawn and real images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from helpers import SleepExpert
from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError, LLMError
from hugginggpt.experts.composed import (
    DOCUMENT_QA_ID,
    VQA_ID,
    DocumentQAExpert,
    VisualQAExpert,
    answer_in_line,
    matching_row,
    tokens,
    unsupported_claims,
)
from hugginggpt.experts.ocr import OCRReader
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.registry import ExpertRegistry, default_registry
from hugginggpt.experts.scene import ColourShare, SceneFacts, SceneObject, SceneReader
from hugginggpt.experts.vision import CLASSIFIER_ID, DETECTOR_ID, Classifier, Detector, OnnxModel
from hugginggpt.llm import llm_from_settings
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.setup.files import VisionFiles, demo_inputs
from hugginggpt.workspace import Workspace
from parts import setup_files

OCR_ID = "rapidocr/PP-OCRv6-small"
INVOICE_ROWS = [
    "INVOICE No. 2024-117",
    "Northwind Supplies Ltd",
    "Date: 14 March 2024",
    "Paper, 10 boxes  $120.00",
    "Printer toner  $245.50",
    "Delivery  $35.00",
    "Total due  $400.50",
    "Pay by 30 April 2024",
]


def _reply(**fields) -> str:
    return json.dumps(fields)


def _draw_invoice(path: Path) -> Path:
    image = Image.new("RGB", (900, 700), "white")
    draw = ImageDraw.Draw(image)
    big, small = ImageFont.load_default(size=34), ImageFont.load_default(size=28)
    draw.text((50, 40), "INVOICE No. 2024-117", fill="black", font=big)
    draw.text((50, 110), "Northwind Supplies Ltd", fill="black", font=small)
    draw.text((50, 150), "Date: 14 March 2024", fill="black", font=small)
    for number, (item, price) in enumerate([("Paper, 10 boxes", "$120.00"), ("Printer toner", "$245.50")]):
        draw.text((50, 260 + number * 60), item, fill="black", font=small)
        draw.text((650, 260 + number * 60), price, fill="black", font=small)
    draw.text((50, 380), "Delivery", fill="black", font=small)
    draw.text((650, 380), "$35.00", fill="black", font=small)
    draw.text((50, 480), "Total due", fill="black", font=big)
    draw.text((650, 480), "$400.50", fill="black", font=big)
    draw.text((50, 580), "Pay by 30 April 2024", fill="black", font=small)
    image.save(path)
    return path


@pytest.fixture
def ctx(tmp_path: Path) -> ExpertContext:
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=0, task="composed")


# ---- the support checks ---------------------------------------------------------------------------------------------


def test_numbers_lose_their_separators_and_currency() -> None:
    assert tokens("Total: $1,234.50") == ["total", "123450"]
    assert tokens("1234.50 EUR") == ["123450", "eur"]


def test_a_quoted_line_matches_its_row_despite_small_differences() -> None:
    assert matching_row("Total due: $400.50", INVOICE_ROWS) == "Total due  $400.50"
    assert matching_row("total due $400.50", INVOICE_ROWS) == "Total due  $400.50"
    assert matching_row("Pay by 30 Apri1 2024", INVOICE_ROWS) == "Pay by 30 April 2024"  # an OCR-like slip


def test_a_quoted_line_that_is_not_in_the_text_matches_nothing() -> None:
    assert matching_row("Balance outstanding: $980.00", INVOICE_ROWS) is None
    assert matching_row("", INVOICE_ROWS) is None


def test_the_answer_must_be_in_the_quoted_line() -> None:
    question = "What is the total amount due?"
    assert answer_in_line("$400.50", "Total due  $400.50", question)
    assert answer_in_line("The total amount due is $400.50", "Total due  $400.50", question)
    assert not answer_in_line("$450.00", "Total due  $400.50", question)
    assert not answer_in_line("$400.50 plus tax", "Total due  $400.50", question)
    assert not answer_in_line("the total amount due", "Total due  $400.50", question)  # adds nothing


def _horses() -> SceneFacts:
    objects = [
        SceneObject(label="horse", score=0.7, position="left", colours=["white"], box=(0, 0, 10, 10)),
        SceneObject(label="horse", score=0.6, position="centre", colours=["black"], box=(10, 0, 20, 10)),
        SceneObject(label="horse", score=0.5, position="right", colours=["black"], box=(20, 0, 30, 10)),
    ]
    colours = [ColourShare(name="brown", share=0.5), ColourShare(name="blue", share=0.3)]
    return SceneFacts(image="horses.jpg", width=300, height=200, objects=objects, colours=colours, labels=[], text=[])


@pytest.mark.parametrize(
    "answer",
    [
        "There are 3 horses.",
        "3 horses: one white and two black.",
        "2 black horses and 1 white horse.",
        "There are no cats.",
        "The horse on the left is white.",
        "The image is mostly brown and blue.",
    ],
)
def test_answers_the_facts_support(answer: str) -> None:
    assert unsupported_claims(answer, _horses(), "Tell me about the horses") == []


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("There are 5 horses.", "says 5 horses, the detector found 3"),
        ("There are 2 white horses.", "says 2 horses, the detector found 3"),
        ("There is a cat next to the horses.", "names a cat, which the detector did not find"),
        ("The horses are purple.", "says purple, which is not among the computed colours"),
        ("The horses are galloping across a meadow.", "says what no fact says: galloping, across, meadow"),
    ],
)
def test_answers_the_facts_do_not_support(answer: str, problem: str) -> None:
    assert problem in unsupported_claims(answer, _horses(), "What about the horses?")


# ---- document QA on a drawn invoice (real OCR, scripted LLM) ----------------------------------------------------------


def _document_qa(llm) -> DocumentQAExpert:
    return DocumentQAExpert(OCRReader(), llm, ocr_id=OCR_ID)


@pytest.mark.integration
async def test_document_qa_answers_from_the_quoted_line(ctx, tmp_path) -> None:
    llm = ScriptedLLM(_reply(found=True, line="Total due $400.50", answer="$400.50"))
    out = await _document_qa(llm).run(
        {"image": str(_draw_invoice(tmp_path / "invoice.png")), "text": "What is the total amount due?"}, ctx
    )
    assert out["text"] == '$400.50 (from the line "Total due  $400.50" of invoice.png)'
    assert out["json"]["supported"] is True and out["json"]["quote"] == "Total due  $400.50"
    assert out["json"]["lines"] == len(INVOICE_ROWS)
    ((messages, schema),) = llm.calls
    assert messages[0].role == "system" and "from its text only" in messages[0].content
    prompt = messages[1].content
    assert all(row in prompt for row in INVOICE_ROWS) and prompt.endswith("Question: What is the total amount due?")
    assert set(schema["required"]) == {"found", "line", "answer"}


@pytest.mark.integration
async def test_an_answer_quoting_a_line_the_document_does_not_have_is_rejected(ctx, tmp_path) -> None:
    llm = ScriptedLLM(_reply(found=True, line="Balance outstanding: $980.00", answer="$980.00"))
    out = await _document_qa(llm).run(
        {"image": str(_draw_invoice(tmp_path / "invoice.png")), "text": "What is the balance outstanding?"}, ctx
    )
    assert (
        out["text"] == 'The text of invoice.png (8 lines read by OCR) does not say: "What is the balance outstanding?".'
    )
    assert out["json"]["supported"] is False and out["json"]["answer"] is None
    assert out["json"]["rejected"] == {"answer": "$980.00", "line": "Balance outstanding: $980.00"}
    assert "980" not in out["text"]


@pytest.mark.integration
async def test_an_answer_that_is_not_in_its_quoted_line_is_rejected(ctx, tmp_path) -> None:
    llm = ScriptedLLM(_reply(found=True, line="Total due  $400.50", answer="$120.00"))
    out = await _document_qa(llm).run(
        {"image": str(_draw_invoice(tmp_path / "invoice.png")), "text": "What is the total amount due?"}, ctx
    )
    assert out["json"]["supported"] is False and "does not say" in out["text"] and "120" not in out["text"]


@pytest.mark.integration
async def test_a_question_the_document_does_not_answer_says_so(ctx, tmp_path) -> None:
    llm = ScriptedLLM(_reply(found=False, line="", answer=""))
    out = await _document_qa(llm).run(
        {"image": str(_draw_invoice(tmp_path / "invoice.png")), "text": "What is the customer's phone number?"}, ctx
    )
    assert out["text"].startswith("The text of invoice.png (8 lines read by OCR) does not say")
    assert out["json"]["rejected"] is None


@pytest.mark.integration
async def test_a_document_without_readable_text_is_an_error_and_the_llm_is_not_asked(ctx, tmp_path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (600, 400), (255, 255, 255)).save(blank)
    llm = ScriptedLLM()
    with pytest.raises(ExpertError, match=r"^no readable text found in blank\.png$"):
        await _document_qa(llm).run({"image": str(blank), "text": "What is the total?"}, ctx)
    assert llm.calls == []


async def test_document_qa_says_what_is_wrong_with_its_input(ctx, tmp_path) -> None:
    bogus = tmp_path / "scan.png"
    bogus.write_text("not an image")
    expert = _document_qa(ScriptedLLM())
    with pytest.raises(ExpertError, match=r"scan\.png is not an image that can be read"):
        await expert.run({"image": str(bogus), "text": "What is the total?"}, ctx)
    with pytest.raises(ExpertError, match="needs the question in the 'text' argument"):
        await expert.run({"image": str(bogus)}, ctx)
    with pytest.raises(ExpertError, match="needs an 'image' file"):
        await expert.run({"text": "What is the total?"}, ctx)


@pytest.mark.integration
async def test_an_llm_failure_is_an_expert_error(ctx, tmp_path) -> None:
    expert = _document_qa(ScriptedLLM(LLMError("the model is gone"), "not json at all"))
    invoice = str(_draw_invoice(tmp_path / "invoice.png"))
    with pytest.raises(ExpertError, match=r"controller LLM \(scripted\) gave no usable answer: the model is gone"):
        await expert.run({"image": invoice, "text": "What is the total?"}, ctx)
    with pytest.raises(ExpertError, match="gave no usable answer: no JSON found"):
        await expert.run({"image": invoice, "text": "What is the total?"}, ctx)


# ---- VQA (real scene facts, scripted LLM) -----------------------------------------------------------------------------


def _vision_files() -> VisionFiles:
    return setup_files("centernet-coco", "efficientnet-lite0")


@pytest.fixture(scope="module")
def reader() -> SceneReader:
    files = _vision_files()
    return SceneReader(
        detector=Detector(OnnxModel(files.detector)),
        classifier=Classifier(OnnxModel(files.classifier), files.imagenet_labels),
        ocr=OCRReader(),
        source_ids={"objects": DETECTOR_ID, "labels": CLASSIFIER_ID, "text": OCR_ID},
    )


def _vqa(reader: SceneReader, llm) -> VisualQAExpert:
    return VisualQAExpert(reader, llm, model_ids=[DETECTOR_ID, CLASSIFIER_ID, OCR_ID])


def _blank(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.new("RGB", (640, 480), (30, 80, 200)).save(path)
    return path


@pytest.mark.integration
async def test_vqa_on_a_blank_image_answers_from_its_colour(reader, ctx, tmp_path) -> None:
    def answer(messages, schema):
        prompt = messages[1].content
        assert "Objects: none found" in prompt and "blue 100%" in prompt and "none found" in prompt
        return _reply(answerable=True, answer="The image is blue.")

    out = await _vqa(reader, ScriptedLLM(answer)).run(
        {"image": str(_blank(tmp_path)), "text": "What colour is it?"}, ctx
    )
    assert out["text"] == "The image is blue." and out["json"]["supported"] is True
    assert out["json"]["counts"] == {} and out["json"]["colours"] == [{"name": "blue", "share": 1.0}]


@pytest.mark.integration
async def test_vqa_never_passes_on_an_invented_object(reader, ctx, tmp_path) -> None:
    llm = ScriptedLLM(_reply(answerable=True, answer="There is a dog in the picture."))
    out = await _vqa(reader, llm).run({"image": str(_blank(tmp_path)), "text": "What animal is this?"}, ctx)
    assert out["text"] == (
        "The facts I have about blank.png (objects: none found; colours: blue; text: none) do not say: "
        '"What animal is this?".'
    )
    assert out["json"]["supported"] is False and "dog" not in out["text"]
    assert "names a dog, which the detector did not find" in out["json"]["rejected"]["problems"]


@pytest.mark.integration
async def test_vqa_keeps_a_supported_colour_answer_and_rejects_a_wrong_count(reader, ctx) -> None:
    dog = str(demo_inputs(VisionFiles.default()) / "dog.jpg")
    expert = _vqa(
        reader,
        ScriptedLLM(
            _reply(answerable=True, answer="The bicycle is red."), _reply(answerable=True, answer="There are 2 dogs.")
        ),
    )
    colour = await expert.run({"image": dog, "text": "What colour is the bicycle?"}, ctx)
    assert colour["text"] == "The bicycle is red."
    count = await expert.run({"image": dog, "text": "How many dogs are there?"}, ctx)
    assert count["json"]["supported"] is False and re.search(r"objects: .*1 dog", count["text"])
    assert "says 2 dogs, the detector found 1" in count["json"]["rejected"]["problems"]


@pytest.mark.integration
async def test_vqa_says_when_the_facts_cannot_answer(reader, ctx) -> None:
    dog = str(demo_inputs(VisionFiles.default()) / "dog.jpg")
    llm = ScriptedLLM(_reply(answerable=False, answer=""))
    out = await _vqa(reader, llm).run({"image": dog, "text": "Is the dog happy?"}, ctx)
    assert out["text"].startswith("The facts I have about dog.jpg (objects: ")
    assert out["text"].endswith('do not say: "Is the dog happy?".')
    assert out["json"]["rejected"] is None


async def test_an_unreadable_image_is_a_clear_vqa_error(ctx, tmp_path) -> None:
    bogus = tmp_path / "photo.jpg"
    bogus.write_bytes(b"\x89PNG but not really")
    llm = ScriptedLLM()
    expert = VisualQAExpert(SceneReader(), llm, model_ids=[])
    with pytest.raises(ExpertError, match=r"photo\.jpg is not an image that can be read"):
        await expert.run({"image": str(bogus), "text": "What is it?"}, ctx)
    assert llm.calls == []


# ---- through the pipeline -----------------------------------------------------------------------------------------------


def _pipeline(tmp_path: Path, tasks: list[dict], document_reply: str) -> tuple[HuggingGPT, ScriptedLLM]:
    def reply(messages, schema):
        if "planner of HuggingGPT" in messages[0].content:
            return json.dumps({"tasks": tasks})
        if "question about a document" in messages[0].content:
            return document_reply
        return "The total due is $400.50."

    llm = ScriptedLLM(fallback=reply)
    registry = ExpertRegistry([_document_qa(llm), SleepExpert("text-to-speech", "test/tts", 0)])
    return HuggingGPT(llm, registry, settings=Settings(output_dir=tmp_path / "out")), llm


@pytest.mark.integration
async def test_a_blank_document_fails_its_task_and_skips_the_reading_aloud_with_the_reason(tmp_path) -> None:
    Image.new("RGB", (600, 400), "white").save(tmp_path / "blank.png")
    tasks = [
        {
            "task": "document-question-answering",
            "id": 0,
            "dep": [],
            "args": {"image": "blank.png", "text": "What is the total?"},
        },
        {"task": "text-to-speech", "id": 1, "dep": [0], "args": {"text": "<resource>-0"}},
    ]
    gpt, _ = _pipeline(tmp_path, tasks, _reply(found=True, line="Total 5", answer="5"))
    answer = await gpt.run("What is the total in blank.png? Read it aloud.", inputs=[tmp_path])
    qa, speech = answer.results
    assert (qa.status, qa.model_id, qa.error) == ("failed", DOCUMENT_QA_ID, "no readable text found in blank.png")
    assert speech.status == "skipped" and "no readable text found in blank.png" in speech.error


@pytest.mark.integration
async def test_the_pipeline_passes_the_checked_answer_on(tmp_path) -> None:
    _draw_invoice(tmp_path / "invoice.png")
    tasks = [
        {
            "task": "document-question-answering",
            "id": 0,
            "dep": [],
            "args": {"image": "invoice.png", "text": "What is the total due?"},
        }
    ]
    gpt, _ = _pipeline(tmp_path, tasks, _reply(found=True, line="Total due  $400.50", answer="$400.50"))
    answer = await gpt.run("In invoice.png, what is the total due?", inputs=[tmp_path])
    (qa,) = answer.results
    assert qa.status == "ok" and qa.outputs["text"] == '$400.50 (from the line "Total due  $400.50" of invoice.png)'


# ---- cards and the registry -------------------------------------------------------------------------------------------


def test_the_cards_say_they_are_composed_and_from_what() -> None:
    registry = default_registry(Settings(), ScriptedLLM())
    document = registry.get("document-question-answering", DOCUMENT_QA_ID)
    vqa = registry.get("visual-question-answering", VQA_ID)
    assert document.card.backend == vqa.card.backend == "embedded"
    assert document.card.composed_from == [OCR_ID, "llm:scripted"]
    assert vqa.card.composed_from[-1] == "llm:scripted" and OCR_ID in vqa.card.composed_from
    for card in (document.card, vqa.card):
        assert card.description.startswith("composed, not a") and card.not_for
    # the composed experts share the OCR expert's reader (one engine, one lock)
    assert document.ocr is registry.get("image-to-text", OCR_ID).reader


def test_without_an_llm_there_are_no_composed_experts() -> None:
    registry = default_registry(Settings(), None)
    assert registry.get("document-question-answering", DOCUMENT_QA_ID) is None
    assert registry.get("visual-question-answering", VQA_ID) is None


# ---- the real embedded LLM ---------------------------------------------------------------------------------------------


@pytest.fixture
def llm():
    return llm_from_settings(Settings())


@pytest.mark.integration
async def test_real_llm_reads_the_total_amount_off_a_drawn_invoice(llm, ctx, tmp_path) -> None:
    invoice = str(_draw_invoice(tmp_path / "invoice.png"))
    expert = _document_qa(llm)
    total = await expert.run({"image": invoice, "text": "What is the total amount due?"}, ctx)
    assert total["json"]["supported"] is True and "400.50" in total["json"]["answer"]
    assert total["json"]["quote"] == "Total due  $400.50"
    missing = await expert.run({"image": invoice, "text": "What is the customer's phone number?"}, ctx)
    assert missing["json"]["supported"] is False and "does not say" in missing["text"]


@pytest.mark.integration
async def test_real_llm_counts_the_zebra_and_names_a_drawn_colour(llm, reader, ctx, tmp_path) -> None:
    """giraffe.jpg: one giraffe bends over one zebra in green bushes. The drawn picture: green, with a yellow band
    across its lower quarter."""
    expert = _vqa(reader, llm)
    giraffe = str(demo_inputs(VisionFiles.default()) / "giraffe.jpg")
    count = await expert.run({"image": giraffe, "text": "How many zebras are in the picture?"}, ctx)
    assert count["json"]["supported"] is True and re.search(r"\b(1|one|a)\b", count["text"].lower())
    drawn = tmp_path / "field.png"
    image = Image.new("RGB", (480, 320), (40, 150, 50))
    ImageDraw.Draw(image).rectangle((0, 240, 479, 319), fill=(240, 220, 40))
    image.save(drawn)
    colour = await expert.run({"image": str(drawn), "text": "What is the main colour of this picture?"}, ctx)
    assert colour["json"]["supported"] is True and "green" in colour["text"].lower()
