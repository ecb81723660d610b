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
    assert none.model_id is None and none.strategy == "none"
    assert none.reason.startswith("no installed model serves automatic-speech-recognition; what would serve it:")
    assert "asr/remote" in none.reason  # the catalogue's card for the task, which cannot run here
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
    assert why in selection.reason and "using the best-ranked model" in selection.reason


def test_schema_gives_each_task_its_own_candidate_enum():
    cards = CATALOG.candidates("object-detection")
    schema = selection_schema([(DETECT0, cards[:1]), (DETECT1, cards)])
    assert schema["properties"]["task_0"]["properties"]["id"]["enum"] == ["det/a"]
    assert len(schema["properties"]["task_1"]["properties"]["id"]["enum"]) == 3


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown selection strategy 'random'"):
        Selector(CATALOG, None, "x", strategy="random")


# --- selection by fit -------------------------------------------------------------------------------------------

from hugginggpt.config import Settings  # noqa: E402
from hugginggpt.experts.embedded import embedded_experts  # noqa: E402
from hugginggpt.experts.vision import vision_experts  # noqa: E402
from hugginggpt.selection import fit, rank, task_text  # noqa: E402


def _embedded_catalog() -> ModelCatalog:
    """The real embedded cards, all marked available (selection reads cards only; nothing is loaded)."""
    cards = [e.card for e in [*embedded_experts(Settings()), *vision_experts(Settings())]]
    return ModelCatalog(c.model_copy(update={"available": True}) for c in cards)


@pytest.mark.parametrize(
    "request_text, task, args, chosen",
    [
        ("What animal is in a.jpg?", "object-detection", {"image": "a.jpg"}, "embedded/centernet-mobilenetv3-coco"),
        (
            "Which animals are in f.jpg and how many of each?",
            "object-detection",
            {"image": "f.jpg"},
            "embedded/centernet-mobilenetv3-coco",
        ),
        (
            "How many faces are in person.jpg?",
            "object-detection",
            {"image": "person.jpg"},
            "opencv/haarcascade_frontalface_alt",
        ),
        ("Read the text in sign.png aloud", "image-to-text", {"image": "sign.png"}, "rapidocr/PP-OCRv6-small"),
        ("What does the sign in shop.jpg say?", "image-to-text", {"image": "shop.jpg"}, "rapidocr/PP-OCRv6-small"),
        ("Describe kite.jpg", "image-to-text", {"image": "kite.jpg"}, "embedded/composed-caption"),
        (
            "Count the objects in kite.jpg, read the text in sign.png, and read that text aloud.",
            "object-detection",
            {"image": "kite.jpg"},
            "embedded/centernet-mobilenetv3-coco",
        ),
        (
            "Count the objects in kite.jpg, read the text in sign.png, and read that text aloud.",
            "image-to-text",
            {"image": "sign.png"},
            "rapidocr/PP-OCRv6-small",
        ),
        (
            "Is this review positive or negative: 'great film'",
            "text-classification",
            {"text": "great film"},
            "cjhutto/vaderSentiment",
        ),
        ("Summarise notes.txt", "summarization", {"text": "notes.txt"}, None),  # no embedded summariser is general
    ],
)
async def test_fit_picks_the_card_the_request_asks_for_without_an_llm_call(request_text, task, args, chosen):
    llm = ScriptedLLM()
    selector = Selector(_embedded_catalog(), llm, request_text)
    selection = await selector.submit(Task(id=0, task=task, args=args))
    await selector.flush()
    assert llm.calls == []
    if chosen is None:  # only the extractive summariser, a specialist not asked for, is there: still chosen
        assert selection.model_id == "sumy/lex-rank" and selection.strategy == "single"
    else:
        assert selection.model_id == chosen, selection.reason


async def test_each_task_is_fitted_to_its_own_step():
    catalog = _embedded_catalog()
    request = "Describe kite.jpg and tell me what the sign in it says"
    selector = Selector(catalog, None, request, strategy="fit")
    describe = await selector.submit(
        Task(id=0, task="image-to-text", args={"image": "kite.jpg"}, step="describe kite.jpg")
    )
    read = await selector.submit(
        Task(id=1, task="image-to-text", args={"image": "kite.jpg"}, step="what the sign in it says")
    )
    assert (describe.model_id, read.model_id) == ("embedded/composed-caption", "rapidocr/PP-OCRv6-small")
    assert "'says'" in read.reason and read.strategy == "fit"


def test_a_specialist_not_asked_for_ranks_last_and_a_composed_card_after_a_real_one():
    face = ModelCard(id="faces", task="object-detection", specialty=["face"], downloads=10**6)
    coco = ModelCard(id="coco", task="object-detection")
    composed = ModelCard(id="caption/composed", task="image-to-text", composed_from=["a", "b"])
    real = ModelCard(id="caption/net", task="image-to-text")
    assert [c.id for c, _ in rank([face, coco], "count the dogs")] == ["coco", "faces"]
    assert [c.id for c, _ in rank([face, coco], "count the faces")] == ["faces", "coco"]
    assert [c.id for c, _ in rank([composed, real], "describe it")] == ["caption/net", "caption/composed"]
    assert fit(face, "blur the Faces").score == 2 and fit(face, "user interfaces").score == -1


def test_task_text_is_the_clause_that_names_the_tasks_file():
    request = "Count the objects in kite.jpg, then read the sign in sign.png and say it aloud"
    assert (
        task_text(Task(id=0, task="image-to-text", args={"image": "sign.png"}), request) == "read the sign in sign.png"
    )
    question = Task(id=1, task="visual-question-answering", args={"image": "<resource>-0", "text": "what colour?"})
    assert task_text(question, request).endswith("what colour?")


async def test_fit_asks_the_llm_only_when_comparable_catalogue_models_tie():
    hub = ModelCatalog(
        [
            ModelCard(id="hub/a", task="summarization", downloads=50, available=True, backend="transformers"),
            ModelCard(id="hub/b", task="summarization", downloads=40, available=True, backend="transformers"),
            ModelCard(id="local/x", task="translation", available=True, backend="embedded"),
            ModelCard(id="local/y", task="translation", available=True, backend="llm"),
        ]
    )
    llm = ScriptedLLM(json.dumps({"task_0": {"id": "hub/b", "reason": "shorter summaries"}}))
    selector = Selector(hub, llm, "summarise and translate")
    tied = selector.submit(Task(id=0, task="summarization", args={"text": "a"}))
    untied = selector.submit(Task(id=1, task="translation", args={"text": "b"}))
    assert untied.done() and untied.result().model_id == "local/x" and untied.result().strategy == "fit"
    await selector.flush()
    assert tied.result().model_id == "hub/b" and tied.result().strategy == "llm"
    assert len(llm.calls) == 1 and "local/x" not in llm.calls[0][0][-1].content
