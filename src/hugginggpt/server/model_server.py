"""The model server (`hugginggpt serve-models`): hosts local experts over HTTP for one or more controllers.

Endpoints, as the original system's model server plus a few: `GET /running`, `GET /status/{model_id}`,
`POST /models/{model_id}` (multipart: `task`, `args` as JSON, one file per media argument; or JSON `{"task",
"args"}` for text-only calls), `GET /files/{request}/{name}` (an artifact, deleted once fetched), `GET /models`
(the cards hosted), `GET /health` and `GET /memory`. Models load lazily within the memory budget of the
transformers pool; calls to one model run one at a time, different models run concurrently.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from ..artifacts import LocalArtifacts
from ..config import Settings
from ..errors import HuggingGPTError
from ..experts.pool import ModelPool
from ..experts.protocol import Expert, ExpertContext, LocalExpert, Outputs
from ..experts.registry import ExpertRegistry, RoutedExpert, Router
from ..experts.transformers import TransformersBackend, TransformersExpert
from ..types import MEDIA, Artifact, ModelCard, arg_modality

_REQUEST = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_CHUNK = 1 << 20


class ModelHost:
    """The experts a model server hosts, a lock per model, and a folder per request for uploads and artifacts."""

    def __init__(
        self,
        registry: ExpertRegistry,
        root: Path,
        *,
        pool: ModelPool | None = None,
        max_upload_bytes: int = 25_000_000,
        keep_seconds: float = 3600.0,
    ) -> None:
        self.registry = registry
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pool = pool
        self.max_upload_bytes = max_upload_bytes
        self.keep_seconds = keep_seconds
        self.started = time.monotonic()
        self._locks: dict[str, asyncio.Lock] = {}

    def cards(self) -> list[ModelCard]:
        return sorted((c for c in self.registry.cards() if c.available), key=lambda c: (c.task, c.id))

    def tasks_of(self, model_id: str) -> list[str]:
        return [c.task for c in self.cards() if c.id == model_id]

    def expert(self, model_id: str, task: str | None) -> Expert:
        """The expert for a model (and task, needed when the model serves several); HTTPException otherwise."""
        tasks = self.tasks_of(model_id)
        if not tasks:
            raise HTTPException(404, f"this server does not host {model_id}")
        if task is None:
            if len(tasks) > 1:
                raise HTTPException(400, f"{model_id} serves {', '.join(tasks)}: say which with `task`")
            task = tasks[0]
        expert = self.registry.get(task, model_id)
        if expert is None or task not in tasks:
            raise HTTPException(404, f"this server does not host {model_id} for {task}")
        return expert

    def is_loaded(self, model_id: str) -> bool:
        return any(_loaded(self.registry.get(task, model_id)) for task in self.tasks_of(model_id))

    def lock(self, model_id: str) -> asyncio.Lock:
        return self._locks.setdefault(model_id, asyncio.Lock())

    def request_folder(self) -> tuple[str, Path]:
        self._sweep()
        request_id = uuid.uuid4().hex
        folder = self.root / request_id
        (folder / "inputs").mkdir(parents=True)
        return request_id, folder

    def artifact_file(self, request_id: str, name: str) -> Path:
        if not _REQUEST.match(request_id) or not _NAME.match(name):
            raise HTTPException(404, "no such file")
        path = (self.root / request_id / name).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            raise HTTPException(404, "no such file")
        return path

    def _sweep(self) -> None:
        """Remove request folders older than `keep_seconds` (artifacts nobody fetched)."""
        cutoff = time.time() - self.keep_seconds
        for folder in self.root.iterdir():
            if folder.is_dir() and _REQUEST.match(folder.name) and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _loaded(expert: Expert | None) -> bool:
    if isinstance(expert, RoutedExpert):
        return any(_loaded(e) for _, e in expert.chain)
    if isinstance(expert, TransformersExpert):
        return expert.backend.is_loaded(expert.card)
    if isinstance(expert, LocalExpert):
        return expert.loaded
    return False


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * resource.getpagesize() / (1 << 20), 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def _gpu_mb() -> dict[str, float]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {}
    return {f"cuda:{i}": round(torch.cuda.memory_allocated(i) / (1 << 20), 1) for i in range(torch.cuda.device_count())}


async def _save_upload(upload: UploadFile, path: Path, limit: int) -> None:
    size = 0
    with path.open("wb") as handle:
        while block := await upload.read(_CHUNK):
            size += len(block)
            if size > limit:
                raise HTTPException(413, f"upload {upload.filename!r} is over the {limit}-byte limit")
            handle.write(block)


def _plain_args(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise HTTPException(400, "`args` must be a JSON object of strings")
    args = {k: str(v) for k, v in value.items()}
    media = [k for k in args if arg_modality(k) in MEDIA]
    if media:
        raise HTTPException(400, f"send media arguments as files, not text: {', '.join(media)}")
    return args


def create_app(host: ModelHost) -> FastAPI:
    """The FastAPI app serving `host`."""
    app = FastAPI(title="hugginggpt model server", version="1")

    @app.get("/running")
    async def running() -> dict[str, Any]:
        return {"running": True}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        cards = host.cards()
        loaded = sorted({c.id for c in cards if host.is_loaded(c.id)})
        return {
            "status": "ok",
            "models": len(cards),
            "loaded": loaded,
            "uptime_s": round(time.monotonic() - host.started, 1),
        }

    @app.get("/memory")
    async def memory() -> dict[str, Any]:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        pool = host.pool.report().model_dump() if host.pool is not None else None
        return {"rss_mb": _rss_mb(), "peak_rss_mb": round(peak, 1), "gpu_allocated_mb": _gpu_mb(), "pool": pool}

    @app.get("/models")
    async def models() -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in host.cards()]

    @app.get("/status/{model_id:path}")
    async def status(model_id: str) -> dict[str, Any]:
        tasks = host.tasks_of(model_id)
        if not tasks:
            raise HTTPException(404, f"this server does not host {model_id}")
        return {"model_id": model_id, "tasks": tasks, "available": True, "loaded": host.is_loaded(model_id)}

    @app.post("/models/{model_id:path}")
    async def run_model(model_id: str, request: Request) -> dict[str, Any]:
        request_id, folder = host.request_folder()
        try:
            task, args = await _read_call(request, folder / "inputs", host.max_upload_bytes)
            expert = host.expert(model_id, task)
            store = LocalArtifacts(folder, readable=[folder / "inputs"])
            ctx = ExpertContext(workspace=store, task_id=0, task=expert.card.task)
            started = time.perf_counter()
            outputs = await _unless_gone(request, _run_locked(host.lock(model_id), expert, args, ctx))
            seconds = time.perf_counter() - started
        except HuggingGPTError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(422, str(exc)) from None
        except HTTPException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except Exception as exc:  # an expert may raise anything; the caller gets a message, not a dropped connection
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(500, f"{type(exc).__name__}: {exc}") from None
        finally:
            shutil.rmtree(folder / "inputs", ignore_errors=True)
        return {
            "model_id": model_id,
            "task": expert.card.task,
            "seconds": round(seconds, 4),
            "outputs": {k: _encode(v, request_id, folder) for k, v in outputs.items()},
        }

    @app.get("/files/{request_id}/{name}")
    async def files(request_id: str, name: str) -> FileResponse:
        path = host.artifact_file(request_id, name)
        return FileResponse(path, background=BackgroundTask(_discard, path))

    return app


async def _run_locked(lock: asyncio.Lock, expert: Expert, args: dict[str, str], ctx: ExpertContext) -> Outputs:
    async with lock:
        return await expert.run(args, ctx)


async def _unless_gone(request: Request, call: Coroutine[Any, Any, Outputs]) -> Outputs:
    """Run `call` unless the client hangs up first (it gave up: a timeout, a cancelled run); then cancel it, so a
    call queued behind a hung one leaves instead of running later for nobody."""
    work = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        raise HTTPException(499, "the client went away before the model answered")
    return work.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_call(request: Request, inputs: Path, limit: int) -> tuple[str | None, dict[str, str]]:
    """The task and arguments of a call; uploaded files are saved under `inputs` and passed as paths."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body.get("task"), _plain_args(body.get("args") or {})
    async with request.form(max_files=16, max_fields=32) as form:
        raw = form.get("args") or "{}"
        try:
            args = _plain_args(json.loads(raw if isinstance(raw, str) else "{}"))
        except ValueError:
            raise HTTPException(400, "`args` is not valid JSON") from None
        task = form.get("task")
        for key, value in form.multi_items():
            if not isinstance(value, UploadFile):
                continue
            if arg_modality(key) not in MEDIA:
                raise HTTPException(400, f"file field {key!r} is not a media argument (image, audio, video, image_2…)")
            suffix = Path(value.filename or "").suffix.lower()
            path = inputs / f"{key}{suffix if _SUFFIX.match(suffix) else ''}"
            await _save_upload(value, path, limit)
            args[key] = str(path)
    return (task if isinstance(task, str) and task else None), args


