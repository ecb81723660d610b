"""The list of embedded experts: one card per (task, model), honest availability, shared models share a lock."""

from __future__ import annotations

import pytest

from hugginggpt.config import Settings
from hugginggpt.experts import embedded
from hugginggpt.experts.protocol import LocalExpert
from hugginggpt.tasks import TaskTable

EXPECTED_TASKS = {
    "image-to-text",
    "automatic-speech-recognition",
    "text-to-speech",
    "sentence-similarity",
    "text-classification",
    "question-answering",
    "token-classification",
    "summarization",
    "object-detection",
}


@pytest.fixture(scope="module")
def experts():
    return embedded.embedded_experts(Settings())


def test_every_card_is_an_embedded_task_type_with_a_licence_and_a_description(experts):
    table = TaskTable()
    keys = [(e.card.task, e.card.id) for e in experts]
    assert len(keys) == len(set(keys))
    assert {e.card.task for e in experts} == EXPECTED_TASKS
    for expert in experts:
        assert isinstance(expert, LocalExpert)
        assert expert.card.backend == "embedded"
        assert expert.card.task in table
        assert expert.card.license
        assert 40 < len(expert.card.description) <= 200
        assert not expert.loaded


def test_every_embedded_expert_is_available_in_the_development_install(experts):
    missing = [f"{e.card.task} {e.card.id}" for e in experts if not e.card.available]
    assert not missing, f"not installed: {missing}; run `make install-dev` (it installs the tts and nlp extras)"


def test_tts_card_states_the_gpl_licence(experts):
    [tts] = [e for e in experts if e.card.task == "text-to-speech"]
    assert tts.card.license.startswith("GPL-3.0-or-later")


def test_minilm_experts_share_one_model_and_its_lock_and_the_others_do_not(experts):
    minilm = [e for e in experts if e.card.id == "sentence-transformers/all-MiniLM-L6-v2"]
    assert {e.card.task for e in minilm} == {"sentence-similarity", "text-classification", "question-answering"}
    assert len({id(e.embedder) for e in minilm}) == 1
    assert len({id(e.lock) for e in minilm}) == 1
    assert len({id(e.lock) for e in experts}) == len(experts) - 2


def test_a_card_is_unavailable_when_its_weights_are_missing(monkeypatch):
    monkeypatch.setattr(embedded, "whisper_model_dir", lambda: None)
    monkeypatch.setattr(embedded, "piper_voice_files", lambda: None)
    cards = {e.card.task: e.card for e in embedded.embedded_experts(Settings())}
    assert not cards["automatic-speech-recognition"].available
    assert not cards["text-to-speech"].available
    assert cards["image-to-text"].available


@pytest.mark.integration
async def test_three_embedded_experts_chain_through_the_pipeline(tmp_path):
    """OCR reads a sign, TTS speaks what it read, ASR transcribes the speech: outputs flow by modality."""
    import json

    from PIL import Image, ImageDraw, ImageFont

    from hugginggpt.experts.registry import default_registry
    from hugginggpt.llm.scripted import ScriptedLLM
    from hugginggpt.pipeline import HuggingGPT

    sign = Image.new("RGB", (700, 160), "white")
    ImageDraw.Draw(sign).text((20, 50), "Open every day", fill="black", font=ImageFont.load_default(size=40))
    sign.save(tmp_path / "sign.png")
    plan = [
        {"task": "image-to-text", "id": 0, "dep": [-1], "args": {"image": "sign.png"}},
        {"task": "text-to-speech", "id": 1, "dep": [0], "args": {"text": "<resource>-0"}},
        {"task": "automatic-speech-recognition", "id": 2, "dep": [1], "args": {"audio": "<resource>-1"}},
    ]
    llm = ScriptedLLM(json.dumps(plan), fallback="The sign says: Open every day.")
    settings = Settings(selection="top", output_dir=tmp_path / "out")
    gpt = HuggingGPT(llm, default_registry(settings, llm), settings=settings)
    answer = await gpt.run("Read the sign aloud", inputs=[tmp_path])
    results = {r.task: r for r in answer.results}
    assert [r.status for r in answer.results] == ["ok", "ok", "ok"]
    assert results["image-to-text"].model_id == "rapidocr/PP-OCRv6-small"
    assert results["image-to-text"].outputs["text"] == "Open every day"
    assert [a.media_type for a in answer.artifacts()] == ["audio/wav"]
    heard = results["automatic-speech-recognition"].outputs["text"]
    assert heard.lower().strip(" .!") == "open every day"
