"""Task types matched across tables (planning/matching.py), with the real MiniLM embedder."""

from __future__ import annotations

import pytest

from hugginggpt.embedding import SentenceEmbedder
from hugginggpt.planning.demos import fit_demos
from hugginggpt.planning.matching import TypeMatcher, signature
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable, TaskType

FOREIGN = TaskTable(
    [
        TaskType(name="text-translator", description="translates a given text into another language", inputs=["text"], outputs=["text"]),
        TaskType(name="speech-transcriber", description="transcribes speech from an audio file into text", inputs=["audio"], outputs=["text"]),
        TaskType(name="image-downloader", description="downloads an image from a given URL", inputs=["text"], outputs=["image"]),
        TaskType(name="text-to-image", description="draws an image from a text description", inputs=["text"], outputs=["image"]),
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def embedder():
    found = SentenceEmbedder()
    if not found.available:
        pytest.fail("the MiniLM model or tokenizer package is missing (make install-dev installs them)")
    return found


def test_a_type_matches_the_same_job_with_the_same_inputs_and_outputs(embedder):
    matcher = TypeMatcher(DEFAULT_TASK_TYPES, FOREIGN, embedder)
    assert matcher.match("translation") == "text-translator"
    assert matcher.match("automatic-speech-recognition") == "speech-transcriber"
    assert matcher.match("text-to-image") == "text-to-image"  # the same name
    # text -> image like the downloader, but drawing is not downloading; and nothing here takes an image
    assert matcher.match("image-classification") is None
    assert matcher.match("object-detection") is None


def test_signature_is_the_input_modalities_and_the_first_output():
    vqa = next(t for t in DEFAULT_TASK_TYPES if t.name == "visual-question-answering")
    assert signature(vqa) == (("image", "text"), "text")


def test_demos_are_rewritten_with_the_matched_names_and_the_rest_left_out(embedder):
    demos = [
        {"request": "Translate 'hello' into German.", "tasks": [{"task": "translation", "id": 0, "dep": [], "args": {"text": "hello", "tgt_lang": "German"}}]},
        {"request": "Transcribe a.wav and translate it.", "tasks": [
            {"task": "automatic-speech-recognition", "id": 0, "dep": [], "args": {"audio": "a.wav"}},
            {"task": "translation", "id": 1, "dep": [0], "args": {"text": "<resource>-0"}},
        ]},
        {"request": "What is in photo.jpg?", "tasks": [{"task": "image-classification", "id": 0, "dep": [], "args": {"image": "photo.jpg"}}]},
    ]  # fmt: skip
    assert fit_demos(demos, FOREIGN) == []  # by name alone none fits
    fitted = fit_demos(demos, FOREIGN, TypeMatcher(DEFAULT_TASK_TYPES, FOREIGN, embedder))
    assert [[t["task"] for t in d["tasks"]] for d in fitted] == [
        ["text-translator"],
        ["speech-transcriber", "text-translator"],
    ]
    assert fitted[0]["tasks"][0]["args"] == {"text": "hello"}  # the parameter the foreign type lacks is dropped
    assert fitted[1]["request"] == demos[1]["request"]
