"""HF Inference experts against a local HTTP server that speaks the same API (the Hub's model listing and the
hf-inference task routes): availability from the listing (cached), typed outputs, 503 loading, 404, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakehub import TOKEN, FakeHub, PNG_1x1, wav_bytes
from hugginggpt.errors import ExpertError
from hugginggpt.experts.inference import InferenceBackend
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.types import Artifact, ModelCard
from hugginggpt.workspace import Workspace
from localserver import serving
from parts import need_module

MODELS = {
    "good/classifier": "labels",
    "good/detector": "detector",
    "good/tts": "tts",
    "good/asr": "asr",
    "good/embedder": "embedder",
    "good/chat": "chat",
    "loading-once/model": "loading-once",
    "always-loading/model": "loading",
    "slow/model": "slow",
}


@pytest.fixture(autouse=True)
def _hub_is_a_local_server(online_hub) -> None:
    """Every Hub call here goes to a server on 127.0.0.1."""


@pytest.fixture(scope="module")
def hub():
    state = FakeHub(MODELS)
    with serving(state.app()) as url:
        yield state, url


@pytest.fixture
def state(hub) -> FakeHub:
    state, _ = hub
    state.reset()
    return state


@pytest.fixture
def backend(hub, state) -> InferenceBackend:
    _, url = hub
    return InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url, timeout=5, loading_wait=1)


@pytest.fixture
def ctx(tmp_path: Path) -> ExpertContext:
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=2, task="test")


def card(model_id: str, task: str) -> ModelCard:
    return ModelCard(id=model_id, task=task)


# availability -------------------------------------------------------------------------------------------------


def test_served_models_are_available_and_others_are_not(backend: InferenceBackend) -> None:
    assert backend.why_not(card("good/classifier", "text-classification")) is None
    assert backend.why_not(card("other/model", "text-classification")) == "HF Inference does not serve other/model"
    assert "has no depth-estimation task" in backend.why_not(card("good/classifier", "depth-estimation"))


def test_no_token_means_not_available(hub) -> None:
    _, url = hub
    backend = InferenceBackend(token=None, endpoint=url, hub_endpoint=url)
    assert "HF_TOKEN" in backend.why_not(card("good/classifier", "text-classification"))


def test_hf_hub_offline_means_not_available(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backend.why_not(card("good/classifier", "text-classification")) == "HF_HUB_OFFLINE is set"


def test_the_listing_is_asked_once_and_trusted_for_a_while(hub, state) -> None:
    _, url = hub
    now = [0.0]
    backend = InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url, status_ttl=60, clock=lambda: now[0])
    for _ in range(3):
        assert backend.available(card("good/classifier", "text-classification"))
    assert state.listings == 1
    now[0] = 61.0
    assert backend.available(card("good/detector", "object-detection"))
    assert state.listings == 2


def test_a_listing_failure_is_reported_as_the_reason(hub, state) -> None:
    _, url = hub
    state.listing_fails = True
    backend = InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url)
    reason = backend.why_not(card("good/classifier", "text-classification"))
    assert reason is not None and "could not ask" in reason and "500" in reason


# calls ---------------------------------------------------------------------------------------------------------


async def test_text_classification_sends_the_token_and_types_the_labels(backend, state, ctx) -> None:
    out = await backend.expert(card("good/classifier", "text-classification")).run({"text": "I like it"}, ctx)
    assert out == {
        "text": "POSITIVE (0.90)",
        "json": {"labels": [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]},
    }
    request = state.requests[-1]
    assert request["path"] == "good/classifier" and request["auth"] == f"Bearer {TOKEN}"
    assert b'"inputs": "I like it"' in request["body"] or b'"inputs":"I like it"' in request["body"]


async def test_object_detection_uploads_the_image_and_draws_the_boxes(backend, state, ctx, tmp_path) -> None:
    need_module("PIL", "the transformers extra is not installed")
    image = tmp_path / "dot.png"
    image.write_bytes(PNG_1x1)
    out = await backend.expert(card("good/detector", "object-detection")).run({"image": str(image)}, ctx)
    assert out["text"] == "2 zebra"
    assert [o["score"] for o in out["json"]["objects"]] == [0.97, 0.8]
    assert isinstance(out["image"], Artifact) and out["image"].media_type == "image/png"
    assert state.requests[-1]["body"] == PNG_1x1


async def test_text_to_speech_saves_the_audio_bytes(backend, ctx) -> None:
    out = await backend.expert(card("good/tts", "text-to-speech")).run({"text": "hi"}, ctx)
    audio = out["audio"]
    assert isinstance(audio, Artifact) and audio.path.endswith(".wav") and audio.modality == "audio"
    assert Path(audio.path).read_bytes() == wav_bytes()


async def test_speech_recognition_uploads_the_audio(backend, state, ctx, tmp_path) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes())
    out = await backend.expert(card("good/asr", "automatic-speech-recognition")).run({"audio": str(clip)}, ctx)
    assert out == {"text": "hello world"}
    assert state.requests[-1]["body"] == wav_bytes()


async def test_sentence_similarity_uses_its_pipeline_route(backend, state, ctx) -> None:
    out = await backend.expert(card("good/embedder", "sentence-similarity")).run({"text": "a", "text_2": "b"}, ctx)
    assert out == {"text": "similarity 0.750", "json": {"similarity": 0.75}}
    assert state.requests[-1]["path"] == "good/embedder/pipeline/sentence-similarity"


async def test_conversational_uses_chat_completions(backend, state, ctx) -> None:
    out = await backend.expert(card("good/chat", "conversational")).run({"text": "hello"}, ctx)
    assert out == {"text": "Hello from the chat model."}
    assert state.requests[-1]["path"] == "good/chat/v1/chat/completions"


async def test_a_loading_model_is_waited_for_once(backend, state, ctx) -> None:
    out = await backend.expert(card("loading-once/model", "text-classification")).run({"text": "x"}, ctx)
    assert out["text"] == "READY (1.00)"
    assert [r["path"] for r in state.requests] == ["loading-once/model", "loading-once/model"]


async def test_a_model_still_loading_is_a_clear_error(backend, state, ctx) -> None:
    with pytest.raises(ExpertError, match=r"still loading on HF Inference \(503\)"):
        await backend.expert(card("always-loading/model", "text-classification")).run({"text": "x"}, ctx)
    assert len(state.requests) == 2


async def test_an_unknown_model_is_a_clear_error_and_is_forgotten(backend, state, ctx) -> None:
    state.models["gone/model"] = "gone"  # listed, but the endpoint answers 404
    try:
        gone = card("gone/model", "text-classification")
        assert backend.available(gone)
        with pytest.raises(ExpertError, match=r"does not serve gone/model \(404\): Model gone/model does not exist"):
            await backend.expert(gone).run({"text": "x"}, ctx)
        assert backend.why_not(gone) == "HF Inference does not serve gone/model"
    finally:
        del state.models["gone/model"]


async def test_a_slow_model_times_out_with_a_clear_error(hub, state, ctx) -> None:
    _, url = hub
    backend = InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url, timeout=0.3)
    with pytest.raises(ExpertError, match=r"gave no answer within 0.3 s"):
        await backend.expert(card("slow/model", "text-classification")).run({"text": "x"}, ctx)


async def test_an_unreachable_endpoint_is_a_clear_error(ctx) -> None:
    from localserver import free_port

    url = f"http://127.0.0.1:{free_port()}"
    backend = InferenceBackend(token=TOKEN, endpoint=url, hub_endpoint=url, timeout=5)
    with pytest.raises(ExpertError, match="cannot reach HF Inference"):
        await backend.expert(card("good/classifier", "text-classification")).run({"text": "x"}, ctx)
