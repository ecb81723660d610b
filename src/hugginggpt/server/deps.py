"""What every route shares: the server's services, the caller's identity, API errors, and the rule that
a client who hangs up cancels the run it was waiting for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from ..config import Settings
from ..pipeline import HuggingGPT
from .auth import LOCAL_KEY_ID, ApiKeys, KeyLimiter, Principal
from .files import Spaces, new_id
from .runs import Run, RunManager, TooManyRuns
from .store import ConversationRow, FileRow, Store

BODY_LIMIT_SCOPE_KEY = "hugginggpt.body_limit"
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


@dataclass
class Services:
    """The server's long-lived parts, built once per app and shared by every request."""

    gpt: HuggingGPT
    settings: Settings
    store: Store
    spaces: Spaces
    keys: ApiKeys
    limiter: KeyLimiter
    runs: RunManager
    started_at: int


class ApiError(HTTPException):
    """An error answered as `{"error": {"message", "type", "code"}}`, the shape OpenAI clients understand."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status_code=status, detail=message, headers=headers)
        self.kind = kind or error_type(status)
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.detail, "type": self.kind, "param": self.param, "code": self.code}}


def valid_unicode(value: Any) -> Any:
    """`value` (a request body as parsed) unchanged, or a ValueError when a string in it holds a lone surrogate
    (JSON allows `"\\ud800"`; UTF-8, SQLite and the LLM do not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode; it holds a lone surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            valid_unicode(key)
            valid_unicode(item)
    elif isinstance(value, list):
        for item in value:
            valid_unicode(item)
    return value


def error_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "server_error"


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found", code="not_found")


def services(request: Request) -> Services:
    return request.app.state.services


def principal(request: Request, svc: Annotated[Services, Depends(services)]) -> Principal:
    """The caller: the key id of its Bearer token, or the local principal when the server has no keys."""
    if not svc.keys.required:
        return Principal(key_id=LOCAL_KEY_ID)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    kid = svc.keys.identify(token.strip())
    if kid is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return Principal(key_id=kid)


ServicesDep = Annotated[Services, Depends(services)]
PrincipalDep = Annotated[Principal, Depends(principal)]


async def owned_conversation(svc: Services, who: Principal, conversation_id: str) -> ConversationRow:
    row = await svc.store.conversation(conversation_id, who.key_id)
    if row is None:
        raise not_found(f"conversation {conversation_id!r}")
    return row


async def conversation_for(svc: Services, who: Principal, conversation_id: str | None) -> ConversationRow:
    """The caller's conversation `conversation_id`, or a new one when it is None."""
    if conversation_id is None:
        row = await svc.store.create_conversation(new_id("conv"), who.key_id)
        svc.spaces.inputs(row.id)
        return row
    return await owned_conversation(svc, who, conversation_id)


async def owned_file(svc: Services, who: Principal, file_id: str) -> FileRow:
    row = await svc.store.file(file_id, who.key_id)
    if row is None:
        raise not_found(f"file {file_id!r}")
    return row


async def attach(svc: Services, who: Principal, conversation_id: str, request: str, file_ids: list[str]) -> str:
    """The request text with the caller's uploads named at its end, so the planner can use them as inputs."""
    names = []
    for file_id in dict.fromkeys(file_ids):
        row = await owned_file(svc, who, file_id)
        if row.conversation_id != conversation_id:
            raise not_found(f"file {file_id!r} in conversation {conversation_id!r}")
        names.append(Path(row.name).name if row.kind == "upload" else row.name)
    if not names:
        return request
    return f"{request.rstrip()}\nAttached files: {', '.join(names)}"


def too_many_runs(svc: Services) -> ApiError:
    return ApiError(
        429,
        f"this API key already has {svc.limiter.max_runs} runs in progress; wait for one to finish",
        code="too_many_runs",
    )


def check_capacity(svc: Services, who: Principal) -> None:
    """Refuse early (before anything is stored) when the caller is at its limit of runs in progress."""
    if svc.limiter.running(who.key_id) >= svc.limiter.max_runs:
        raise too_many_runs(svc)


async def start_run(svc: Services, who: Principal, conversation_id: str, request: str) -> Run:
    try:
        return await svc.runs.start(conversation_id, who.key_id, request)
    except TooManyRuns:
        raise too_many_runs(svc) from None


async def until_disconnected(request: Request) -> None:
    """Returns when the client hangs up (after the request body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def finish_or_cancel(request: Request, run: Run) -> bool:
    """Wait for the run to end; if the client hangs up first, cancel the run. True when the run ended by itself."""
    watcher = asyncio.create_task(until_disconnected(request))
    ending = asyncio.create_task(run.wait())
    done: set[asyncio.Task[None]] = set()
    try:
        done, _ = await asyncio.wait({watcher, ending}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if ending not in done:
            ending.cancel()
            run.cancel()
    return ending in done


def set_body_limit(request: Request, limit: int) -> None:
    """Lower the body limit of this request (the app-wide limit still applies on top)."""
    request.scope[BODY_LIMIT_SCOPE_KEY] = min(limit, request.scope.get(BODY_LIMIT_SCOPE_KEY, limit))
