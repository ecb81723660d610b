# ruff: noqa: E402  (the imports below need the transformers extra, checked first)
"""The transformers backend with tiny models built from configs: availability from the local HF cache, typed
outputs per task, device placement, and the LRU pool that keeps loaded models within a memory budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from parts import need_module

need_module("transformers", "the transformers extra is not installed")
need_module("PIL", "the transformers extra is not installed")

import numpy as np
import torch
from PIL import Image

import tinymodels
from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.media import read_wav, write_wav
from hugginggpt.experts.pool import module_bytes
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.transformers import (
    TransformersBackend,
    check_device,
    resolve_device,
    weights_bytes,
)
from hugginggpt.types import Artifact, ModelCard
from hugginggpt.workspace import Workspace


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf-cache")
    tinymodels.text_classifier(folder)
    tinymodels.token_classifier(folder)
    tinymodels.question_answerer(folder)
    tinymodels.feature_extractor(folder)
    tinymodels.image_classifier(folder)
    tinymodels.object_detector(folder)
    tinymodels.speech_recognizer(folder)
    tinymodels.speech_synthesizer(folder)
    return folder


@pytest.fixture
def backend(cache: Path) -> TransformersBackend:
    return TransformersBackend(cache_dir=cache, online=False)


@pytest.fixture
def ctx(tmp_path: Path) -> ExpertContext:
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=1, task="test")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = (np.random.default_rng(1).random((90, 120, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    t = np.linspace(0, 1, 16000, endpoint=False)
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    return path


def card(model_id: str, task: str, **extra) -> ModelCard:
    return ModelCard(id=model_id, task=task, **extra)


# availability -------------------------------------------------------------------------------------------------


def test_offline_only_models_in_the_local_cache_are_available(backend: TransformersBackend) -> None:
    assert backend.why_not(card("tiny/bert-sentiment", "text-classification")) is None
    reason = backend.why_not(card("someone/not-downloaded", "text-classification"))
    assert reason is not None and "not in the local Hugging Face cache" in reason


def test_cards_transformers_cannot_run_are_not_available(backend: TransformersBackend) -> None:
    assert "no runner for text-to-image" in backend.why_not(card("tiny/bert-sentiment", "text-to-image"))
    diffusers = card("tiny/bert-sentiment", "text-classification", tags=["diffusers"])
    assert backend.why_not(diffusers) is not None
    both = card("tiny/bert-sentiment", "text-classification", tags=["diffusers", "transformers"])
    assert backend.why_not(both) is None


def test_online_uncached_models_are_available_to_download(cache: Path) -> None:
    online = TransformersBackend(cache_dir=cache, online=True)
    assert online.why_not(card("someone/not-downloaded", "text-classification")) is None


def test_hf_hub_offline_means_offline_without_trying_the_network(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = TransformersBackend(cache_dir=cache, hub_endpoint="http://192.0.2.1:9")  # would time out if tried
    assert backend.online is False


def test_weights_size_is_estimated_from_files_and_measured_from_parameters(cache: Path) -> None:
    folder = tinymodels.cache_folder(cache, "tiny/bert-sentiment")
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    measured = module_bytes(model)
    assert measured == sum(p.numel() * 4 for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    assert 0.8 * measured < weights_bytes(folder) < 1.5 * measured


# typed outputs ------------------------------------------------------------------------------------------------


async def test_text_classification_gives_the_label_and_scores(backend, ctx) -> None:
    out = await backend.expert(card("tiny/bert-sentiment", "text-classification")).run({"text": "a good movie"}, ctx)
    assert out["text"].startswith("POSITIVE")
    labels = out["json"]["labels"]
    assert [x["label"] for x in labels] == ["POSITIVE", "NEGATIVE"]
    assert abs(sum(x["score"] for x in labels) - 1) < 1e-3


async def test_token_classification_gives_entities_with_offsets(backend, ctx) -> None:
    text = "paris is the capital of france"
    out = await backend.expert(card("tiny/bert-ner", "token-classification")).run({"text": text}, ctx)
    entities = out["json"]["entities"]
    assert entities and all(e["entity"] == "LOC" for e in entities)
    assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)


async def test_question_answering_answers_with_a_span_of_the_context(backend, ctx) -> None:
    context = "paris is the capital of france"
    args = {"text": "what is the capital of france", "text_2": context}
    out = await backend.expert(card("tiny/bert-qa", "question-answering")).run(args, ctx)
    assert out["text"] and out["text"] in context
    assert 0 < out["json"]["score"] <= 1


async def test_sentence_similarity_is_a_cosine(backend, ctx) -> None:
    args = {"text": "a good movie", "text_2": "a great film"}
    out = await backend.expert(card("tiny/bert-embed", "sentence-similarity")).run(args, ctx)
    assert -1.0 <= out["json"]["similarity"] <= 1.0001


async def test_image_classification_reads_the_image(backend, ctx, photo) -> None:
    out = await backend.expert(card("tiny/vit-animals", "image-classification")).run({"image": str(photo)}, ctx)
    assert out["json"]["labels"][0]["label"] == "zebra"
    assert out["text"].startswith("zebra")


async def test_object_detection_counts_boxes_and_draws_them(backend, ctx, photo) -> None:
    out = await backend.expert(card("tiny/yolos-zoo", "object-detection")).run({"image": str(photo)}, ctx)
    objects = out["json"]["objects"]
    assert objects and {o["label"] for o in objects} == {"zebra"}
    assert out["text"] == f"{len(objects)} zebra"
    for obj in objects:
        box = obj["box"]
        assert 0 <= box["xmin"] <= box["xmax"] <= 120 and 0 <= box["ymin"] <= box["ymax"] <= 90
    drawn = out["image"]
    assert isinstance(drawn, Artifact) and drawn.media_type == "image/png" and drawn.modality == "image"
    with Image.open(drawn.path) as image:
        assert image.size == (120, 90)
        assert np.asarray(image).tobytes() != np.asarray(Image.open(photo)).tobytes()  # boxes were drawn


async def test_speech_recognition_reads_a_wav_file(backend, ctx, tone) -> None:
    out = await backend.expert(card("tiny/wav2vec2-asr", "automatic-speech-recognition")).run({"audio": str(tone)}, ctx)
    assert out["text"] == "a"  # the model's bias spells `a` on every frame; CTC collapses the repeats


async def test_text_to_speech_writes_a_wav_artifact(backend, ctx) -> None:
    out = await backend.expert(card("tiny/vits-tts", "text-to-speech")).run({"text": "hello there"}, ctx)
    audio = out["audio"]
    assert isinstance(audio, Artifact) and audio.modality == "audio" and audio.media_type == "audio/wav"
    samples, rate = read_wav(Path(audio.path))
    assert rate == 16000 and len(samples) > 0


async def test_missing_argument_is_a_clear_error(backend, ctx) -> None:
    with pytest.raises(ExpertError, match="missing argument 'text'"):
        await backend.expert(card("tiny/bert-sentiment", "text-classification")).run({}, ctx)


async def test_offline_uncached_model_fails_with_a_clear_error(backend, ctx) -> None:
    with pytest.raises(ExpertError, match="not in the local Hugging Face cache"):
        await backend.expert(card("someone/not-downloaded", "text-classification")).run({"text": "x"}, ctx)


# placement ----------------------------------------------------------------------------------------------------


def test_device_specs_are_checked() -> None:
    assert check_device(" CUDA:1 ") == "cuda:1"
    for bad in ("gpu", "cuda:x", "mps:0", ""):
        with pytest.raises(ValueError, match="unknown device"):
            check_device(bad)
    with pytest.raises(ExpertError, match="TRANSFORMERS_DEVICE"):
        TransformersBackend.from_settings(Settings(transformers_devices={"a/b": "gpu"}))


def test_auto_placement_uses_a_gpu_only_when_there_is_one() -> None:
    expected = "cpu" if not torch.cuda.is_available() else "cuda:"
    assert resolve_device("auto").startswith(expected)


async def test_each_model_runs_on_its_own_device(cache, ctx, photo) -> None:
    backend = TransformersBackend(cache_dir=cache, online=False, device="cpu", devices={"tiny/vit-animals": "cuda:0"})
    await backend.expert(card("tiny/bert-sentiment", "text-classification")).run({"text": "good"}, ctx)
    vit = backend.expert(card("tiny/vit-animals", "image-classification"))
    if torch.cuda.is_available():
        out = await vit.run({"image": str(photo)}, ctx)
        assert out["json"]["labels"][0]["label"] == "zebra"
        slots = {entry.key: entry.device for entry in backend.pool.report().loaded}
        assert slots == {
            "tiny/bert-sentiment@cpu#pipeline": "cpu",
            "tiny/vit-animals@cuda:0#pipeline": "cuda:0",
        }
    else:
        with pytest.raises(ExpertError, match="no CUDA GPU"):
            await vit.run({"image": str(photo)}, ctx)
        assert backend.pool.loaded() == ["tiny/bert-sentiment@cpu#pipeline"]


# the pool -----------------------------------------------------------------------------------------------------


async def test_pool_unloads_the_least_recently_used_model_to_stay_within_budget(tmp_path, ctx) -> None:
    cache = tmp_path / "cache"
    ids = ["tiny/one", "tiny/two", "tiny/three"]
    for model_id in ids:
        tinymodels.text_classifier(cache, model_id, hidden=32)
    size = weights_bytes(tinymodels.cache_folder(cache, ids[0]))
    backend = TransformersBackend(cache_dir=cache, online=False, ram_bytes=int(size * 2.5))
    experts = {m: backend.expert(card(m, "text-classification")) for m in ids}

    async def use(model_id: str) -> None:
        out = await experts[model_id].run({"text": "good"}, ctx)
        assert out["text"].startswith("POSITIVE")

    def loaded() -> list[str]:
        return [key.split("@")[0] for key in backend.pool.loaded()]

    await use("tiny/one")
    await use("tiny/two")
    assert loaded() == ["tiny/one", "tiny/two"]
    await use("tiny/one")  # now tiny/two is the least recently used
    await use("tiny/three")
    assert loaded() == ["tiny/one", "tiny/three"]
    await use("tiny/two")
    assert loaded() == ["tiny/three", "tiny/two"]
    report = backend.pool.report()
    assert (report.loads, report.unloads, report.hits) == (4, 2, 1)
    assert report.used_mb["cpu"] <= report.budgets_mb["cpu"]


async def test_a_model_larger_than_the_whole_budget_is_refused(cache, ctx) -> None:
    backend = TransformersBackend(cache_dir=cache, online=False, ram_bytes=1024)
    with pytest.raises(ExpertError, match="more than the whole"):
        await backend.expert(card("tiny/bert-sentiment", "text-classification")).run({"text": "good"}, ctx)
    assert backend.pool.loaded() == []


# downloads -----------------------------------------------------------------------------------------------------


async def test_online_a_model_downloads_on_first_use_in_one_weights_format(tmp_path, ctx, online_hub) -> None:
    from fakehub import FakeRepos
    from localserver import serving

    repo = tinymodels.text_classifier(tmp_path / "hub", "remote/bert")
    (repo / "tf_model.h5").write_bytes(b"tensorflow weights nobody needs")
    (repo / "pytorch_model.bin").write_bytes(b"the same weights again")
    repos = FakeRepos({"remote/bert": repo})
    cache = tmp_path / "cache"
    bert = card("remote/bert", "text-classification")
    with serving(repos.app()) as url:
        backend = TransformersBackend(cache_dir=cache, online=True, hub_endpoint=url)
        assert backend.local_folder("remote/bert") is None and backend.why_not(bert) is None
        out = await backend.expert(bert).run({"text": "good"}, ctx)
    assert out["text"].startswith("POSITIVE")
    assert "remote/bert/model.safetensors" in repos.downloads
    assert not {"remote/bert/tf_model.h5", "remote/bert/pytorch_model.bin"} & set(repos.downloads)
    offline = TransformersBackend(cache_dir=cache, online=False)
    assert offline.why_not(bert) is None  # now in the local cache


async def test_a_failed_download_is_a_clear_error(tmp_path, ctx, online_hub) -> None:
    from fakehub import FakeRepos
    from localserver import serving

    with serving(FakeRepos({}).app()) as url:
        backend = TransformersBackend(cache_dir=tmp_path / "cache", online=True, hub_endpoint=url)
        with pytest.raises(ExpertError, match="could not download nobody/model"):
            await backend.expert(card("nobody/model", "text-classification")).run({"text": "x"}, ctx)


async def test_a_call_queued_behind_a_hung_model_leaves_when_its_caller_gives_up(backend, ctx, monkeypatch) -> None:
    import asyncio
    import threading

    from hugginggpt.experts.transformers import TransformersExpert
    from hugginggpt.types import ModelCard

    release, calls = threading.Event(), []

    def hangs(card, args, context):
        calls.append(args["text"])
        release.wait(10)
        return {"text": "late"}

    monkeypatch.setattr(backend, "predict", hangs)
    expert = TransformersExpert(ModelCard(id="test/hangs", task="summarization"), backend)
    try:
        for text in ("first", "second"):  # the first hangs holding the model; the second waits behind it
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(expert.run({"text": text}, ctx), 0.3)
    finally:
        release.set()
    await asyncio.sleep(0.3)
    assert calls == ["first"]  # the queued call left with its caller and never ran later
