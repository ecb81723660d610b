"""The demo bank: every bank demo is a valid plan, demos fit a task table, and retrieval ranks by similarity."""

from __future__ import annotations

import pytest

from hugginggpt.planning.demos import DemoBank, fit_demo, load_bank
from hugginggpt.planning.rules import validate_plan
from hugginggpt.tasks import DEFAULT_TASK_TYPES, TaskTable, TaskType

TABLE = TaskTable(DEFAULT_TASK_TYPES)
DEMOS = [
    {"request": "Transcribe talk.wav", "tasks": [{"task": "automatic-speech-recognition", "id": 0, "dep": [],
                                                 "args": {"audio": "talk.wav"}}]},
    {"request": "Translate 'hello' into German", "tasks": [{"task": "translation", "id": 0, "dep": [],
                                                          "args": {"text": "hello", "tgt_lang": "German"}}]},
    {"request": "Draw a cat in a hat", "tasks": [{"task": "text-to-image", "id": 0, "dep": [],
                                                 "args": {"text": "a cat in a hat"}}]},
]  # fmt: skip


def test_every_bank_demo_is_a_valid_plan_and_every_task_type_has_one():
    bank = load_bank()
    assert len(bank) >= 40
    used = set()
    for demo in bank:
        plan = validate_plan({"tasks": demo["tasks"]}, TABLE, mentioned=demo["request"])
        assert [t.model_dump() for t in plan.tasks] == [{"step": None, **t} for t in demo["tasks"]], demo["request"]
        assert all(t["step"] for t in demo["tasks"])
        used.update(t.task for t in plan.tasks)
    assert used == set(TABLE.names())
    assert len({d["request"] for d in bank}) == len(bank)


def test_fit_demo_drops_unknown_parameters_and_unavailable_tasks():
    table = TaskTable([TaskType(name="translation", description="", inputs=["text"], outputs=["text"])])
    fitted = fit_demo(DEMOS[1], table)
    assert fitted["tasks"][0]["args"] == {"text": "hello"}
    assert DEMOS[1]["tasks"][0]["args"]["tgt_lang"] == "German"  # the original is left alone
    assert fit_demo(DEMOS[0], table) is None


def test_fit_demo_drops_a_demo_that_is_invalid_for_the_table():
    # in this table text-to-image takes an image too, which the demo lacks
    table = TaskTable([TaskType(name="text-to-image", description="", inputs=["text", "image"], outputs=["image"])])
    assert fit_demo(DEMOS[2], table) is None


def test_word_overlap_ranks_the_most_similar_demo_last():
    bank = DemoBank(DEMOS)
    picked = bank.select("Please transcribe the recording meeting.wav for me", 2)
    assert len(picked) == 2
    assert picked[-1]["request"] == "Transcribe talk.wav"
    scores = bank.similarities("translate this into German")
    assert scores.index(max(scores)) == 1
    assert bank.select("anything", 10) == bank.select("anything", 3)


class _Embedder:
    """Vectors by hand: each text is scored on three axes (audio, language, picture)."""

    axes = (("transcribe", "wav", "audio"), ("translate", "german", "french"), ("draw", "cat", "picture"))

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        rows = []
        for text in texts:
            words = text.lower()
            row = [float(sum(w in words for w in axis)) for axis in self.axes]
            norm = sum(v * v for v in row) ** 0.5 or 1.0
            rows.append([v / norm for v in row])
        return rows


def test_an_embedder_replaces_word_overlap_and_embeds_the_bank_once():
    embedder = _Embedder()
    bank = DemoBank(DEMOS, embedder)
    assert bank.select("make a picture of a dog", 1)[0]["request"] == "Draw a cat in a hat"
    assert bank.select("some French please", 1)[0]["request"] == "Translate 'hello' into German"
    assert embedder.calls == 3  # the bank once, then one call per request


def test_fit_keeps_the_embedder():
    embedder = _Embedder()
    fitted = DemoBank(DEMOS, embedder).fit(TABLE.subset({"text-to-image"}))
    assert [d["request"] for d in fitted.demos] == ["Draw a cat in a hat"]
    assert fitted.embedder is embedder


@pytest.mark.parametrize("k", [0, 1])
def test_select_returns_at_most_k(k):
    assert len(DemoBank(DEMOS).select("cat", k)) == k
