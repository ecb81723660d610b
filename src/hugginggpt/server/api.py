"""The server's own API: conversations, file uploads and downloads, and runs with their live event streams (SSE)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from .deps import (
    ApiError,
    PrincipalDep,
    ServicesDep,
    attach,
    check_capacity,
    conversation_for,
    not_found,
    owned_conversation,
    owned_file,
    set_body_limit,
    start_run,
)
from .files import INLINE_TYPES, new_id, public_file
from .runs import Run
from .store import ConversationRow, FileRow, RunRow

router = APIRouter()

# Multipart headers and boundaries around the file itself.
_MULTIPART_SLACK = 64 * 1024
# Every this many seconds an SSE stream sends the comment `: keep-alive`, so proxies keep the connection open.
KEEPALIVE_SECONDS = 15.0


def event_stream(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """An SSE response (sse-starlette): frames end in LF, as the web page's reader expects; keep-alive comments;
    a client hanging up cancels the generator (its `finally` runs)."""
    return EventSourceResponse(
        events,
        sep="\n",
        ping=KEEPALIVE_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
    )


def sse_frame(data: Any, *, event: str | None = None, event_id: int | None = None) -> ServerSentEvent:
    """One frame: `data` as is when a string, else as JSON (non-ASCII kept)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return ServerSentEvent(payload, event=event, id=None if event_id is None else str(event_id), sep="\n")


class NewConversation(BaseModel):
    title: str = Field("", max_length=200)


class RunRequest(BaseModel):
    """Start a run: `message` is the request; `files` are ids of uploads of the same conversation."""

    message: str = Field(min_length=1, max_length=20_000)
    conversation_id: str | None = None
    files: list[str] = Field(default_factory=list, max_length=20)


def conversation_view(row: ConversationRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "conversation",
        "title": row.title,
        "created_at": int(row.created_at),
        "updated_at": int(row.updated_at),
    }


def file_view(row: FileRow, purpose: str = "user_data") -> dict[str, Any]:
    """An OpenAI-style file object, plus the conversation, the name inside it and the download URL."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.size,
        "created_at": int(row.created_at),
        "filename": row.filename,
        "purpose": purpose,
        "status": "processed",
        "conversation_id": row.conversation_id,
        "kind": row.kind,
        "name": row.name,
        "media_type": row.media_type,
        "sha256": row.sha256,
        "url": public_file(row)["url"],
    }


def run_view(row: RunRow | Run) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "run",
        "conversation_id": row.conversation_id,
        "request": row.request,
        "status": row.status,
        "answer": row.answer,
        "error": row.error,
        "events_url": f"/v1/runs/{row.id}/events",
    }


@router.post("/v1/conversations")
async def create_conversation(svc: ServicesDep, who: PrincipalDep, body: NewConversation | None = None) -> dict:
    row = await svc.store.create_conversation(new_id("conv"), who.key_id, body.title if body else "")
    svc.spaces.inputs(row.id)
    return conversation_view(row)


@router.get("/v1/conversations")
async def list_conversations(svc: ServicesDep, who: PrincipalDep) -> dict:
    rows = await svc.store.conversations(who.key_id)
    return {"object": "list", "data": [conversation_view(r) for r in rows]}


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    """A conversation with its messages, its runs (plan, results and answer of each) and its files."""
    row = await owned_conversation(svc, who, conversation_id)
    messages = await svc.store.messages(row.id)
    runs = await svc.store.runs(row.id)
    files = await svc.store.files(row.id)
    views = []
    for run in runs:
        live = svc.runs.live(run.id, who.key_id)
        views.append(run_view(live or run))
    return {
        **conversation_view(row),
        "messages": [
            {"role": m.role, "content": m.content, "run_id": m.run_id, "created_at": int(m.created_at)}
            for m in messages
        ],
        "runs": views,
        "files": [file_view(f) for f in files],
    }


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    row = await owned_conversation(svc, who, conversation_id)
    if any(svc.runs.live(r.id, who.key_id) for r in await svc.store.runs(row.id)):
        raise ApiError(409, "this conversation has a run in progress; cancel it first", code="run_in_progress")
    await svc.store.delete_conversation(row.id, who.key_id)
    await asyncio.to_thread(svc.spaces.delete, row.id)
    return {"id": row.id, "object": "conversation.deleted", "deleted": True}


# The multipart body `upload_file` reads itself, described for clients and for fuzzing the API from its schema.
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "conversation_id": {"type": "string"},
                    "purpose": {"type": "string"},
                },
                "required": ["file"],
            }
        }
    },
}


@router.post("/v1/files", openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_file(request: Request, svc: ServicesDep, who: PrincipalDep) -> dict:
    """Multipart upload: `file`, optional `conversation_id` (default: a new conversation) and `purpose`."""
    limit = svc.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise _too_large(limit)
    set_body_limit(request, limit + _MULTIPART_SLACK)
    try:
        form = await request.form(max_files=1, max_fields=8)
    except MultiPartException as exc:
        raise ApiError(400, f"bad multipart body: {exc}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "send the file as multipart/form-data in a field named 'file'")
        if upload.size is not None and upload.size > limit:
            raise _too_large(limit)
        if not upload.size:
            raise ApiError(400, "the file is empty")
        conversation_id = form.get("conversation_id")
        purpose = form.get("purpose")
        conversation = await conversation_for(svc, who, conversation_id if isinstance(conversation_id, str) else None)
        path = await asyncio.to_thread(svc.spaces.save_upload, conversation.id, upload.filename or "", upload.file)
    finally:
        await form.close()
    row = svc.spaces.file_row(conversation.id, who.key_id, "upload", path)
    await svc.store.add_file(row)
    return file_view(row, purpose if isinstance(purpose, str) and purpose else "user_data")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the file is larger than this key's upload limit of {limit} bytes", code="file_too_large")


@router.get("/v1/files")
async def list_files(
    svc: ServicesDep, who: PrincipalDep, conversation_id: Annotated[str | None, Query()] = None
) -> dict:
    if conversation_id is not None:
        rows = await svc.store.files((await owned_conversation(svc, who, conversation_id)).id)
    else:
        rows = await svc.store.files_of_key(who.key_id)
    return {"object": "list", "data": [file_view(r) for r in rows]}


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    return file_view(await owned_file(svc, who, file_id))


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, svc: ServicesDep, who: PrincipalDep) -> FileResponse:
    """The file's bytes. Images, audio, video, plain text and JSON are served inline; anything else as a download."""
    row = await owned_file(svc, who, file_id)
    path = svc.spaces.locate(row.conversation_id, row.name)
    if path is None:
        raise not_found(f"file {file_id!r}")
    inline = bool(INLINE_TYPES.match(row.media_type))
    return FileResponse(
        path,
        media_type=row.media_type if inline else "application/octet-stream",
        filename=row.filename,
        content_disposition_type="inline" if inline else "attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=86400",
        },
    )


