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
