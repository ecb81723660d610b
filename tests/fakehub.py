"""A local HTTP server speaking the Hugging Face APIs the inference backend uses: the Hub's model listing
(`GET /api/models?inference_provider=hf-inference`), hf-inference task routes (`POST /models/{id}`…), and model
repositories' files as `snapshot_download` fetches them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import wave
from pathlib import Path
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


class FakeRepos:
    """Model repositories served as the Hub serves files: `GET /api/models/{id}` (and `/revision/{rev}`) with the
    file list, `HEAD`/`GET /{id}/resolve/{rev}/{file}` with commit and etag headers. `downloads` counts file GETs."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.downloads: list[str] = []

    def _sha(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def app(self) -> FastAPI:
        app = FastAPI()

        def info(repo: str) -> Response:
            folder = self.repos.get(repo)
            if folder is None:
                return JSONResponse({"error": "Repository not found"}, status_code=404)
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            siblings = [{"rfilename": f} for f in files]
            return JSONResponse(
                {"id": repo, "_id": repo, "sha": self._sha(repo), "siblings": siblings, "private": False}
            )

        @app.get("/api/models/{org}/{name}/revision/{revision}")
        async def revision(org: str, name: str, revision: str) -> Response:
            return info(f"{org}/{name}")

        @app.get("/api/models/{org}/{name}")
        async def model(org: str, name: str) -> Response:
            return info(f"{org}/{name}")

        @app.get("/api/models/{org}/{name}/tree/{revision}")
        async def tree(org: str, name: str, revision: str) -> Response:
            folder = self.repos.get(f"{org}/{name}")
            if folder is None:
                return JSONResponse({"error": "Repository not found"}, status_code=404)
            entries = [
                {"type": "file", "path": p.relative_to(folder).as_posix(), "size": p.stat().st_size,
                 "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                for p in sorted(folder.rglob("*")) if p.is_file()
            ]  # fmt: skip
            return JSONResponse(entries)

        @app.api_route("/{org}/{name}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
        async def resolve(org: str, name: str, revision: str, filename: str, request: Request) -> Response:
            repo = f"{org}/{name}"
            folder = self.repos.get(repo)
            path = folder / filename if folder else None
            if path is None or not path.is_file():
                return JSONResponse({"error": "Entry not found"}, status_code=404)
            data = path.read_bytes()
            headers = {"X-Repo-Commit": self._sha(repo), "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            if request.method == "HEAD":
                return Response(headers={**headers, "Content-Length": str(len(data))})
            self.downloads.append(f"{repo}/{filename}")
            return Response(data, headers=headers, media_type="application/octet-stream")

        return app