def _encode(value: Any, request_id: str, folder: Path) -> Any:
    if not isinstance(value, Artifact):
        return value
    path = Path(value.path).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise HTTPException(500, "an expert wrote its output outside the request folder")
    return {
        "artifact": {
            "url": f"/files/{request_id}/{path.name}",
            "sha256": value.sha256,
            "size": value.size,
            "media_type": value.media_type,
            "modality": value.modality,
            "suffix": path.suffix,
        }
    }


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    folder = path.parent
    if not any(folder.iterdir()):
        folder.rmdir()


def host_from_settings(
    settings: Settings,
    models: Sequence[tuple[str, str]] = (),
    *,
    root: Path | None = None,
    registry: ExpertRegistry | None = None,
) -> ModelHost:
    """A host for local experts (default: the embedded and vision ones that can run here), plus every catalogue card
    (snapshot and `models`, as (task, id)) that transformers can run here."""
    from ..catalog import default_snapshot_path, load_snapshot
    from ..experts.embedded import embedded_experts
    from ..experts.nanodet import nanodet_experts
    from ..experts.segmentation import segmentation_experts
    from ..experts.vision import vision_experts

    if registry is None:
        local = [
            *embedded_experts(settings),
            *nanodet_experts(settings),
            *segmentation_experts(settings),
            *vision_experts(settings),
        ]
        registry = ExpertRegistry(e for e in local if e.card.available)
    backend = TransformersBackend.from_settings(settings)
    registry.router = Router("local", [backend])
    cards = [ModelCard(id=model_id, task=task, description="served on request") for task, model_id in models]
    snapshot = settings.catalog_snapshot or default_snapshot_path()
    if settings.catalog_snapshot is not None or snapshot.is_file():
        cards += load_snapshot(snapshot)
    registry.route(cards)
    folder = root or Path(tempfile.mkdtemp(prefix="hugginggpt-models-"))
    return ModelHost(registry, folder, pool=backend.pool, max_upload_bytes=settings.max_upload_bytes)


def serve(host: ModelHost, *, bind: str = "127.0.0.1", port: int = 8005, log_level: str = "info") -> None:
    """Run the model server until interrupted."""
    import uvicorn

    uvicorn.run(create_app(host), host=bind, port=port, log_level=log_level)
