"""The HTTP app: `create_app(gpt, settings)` wires the pipeline, the store, auth and every route into FastAPI."""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..config import Settings
from ..pipeline import HuggingGPT
from . import api, completions, jarvis
from .auth import ApiKeys, KeyLimiter, parse_keys
from .deps import BODY_LIMIT_SCOPE_KEY, ApiError, Services, error_type
from .files import Spaces
from .runs import RunManager
from .store import DiskFull, Store

PAGE_DIR = Path(__file__).parent / "page"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def default_files_dir(db: Path) -> Path:
    """Uploads and artifacts live beside the database: `hugginggpt.db` -> `hugginggpt-files/`."""
    return db.with_name(f"{db.stem}-files")


def create_app(gpt: HuggingGPT, settings: Settings | None = None, *, allow_any_host: bool = False) -> FastAPI:
    """An app serving `gpt`. Runs share its LLM, catalogue and expert pool; everything else comes from `settings`
    (default: the pipeline's): the database file, the files folder, API keys and per-key limits.

    Without API keys the app answers only requests addressed to a loopback name (`Host: 127.0.0.1` or
    `localhost`), so a web page elsewhere cannot reach it through DNS rebinding; `allow_any_host` lifts that
    (what `serve --insecure` does)."""
    settings = settings or gpt.settings
    store = Store(settings.db)
    spaces = Spaces(settings.files_dir or default_files_dir(settings.db))
    limiter = KeyLimiter(settings.max_runs_per_key)
    svc = Services(
        gpt=gpt,
        settings=settings,
        store=store,
        spaces=spaces,
        keys=ApiKeys(parse_keys(settings.api_keys)),
        limiter=limiter,
        runs=RunManager(gpt, store, spaces, limiter),
        started_at=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await svc.runs.close()
            await store.close()

    app = FastAPI(
        title="HuggingGPT",
        version=__version__,
        summary="Plans a request as AI tasks, runs expert models, and answers; JARVIS- and OpenAI-compatible.",
        lifespan=lifespan,
    )
    app.state.services = svc
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)  # a bug still answers JSON (and is logged)
    app.add_exception_handler(DiskFull, _disk_full)
    app.add_exception_handler(OSError, _disk_full)
    app.include_router(api.router)
    app.include_router(completions.router)
    app.include_router(jarvis.router)
    app.mount("/static", StaticFiles(directory=PAGE_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "auth": "bearer" if svc.keys.required else "none"}

    # A chat request may carry a file as a base64 data URL, so JSON bodies get the upload limit plus base64's
    # third and some room; uploads lower it to the key's limit once the caller is known.
    body_limit = settings.max_upload_bytes * 4 // 3 + 1_000_000
    app.add_middleware(_BodyLimit, limit=body_limit)
    if not svc.keys.required and not allow_any_host:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)
    return app


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc, ApiError):
        body = exc.body()
    else:
        body = {"error": {"message": str(exc.detail), "type": error_type(exc.status_code), "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _disk_full(request: Request, exc: Exception) -> JSONResponse:
    """507 when the database or the files folder is out of space: the request was not done, the client may retry."""
    if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise exc
    message = str(exc) if isinstance(exc, DiskFull) else f"the server's disk is full: {exc}"
    return await _http_error(request, ApiError(507, message, code="disk_full"))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error.get('loc', ()) if p != 'body') or 'body'}: {error.get('msg')}"
        for error in exc.errors()
    )
    body = {"error": {"message": f"invalid request: {problems}", "type": "invalid_request_error", "param": None}}
    return JSONResponse(body, status_code=400)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    body = {"error": {"message": "internal server error", "type": "server_error", "param": None, "code": "internal"}}
    return JSONResponse(body, status_code=500)


class _BodyLimit:
    """Refuses request bodies over a limit, by Content-Length up front and by counting while they stream in. A
    route may lower the limit for its request (uploads use the key's upload limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[BODY_LIMIT_SCOPE_KEY] = self.limit
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(_too_large(self.limit), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                limit = scope[BODY_LIMIT_SCOPE_KEY]
                if seen > limit:
                    raise ApiError(413, _too_large(limit)["error"]["message"], code="request_too_large")
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> dict:
    message = f"the request body is larger than {limit} bytes"
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}}
