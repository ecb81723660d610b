"""A local HTTP server speaking the Hugging Face APIs the inference backend uses: the Hub's model listing
(`GET /api/models?inference_provider=hf-inference`) and hf-inference task routes (`POST /models/{id}`…)."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

TOKEN = "hf_test_token"
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc0f0"
    "1f0005fe02fea7e8d6f40000000049454e44ae426082"
)


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\x00\x01" * 800)
    return buffer.getvalue()


def _chat(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "chat",
        "system_fingerprint": "",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
    }


class FakeHub:
    """Which models it serves and how each answers (`models`: id -> behaviour), and what it was sent."""

    BEHAVIOURS = ("labels", "detector", "tts", "asr", "embedder", "chat", "loading-once", "loading", "slow")

    def __init__(self, models: dict[str, str] | None = None) -> None:
        self.models: dict[str, str] = dict(models or {})
        self.listings = 0
        self.listing_fails = False
        self.requests: list[dict[str, Any]] = []
        self.loading_seen: set[str] = set()

    def reset(self) -> None:
        self.listings = 0
        self.listing_fails = False
        self.requests.clear()
        self.loading_seen.clear()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/models")
        async def list_models(request: Request) -> Response:
            self.listings += 1
            if self.listing_fails or request.query_params.get("inference_provider") != "hf-inference":
                return JSONResponse({"error": "internal"}, status_code=500)
            return JSONResponse([{"id": model_id, "_id": model_id} for model_id in self.models])

        @app.post("/models/{path:path}")
        async def infer(path: str, request: Request) -> Response:
            body = await request.body()
            self.requests.append({"path": path, "auth": request.headers.get("authorization"), "body": body})
            model_id = path.removesuffix("/v1/chat/completions").removesuffix("/pipeline/sentence-similarity")
            return await self._answer(model_id, self.models.get(model_id))

        return app

    async def _answer(self, model_id: str, behaviour: str | None) -> Response:
        if behaviour == "labels":
            return JSONResponse([[{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]])
        if behaviour == "detector":
            box = {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}
            found = [{"label": "zebra", "score": 0.97, "box": box}, {"label": "zebra", "score": 0.8, "box": box}]
            return JSONResponse(found)
        if behaviour == "tts":
            return Response(wav_bytes(), media_type="audio/wav")
        if behaviour == "asr":
            return JSONResponse({"text": "hello world"})
        if behaviour == "embedder":
            return JSONResponse([0.75])
        if behaviour == "chat":
            return JSONResponse(_chat("Hello from the chat model."))
        loading = JSONResponse({"error": "Model is currently loading", "estimated_time": 0.05}, status_code=503)
        if behaviour == "loading-once":
            if model_id not in self.loading_seen:
                self.loading_seen.add(model_id)
                return loading
            return JSONResponse([[{"label": "READY", "score": 1.0}]])
        if behaviour == "loading":
            return loading
        if behaviour == "slow":
            await asyncio.sleep(1)
            return JSONResponse([[{"label": "LATE", "score": 1.0}]])
        return JSONResponse({"error": f"Model {model_id} does not exist"}, status_code=404)