@router.post("/v1/runs")
async def create_run(body: RunRequest, svc: ServicesDep, who: PrincipalDep) -> EventSourceResponse:
    """Start a run and stream its events as SSE (`event: <type>`, `id: <seq>`, `data: <json>`). Hanging up cancels
    the run; other clients can follow it at `GET /v1/runs/{id}/events` without that power."""
    check_capacity(svc, who)
    conversation = await conversation_for(svc, who, body.conversation_id)
    request = await attach(svc, who, conversation.id, body.message, body.files)
    run = await start_run(svc, who, conversation.id, request)
    return event_stream(_events(run, owner=True))


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    live = svc.runs.live(run_id, who.key_id)
    if live is not None:
        return run_view(live)
    row = await svc.store.run(run_id, who.key_id)
    if row is None:
        raise not_found(f"run {run_id!r}")
    return run_view(row)


@router.get("/v1/runs/{run_id}/events")
async def run_events(
    run_id: str,
    svc: ServicesDep,
    who: PrincipalDep,
    after: Annotated[int, Query(ge=-1, description="resume after this event id")] = -1,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """The run's events as SSE: everything so far, then live ones until it ends (a finished run is replayed)."""
    if last_event_id is not None and re.fullmatch(r"\s*[0-9]{1,18}\s*", last_event_id):
        after = max(after, int(last_event_id))
    live = svc.runs.live(run_id, who.key_id)
    if live is not None:
        return event_stream(_events(live, after=after))
    row = await svc.store.run(run_id, who.key_id)
    if row is None:
        raise not_found(f"run {run_id!r}")
    return event_stream(_replay(row.events or [], after))


@router.delete("/v1/runs/{run_id}")
async def cancel_run(run_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    live = svc.runs.live(run_id, who.key_id)
    if live is not None:
        live.cancel()
        await live.wait()
        return run_view(live)
    row = await svc.store.run(run_id, who.key_id)
    if row is None:
        raise not_found(f"run {run_id!r}")
    return run_view(row)


async def _events(run: Run, *, after: int = -1, owner: bool = False) -> AsyncIterator[ServerSentEvent]:
    try:
        ended = False
        async for event in run.follow(after):
            ended = event["type"] == "run.end"
            yield sse_frame(event["data"], event=event["type"], event_id=event["seq"])
        if not ended and (end := _end(run.events)) is not None:
            yield sse_frame(end["data"], event=end["type"], event_id=end["seq"])
    finally:
        if owner and not run.finished.is_set():
            run.cancel()


async def _replay(events: list[dict[str, Any]], after: int) -> AsyncIterator[ServerSentEvent]:
    shown = [event for event in events if event["seq"] > after]
    if not shown and (end := _end(events)) is not None:
        shown = [end]
    for event in shown:
        yield sse_frame(event["data"], event=event["type"], event_id=event["seq"])


def _end(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's `run.end`, which every stream of a finished run ends with: a client resuming past the events
    kept (an interrupted run keeps only its start and end) still learns how the run ended."""
    return events[-1] if events and events[-1]["type"] == "run.end" else None
