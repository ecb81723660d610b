import json

import pytest

from hugginggpt.catalog import ModelCatalog
from hugginggpt.errors import LLMError
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.selection import Selector, selection_schema
from hugginggpt.types import ModelCard, Task

CATALOG = ModelCatalog(
    [
        ModelCard(id="det/a", task="object-detection", downloads=900, available=True, description="general detector"),
        ModelCard(id="det/b", task="object-detection", downloads=500, available=True, tags=["faces"]),
        ModelCard(id="det/c", task="object-detection", downloads=100, available=True),
        ModelCard(id="tts/only", task="text-to-speech", downloads=10, available=True),
        ModelCard(id="asr/remote", task="automatic-speech-recognition", downloads=10, available=False),
    ]
)
DETECT0 = Task(id=0, task="object-detection", args={"image": "a.jpg"})
DETECT1 = Task(id=1, task="object-detection", args={"image": "b.jpg"})


async def test_no_candidate_and_single_candidate_need_no_llm_call():
    llm = ScriptedLLM()
    selector = Selector(CATALOG, llm, "request")
    none = await selector.submit(Task(id=0, task="automatic-speech-recognition", args={"audio": "a.wav"}))
    one = await selector.submit(Task(id=1, task="text-to-speech", args={"text": "hi"}))
    await selector.flush()
    assert none.model_id is None and none.reason == "no available model for automatic-speech-recognition"
    assert one.model_id == "tts/only" and one.strategy == "single"
    assert llm.calls == []


async def test_top_strategy_takes_the_most_downloaded():
    selector = Selector(CATALOG, None, "request", strategy="top")
    assert (await selector.submit(DETECT0)).model_id == "det/a"


async def test_llm_strategy_selects_every_waiting_task_in_one_call():
    reply = json.dumps({"task_0": {"id": "det/b", "reason": "faces"}, "task_1": {"id": "det/c", "reason": "small"}})
    llm = ScriptedLLM(reply)
    selector = Selector(CATALOG, llm, "find faces in a.jpg and b.jpg", top_k=3)
    futures = [selector.submit(DETECT0), selector.submit(DETECT1)]
    assert not any(f.done() for f in futures)
    await selector.flush()
    assert [(f.result().model_id, f.result().reason, f.result().strategy) for f in futures] == [
        ("det/b", "faces", "llm"),
        ("det/c", "small", "llm"),
    ]
    assert len(llm.calls) == 1
    messages, schema = llm.calls[0]
    prompt = messages[-1].content
    assert (
        "find faces in a.jpg and b.jpg" in prompt and "det/a (900 downloads)" in prompt and "general detector" in prompt
    )
    assert schema["properties"]["task_0"]["properties"]["id"]["enum"] == ["det/a", "det/b", "det/c"]
    assert schema["required"] == ["task_0", "task_1"]


async def test_top_k_limits_the_candidates_shown():
    llm = ScriptedLLM(json.dumps({"task_0": {"id": "det/a", "reason": "r"}}))
    selector = Selector(CATALOG, llm, "x", top_k=2)
    selector.submit(DETECT0)
    await selector.flush()
    assert "det/c" not in llm.calls[0][0][-1].content


@pytest.mark.parametrize(
    "reply, why",
    [
        ("not json at all", "model selection failed"),
        (json.dumps({"task_0": {"id": "made/up", "reason": "?"}}), "was not one of the candidates"),
        (json.dumps(["det/b"]), "not a JSON object"),
        (LLMError("endpoint down"), "endpoint down"),
    ],
)
async def test_unusable_reply_falls_back_to_the_top_candidate_and_says_why(reply, why):
    selector = Selector(CATALOG, ScriptedLLM(reply), "x")
    future = selector.submit(DETECT0)
    await selector.flush()
    selection = future.result()
    assert selection.model_id == "det/a" and selection.strategy == "top"
    assert why in selection.reason and "using the most downloaded model" in selection.reason


def test_schema_gives_each_task_its_own_candidate_enum():
    cards = CATALOG.candidates("object-detection")
    schema = selection_schema([(DETECT0, cards[:1]), (DETECT1, cards)])
    assert schema["properties"]["task_0"]["properties"]["id"]["enum"] == ["det/a"]
    assert len(schema["properties"]["task_1"]["properties"]["id"]["enum"]) == 3


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown selection strategy 'random'"):
        Selector(CATALOG, None, "x", strategy="random")
