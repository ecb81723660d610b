"""Routing catalogue models to backends: modes local/remote/hybrid, availability marked per backend, local first
with remote fallback, selection offered only runnable cards, and snapshot cards made runnable (real transformers
backend with tiny models; HF Inference against a local server speaking its API)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakehub import TOKEN, FakeHub
from hugginggpt.catalog import ModelCatalog, load_snapshot
from hugginggpt.errors import ExpertError
from hugginggpt.experts.inference import InferenceBackend
from hugginggpt.experts.llm import LLMExpert
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.registry import ExpertRegistry, RoutedExpert, Router
from hugginggpt.experts.transformers import TransformersBackend
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.types import ModelCard
from hugginggpt.workspace import Workspace
from localserver import serving
from parts import need_module

P0 = Path(__file__).resolve().parents[2] / "shared" / "jarvis-data" / "p0_models.jsonl"
REMOTE = {"tiny/bert-sentiment": "labels", "tiny/broken": "labels", "remote/only": "labels", "slow/one": "loading"}


@pytest.fixture(autouse=True)
def _hub_is_a_local_server(online_hub) -> None:
    """Every Hub call here goes to a server on 127.0.0.1."""


@pytest.fixture(scope="module")
def hub():
    state = FakeHub(REMOTE)
    with serving(state.app()) as url:
        yield state, url


@pytest.fixture
def remote(hub) -> InferenceBackend:
    state, url = hub
    state.reset()
    return InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url, timeout=5, loading_wait=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_module("transformers", "the transformers extra is not installed")
    import tinymodels

    folder = tmp_path_factory.mktemp("hf-cache")
    tinymodels.text_classifier(folder, "tiny/bert-sentiment")
    broken = tinymodels.text_classifier(folder, "tiny/broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    return folder


@pytest.fixture
def local(cache: Path) -> TransformersBackend:
    return TransformersBackend(cache_dir=cache, online=False)


@pytest.fixture
def ctx(tmp_path: Path) -> ExpertContext:
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=0, task="text-classification")


def classify(model_id: str) -> ModelCard:
    return ModelCard(id=model_id, task="text-classification", downloads=100)


def routed(mode: str, *backends, cards=()) -> tuple[ExpertRegistry, dict[str, ModelCard]]:
    registry = ExpertRegistry(router=Router(mode, backends))
    marked = registry.route(cards)
    return registry, {c.id: c for c in marked}


# modes and marking ---------------------------------------------------------------------------------------------


def test_modes_choose_backends_and_put_local_ones_first(remote) -> None:
    local = TransformersBackend(online=False)
    assert Router("local", [remote, local]).backends == [local]
    assert Router("remote", [remote, local]).backends == [remote]
    assert Router("hybrid", [remote, local]).backends == [local, remote]
    with pytest.raises(ValueError, match="unknown routing mode"):
        Router("cloud", [local])


def test_cards_are_marked_with_their_availability_per_backend(local, remote) -> None:
    ids = ["tiny/bert-sentiment", "remote/only", "nobody/anywhere"]
    _, cards = routed("hybrid", local, remote, cards=[classify(i) for i in ids])
    both = cards["tiny/bert-sentiment"]
    assert both.availability == {"transformers": True, "inference": True}
    assert both.backend == "transformers" and both.available
    only = cards["remote/only"]
    assert only.availability == {"transformers": False, "inference": True} and only.backend == "inference"
    none = cards["nobody/anywhere"]
    assert none.availability == {"transformers": False, "inference": False} and not none.available


def test_selection_only_offers_runnable_cards(local, remote) -> None:
    ids = ["tiny/bert-sentiment", "remote/only", "nobody/anywhere"]
    _, cards = routed("local", local, remote, cards=[classify(i) for i in ids])
    catalog = ModelCatalog(cards.values())
    assert [c.id for c in catalog.candidates("text-classification")] == ["tiny/bert-sentiment"]
    _, cards = routed("remote", local, remote, cards=[classify(i) for i in ids])
    assert {c.id for c in ModelCatalog(cards.values()).candidates("text-classification")} == {
        "tiny/bert-sentiment",
        "remote/only",
    }


# running -------------------------------------------------------------------------------------------------------


async def test_hybrid_runs_a_local_model_locally(local, remote, hub, ctx) -> None:
    registry, _ = routed("hybrid", local, remote, cards=[classify("tiny/bert-sentiment")])
    out = await registry.get("text-classification", "tiny/bert-sentiment").run({"text": "good"}, ctx)
    assert out["json"]["labels"][0] == {"label": "POSITIVE", "score": 0.9975}  # the tiny local model's score
    assert hub[0].requests == []


async def test_hybrid_falls_back_to_remote_when_the_local_model_fails(local, remote, hub, ctx) -> None:
    registry, cards = routed("hybrid", local, remote, cards=[classify("tiny/broken")])
    assert cards["tiny/broken"].backend == "transformers"  # it looks runnable locally until it is loaded
    out = await registry.get("text-classification", "tiny/broken").run({"text": "good"}, ctx)
    assert out["json"]["labels"][0] == {"label": "POSITIVE", "score": 0.9}  # the remote answer
    assert [r["path"] for r in hub[0].requests] == ["tiny/broken"]


async def test_hybrid_goes_remote_for_a_model_that_is_not_local(local, remote, hub, ctx) -> None:
    registry, _ = routed("hybrid", local, remote, cards=[classify("remote/only")])
    out = await registry.get("text-classification", "remote/only").run({"text": "good"}, ctx)
    assert out["text"] == "POSITIVE (0.90)"
    assert [r["path"] for r in hub[0].requests] == ["remote/only"]


async def test_local_mode_never_calls_remote(local, remote, hub, ctx) -> None:
    registry, _ = routed("local", local, remote, cards=[classify("tiny/broken")])
    with pytest.raises(ExpertError, match=r"tiny/broken could not run \(transformers: transformers could not load"):
        await registry.get("text-classification", "tiny/broken").run({"text": "good"}, ctx)
    assert hub[0].requests == []


async def test_remote_mode_runs_remotely_even_when_the_model_is_local(local, remote, hub, ctx) -> None:
    registry, cards = routed("remote", local, remote, cards=[classify("tiny/bert-sentiment")])
    assert cards["tiny/bert-sentiment"].availability == {"inference": True}
    out = await registry.get("text-classification", "tiny/bert-sentiment").run({"text": "good"}, ctx)
    assert out["text"] == "POSITIVE (0.90)"


async def test_when_every_backend_fails_the_error_names_each(local, remote, ctx) -> None:
    card = classify("slow/one")
    registry, _ = routed("hybrid", local, remote, cards=[card])
    with pytest.raises(ExpertError) as caught:
        await registry.get("text-classification", "slow/one").run({"text": "good"}, ctx)
    message = str(caught.value)
    assert "transformers: slow/one is not in the local Hugging Face cache" in message
    assert "inference: slow/one is still loading on HF Inference (503)" in message


async def test_an_expert_already_registered_for_a_card_runs_first(remote, ctx) -> None:
    existing = LLMExpert(ScriptedLLM(fallback="a short summary"), "summarization")
    registry = ExpertRegistry([existing], router=Router("hybrid", [remote]))
    [marked] = registry.route([ModelCard(id=existing.card.id, task="summarization")])
    assert marked.availability == {"llm": True, "inference": False} and marked.backend == "llm"
    expert = registry.get("summarization", existing.card.id)
    assert isinstance(expert, RoutedExpert) and expert.chain[0][1] is existing
    assert await expert.run({"text": "a long text"}, ctx) == {"text": "a short summary"}


async def test_find_runs_the_model_on_the_backend_selection_chose_first(local, remote, hub, ctx) -> None:
    registry, cards = routed("hybrid", local, remote, cards=[classify("tiny/bert-sentiment")])
    assert cards["tiny/bert-sentiment"].backend == "transformers"
    here = registry.find("text-classification", "tiny/bert-sentiment", "transformers")
    assert here is registry.get("text-classification", "tiny/bert-sentiment")  # already in that order
    assert (await here.run({"text": "good"}, ctx))["json"]["labels"][0]["score"] == 0.9975 and hub[0].requests == []
    there = registry.find("text-classification", "tiny/bert-sentiment", "inference")
    assert [backend.name for backend, _ in there.chain] == ["inference", "transformers"]
    assert (await there.run({"text": "good"}, ctx))["text"] == "POSITIVE (0.90)"
    with pytest.raises(ExpertError, match="model nobody/model is in the catalogue but no backend can run it"):
        registry.find("text-classification", "nobody/model", "transformers")


# snapshot cards -----------------------------------------------------------------------------------------------


def _p0_rows() -> list[dict]:
    """Rows in the JARVIS `p0_models.jsonl` format (pipeline_tag, meta, description)."""
    meta = {"language": "en", "license": "apache-2.0", "tags": ["sentiment-analysis"]}
    return [
        {"downloads": 9, "id": "tiny/bert-sentiment", "likes": 1, "pipeline_tag": "text-classification",
         "task": "text-classification", "meta": meta, "description": "\n\nA sentiment model.\n"},
        {"downloads": 8, "id": "remote/only", "likes": 2, "pipeline_tag": "text-classification",
         "task": "text-classification", "meta": {}, "description": "Served remotely."},
        {"downloads": 7, "id": "runwayml/stable-diffusion-v1-5", "likes": 3, "pipeline_tag": "text-to-image",
         "task": "text-to-image", "meta": {"tags": ["diffusers"]}, "description": "An image generator."},
    ]  # fmt: skip


def test_snapshot_cards_become_available_through_the_backends_that_can_run_them(tmp_path, local, remote) -> None:
    snapshot = tmp_path / "p0.jsonl"
    snapshot.write_text("".join(json.dumps(row) + "\n" for row in _p0_rows()))
    _, cards = routed("hybrid", local, remote, cards=load_snapshot(snapshot))
    assert {i: (c.available, c.backend) for i, c in cards.items()} == {
        "tiny/bert-sentiment": (True, "transformers"),
        "remote/only": (True, "inference"),
        "runwayml/stable-diffusion-v1-5": (False, "inference"),
    }


@pytest.mark.needs(P0.is_file(), reason=f"{P0} (the JARVIS catalogue, from ../shared) is absent")
def test_the_jarvis_catalogue_is_routed(tmp_path, hub) -> None:
    need_module("transformers", "the transformers extra is not installed")
    import tinymodels

    state, url = hub
    cache = tmp_path / "cache"
    tinymodels.text_classifier(cache, "distilbert-base-uncased-finetuned-sst-2-english")
    state.models["ProsusAI/finbert"] = "labels"
    try:
        local = TransformersBackend(cache_dir=cache, online=False)
        remote = InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url)
        cards = load_snapshot(P0)
        _, marked = routed("hybrid", local, remote, cards=cards)
        available = {i: c.backend for i, c in marked.items() if c.available}
        assert available == {
            "distilbert-base-uncased-finetuned-sst-2-english": "transformers",
            "ProsusAI/finbert": "inference",
        }
        assert len(marked) == len({(c.task, c.id) for c in cards})
    finally:
        del state.models["ProsusAI/finbert"]


# the whole pipeline --------------------------------------------------------------------------------------------


async def test_a_request_runs_a_routed_catalogue_model_end_to_end(local, remote, tmp_path) -> None:
    plan = json.dumps({"tasks": [{"task": "text-classification", "id": 0, "dep": [-1], "args": {"text": "good"}}]})
    llm = ScriptedLLM(plan, fallback="The text is positive.")
    registry = ExpertRegistry(router=Router("hybrid", [local, remote]))
    catalog = ModelCatalog(registry.route([classify("tiny/bert-sentiment")]))
    gpt = HuggingGPT(llm, registry, catalog=catalog)
    answer = await gpt.run("Is 'good' positive?", output_dir=tmp_path / "out")
    [result] = answer.results
    assert (result.status, result.model_id) == ("ok", "tiny/bert-sentiment")
    assert result.outputs["text"] == "POSITIVE (1.00)"
    assert answer.selections[0].backend == "transformers"
