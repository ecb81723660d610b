"""Remote experts on Hugging Face Inference through `huggingface_hub.AsyncInferenceClient`, for any catalogue model.

The token comes from `HF_TOKEN` (or a saved `hf auth login`). Which models HF Inference serves comes from the Hub's
model listing filtered by provider (`/api/models?inference_provider=hf-inference`, what
`HfApi.list_models(inference_provider=...)` asks; the old status API is retired), asked once and trusted for
`status_ttl` seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from ..errors import ExpertError
from ..types import ModelCard
from .media import (
    audio_suffix,
    detection_output,
    image_output,
    labels_output,
    need,
    num,
    segmentation_output,
)
from .protocol import ExpertContext, Outputs

DEFAULT_ENDPOINT = "https://router.huggingface.co/hf-inference"
_IMAGE_OUT = ("text-to-image", "image-to-image", "image-segmentation")

Call = Callable[[Any, dict[str, str], ExpertContext], Awaitable[Outputs]]


def _dump(value: Any) -> Any:
    """A client output dataclass (or list of them) as plain JSON values."""
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _dump(getattr(value, k)) for k in value.__dataclass_fields__ if getattr(value, k) is not None}
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


async def _text_classification(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return labels_output(_dump(await client.text_classification(need(args, "text"))))


async def _token_classification(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    found = _dump(await client.token_classification(need(args, "text")))
    entities = [
        {
            "word": str(e.get("word")),
            "entity": str(e.get("entity_group") or e.get("entity")),
            "score": num(e.get("score", 0)),
            "start": e.get("start"),
            "end": e.get("end"),
        }
        for e in found
    ]
    text = ", ".join(f"{e['word']} ({e['entity']})" for e in entities) or "no entities found"
    return {"text": text, "json": {"entities": entities}}


async def _summarization(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return {"text": (await client.summarization(need(args, "text"))).summary_text.strip()}


async def _translation(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    out = await client.translation(need(args, "text"), src_lang=args.get("src_lang"), tgt_lang=args.get("tgt_lang"))
    return {"text": out.translation_text.strip()}


async def _text_generation(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return {"text": str(await client.text_generation(need(args, "text"), max_new_tokens=256)).strip()}


async def _conversational(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    out = await client.chat_completion([{"role": "user", "content": need(args, "text")}], max_tokens=512)
    return {"text": str(out.choices[0].message.content or "").strip()}


async def _question_answering(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    out = _dump(await client.question_answering(question=need(args, "text"), context=need(args, "text_2")))
    best = out[0] if isinstance(out, list) else out
    return {"text": str(best["answer"]), "json": {"answer": str(best["answer"]), "score": num(best.get("score", 0))}}


async def _sentence_similarity(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    scores = await client.sentence_similarity(need(args, "text"), other_sentences=[need(args, "text_2")])
    score = float(scores[0])
    return {"text": f"similarity {score:.3f}", "json": {"similarity": num(score)}}


async def _object_detection(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    path = need(args, "image")
    return detection_output(path, _dump(await client.object_detection(Path(path))), ctx)


async def _image_classification(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return labels_output(_dump(await client.image_classification(Path(need(args, "image")))))


async def _image_to_text(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return {"text": str((await client.image_to_text(Path(need(args, "image")))).generated_text).strip()}


async def _text_to_image(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return image_output(await client.text_to_image(need(args, "text")), ctx)


async def _image_to_image(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return image_output(await client.image_to_image(Path(need(args, "image")), prompt=args.get("text")), ctx)


async def _image_segmentation(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    path = need(args, "image")
    segments = await client.image_segmentation(Path(path))
    return segmentation_output(path, [{"label": s.label, "score": s.score, "mask": s.mask} for s in segments], ctx)


async def _text_to_speech(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    data = await client.text_to_speech(need(args, "text"))
    path = ctx.output_path(audio_suffix(data))
    path.write_bytes(data)
    return {"audio": ctx.artifact(path, "audio")}


async def _speech_recognition(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return {"text": str((await client.automatic_speech_recognition(Path(need(args, "audio")))).text).strip()}


async def _audio_to_audio(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    found = await client.audio_to_audio(Path(need(args, "audio")))
    if not found:
        raise ExpertError("the model returned no audio")
    data = found[0].blob
    path = ctx.output_path(audio_suffix(data))
    path.write_bytes(data)
    return {"audio": ctx.artifact(path, "audio"), "text": ", ".join(str(f.label) for f in found)}


async def _audio_classification(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    return labels_output(_dump(await client.audio_classification(Path(need(args, "audio")))))


async def _document_qa(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    found = _dump(await client.document_question_answering(Path(need(args, "image")), need(args, "text")))
    if not found:
        raise ExpertError("the model found no answer")
    return {"text": str(found[0]["answer"]), "json": found[0]}


async def _visual_qa(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    found = _dump(await client.visual_question_answering(Path(need(args, "image")), need(args, "text")))
    if not found:
        raise ExpertError("the model found no answer")
    return {"text": str(found[0]["answer"]), "json": {"answers": found}}


async def _text_to_video(client: Any, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    data = await client.text_to_video(need(args, "text"))
    path = ctx.output_path(".mp4")
    path.write_bytes(data)
    return {"video": ctx.artifact(path, "video", "video/mp4")}


# Our task type -> how the client runs it. (HF Inference serves text2text models as text-generation.)
CALLS: dict[str, Call] = {
    "text-classification": _text_classification,
    "token-classification": _token_classification,
    "summarization": _summarization,
    "translation": _translation,
    "text2text-generation": _text_generation,
    "text-generation": _text_generation,
    "conversational": _conversational,
    "question-answering": _question_answering,
    "sentence-similarity": _sentence_similarity,
    "object-detection": _object_detection,
    "image-classification": _image_classification,
    "image-to-text": _image_to_text,
    "text-to-image": _text_to_image,
    "image-to-image": _image_to_image,
    "image-segmentation": _image_segmentation,
    "text-to-speech": _text_to_speech,
    "automatic-speech-recognition": _speech_recognition,
    "audio-to-audio": _audio_to_audio,
    "audio-classification": _audio_classification,
    "document-question-answering": _document_qa,
    "visual-question-answering": _visual_qa,
    "text-to-video": _text_to_video,
}


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class InferenceBackend:
    """Runs catalogue models on Hugging Face Inference.

    A card can run here when a token is set, the Hub is not marked offline, the client has a call for its task,
    and the model is in the list of models HF Inference serves (asked once, trusted for `status_ttl` seconds;
    a model the endpoint answers 404 for is dropped from it at once).
    """

    name = "inference"
    local = False

    def __init__(
        self,
        *,
        token: str | None = None,
        endpoint: str | None = None,
        hub_endpoint: str | None = None,
        timeout: float = 60.0,
        loading_wait: float = 20.0,
        status_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.hub_endpoint = (hub_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.timeout = timeout
        self.loading_wait = loading_wait
        self.status_ttl = status_ttl
        self._clock = clock
        self._served: set[str] | None = None
        self._problem: str | None = None
        self._asked_at = -float("inf")
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> InferenceBackend:
        from huggingface_hub import get_token

        return cls(
            token=get_token(),
            endpoint=settings.inference_endpoint,
            hub_endpoint=settings.inference_hub_endpoint,
            timeout=settings.inference_timeout,
            loading_wait=settings.inference_loading_wait,
            status_ttl=settings.inference_status_ttl,
        )

    def served(self) -> set[str] | None:
        """The model ids HF Inference serves now (None when the Hub could not say), cached for `status_ttl` s."""
        with self._lock:
            if self._clock() - self._asked_at >= self.status_ttl:
                self._served, self._problem = self._ask()
                self._asked_at = self._clock()
            return self._served

    def forget(self, model_id: str) -> None:
        """Drop a model the endpoint says it does not serve."""
        with self._lock:
            if self._served is not None:
                self._served.discard(model_id)

    def why_not(self, card: ModelCard) -> str | None:
        """Why this card cannot run on HF Inference now, or None when it can."""
        if not self.token:
            return "HF Inference needs a token: set HF_TOKEN"
        if _offline_env():
            return "HF_HUB_OFFLINE is set"
        if card.task not in CALLS:
            return f"HF Inference has no {card.task} task"
        if card.task in _IMAGE_OUT and importlib.util.find_spec("PIL") is None:
            return f"{card.task} results need Pillow: pip install pillow"
        served = self.served()
        if served is None:
            return self._problem
        if card.id not in served:
            return f"HF Inference does not serve {card.id}"
        return None

    def available(self, card: ModelCard) -> bool:
        return self.why_not(card) is None

    def expert(self, card: ModelCard) -> InferenceExpert:
        return InferenceExpert(card, self)

    def model_url(self, card: ModelCard) -> str:
        """The URL the client posts to (as it builds it for hf-inference; sentence similarity has its own path)."""
        url = f"{self.endpoint}/models/{card.id}"
        return f"{url}/pipeline/sentence-similarity" if card.task == "sentence-similarity" else url

    async def call(self, card: ModelCard, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        """Run one task remotely. A model still loading (503) is waited for once, up to `loading_wait` seconds."""
        from huggingface_hub import AsyncInferenceClient
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

        run = CALLS.get(card.task)
        if run is None:
            raise ExpertError(f"HF Inference has no {card.task} task")
        client = AsyncInferenceClient(model=self.model_url(card), token=self.token, timeout=self.timeout)
        waited = False
        try:
            while True:
                try:
                    return await run(client, args, ctx)
                except HfHubHTTPError as exc:
                    response = exc.response
                    status = response.status_code if response is not None else None
                    if status == 503 and not waited and self.loading_wait > 0:
                        waited = True
                        await asyncio.sleep(min(_estimated_time(response) or self.loading_wait, self.loading_wait))
                        continue
                    raise self._http_error(card, status, response) from None
                except InferenceTimeoutError:
                    raise ExpertError(f"{card.id} on HF Inference gave no answer within {self.timeout:g} s") from None
                except ExpertError:
                    raise
                except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                    raise ExpertError(f"HF Inference gave an answer for {card.id} that cannot be read: {exc}") from exc
                except Exception as exc:  # the HTTP client raises its own connection error types
                    raise ExpertError(f"cannot reach HF Inference at {self.endpoint}: {exc}") from exc
        finally:
            await client.close()

    def _ask(self) -> tuple[set[str] | None, str | None]:
        """One pass over the Hub's listing of hf-inference models (the Link header pages it); no retries, so a
        Hub that is down costs one short timeout, not a start-up stall."""
        served: set[str] = set()
        url: str | None = f"{self.hub_endpoint}/api/models"
        params: dict[str, Any] | None = {"inference_provider": "hf-inference", "limit": 1000}
        try:
            with httpx.Client(timeout=10.0, headers={"authorization": f"Bearer {self.token}"}) as client:
                for _ in range(100):
                    response = client.get(url, params=params)
                    response.raise_for_status()
                    served.update(str(row["id"]) for row in response.json())
                    url, params = response.links.get("next", {}).get("url"), None
                    if not url:
                        return served, None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return None, f"could not ask {self.hub_endpoint} which models HF Inference serves: {exc}"
        return served, None

    def _http_error(self, card: ModelCard, status: int | None, response: Any) -> ExpertError:
        detail = _error_detail(response)
        if status == 404:
            self.forget(card.id)
            return ExpertError(f"HF Inference does not serve {card.id} (404){detail}")
        if status == 503:
            return ExpertError(f"{card.id} is still loading on HF Inference (503); try again in a minute{detail}")
        if status in (401, 403):
            return ExpertError(f"HF Inference refused the token for {card.id} ({status}): check HF_TOKEN{detail}")
        if status == 429:
            return ExpertError(f"HF Inference rate limit reached (429){detail}")
        return ExpertError(f"HF Inference failed on {card.id} (HTTP {status}){detail}")


def _error_detail(response: Any) -> str:
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return ""
    message = body.get("error") if isinstance(body, dict) else None
    return f": {str(message)[:200]}" if message else ""


def _estimated_time(response: Any) -> float | None:
    try:
        value = json.loads(response.content).get("estimated_time")
        return max(0.0, float(value)) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


class InferenceExpert:
    """One catalogue model run on Hugging Face Inference."""

    def __init__(self, card: ModelCard, backend: InferenceBackend) -> None:
        self.card = card.model_copy(update={"backend": "inference", "available": True})
        self.backend = backend

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        return await self.backend.call(self.card, args, ctx)
