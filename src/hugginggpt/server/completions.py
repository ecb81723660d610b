"""OpenAI-compatible API: `POST /v1/chat/completions` (plain or SSE stream) and `GET /v1/models`.

The answer is the assistant message; the structured run (plan, selections, results, artifact URLs, timings) is in
the extra top-level field `hugginggpt` of the completion (of the first and last chunk when streaming). The extra
request field `conversation_id` continues a stored conversation: its history and files are the server's, and the
earlier messages the client sends are then ignored (naming an uploaded file by id does the same for the file's
conversation). Otherwise a new conversation starts from the client's messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette import ServerSentEvent

from .api import event_stream, sse_frame
from .deps import (
    ApiError,
    PrincipalDep,
    Services,
    ServicesDep,
    attach,
    check_capacity,
    conversation_for,
    finish_or_cancel,
    owned_file,
    start_run,
    valid_unicode,
)
from .runs import Run

router = APIRouter()

MODEL_ID = "hugginggpt"
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.DOTALL)
_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat request this server uses; sampling fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    conversation_id: str | None = None

    _unicode = model_validator(mode="before")(valid_unicode)


class _Attachment(BaseModel):
    filename: str
    data: bytes


@router.get("/v1/models")
async def list_models(svc: ServicesDep, who: PrincipalDep) -> dict:
    return {"object": "list", "data": [_model(svc)]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, svc: ServicesDep, who: PrincipalDep) -> dict:
    if model_id != MODEL_ID:
        raise _unknown_model(model_id)
    return _model(svc)


def _model(svc: Services) -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": svc.started_at, "owned_by": "hugginggpt"}


def _unknown_model(model: str) -> ApiError:
    return ApiError(404, f"model {model!r} does not exist; this server serves {MODEL_ID!r}", code="model_not_found")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request, svc: ServicesDep, who: PrincipalDep) -> dict | Response:
    if body.model != MODEL_ID:
        raise _unknown_model(body.model)
    check_capacity(svc, who)
    last = body.messages[-1]
    if last.role != "user":
        raise ApiError(400, "the last message must be the user's request", param="messages")
    text, attachments, file_ids = _read_content(last.content, svc.settings.max_upload_bytes)
    conversation_id = body.conversation_id
    if conversation_id is None and file_ids:
        # Naming uploaded files continues the conversation they were uploaded to.
        conversation_id = (await owned_file(svc, who, file_ids[0])).conversation_id
    conversation = await conversation_for(svc, who, conversation_id)
    if conversation_id is None:
        for message in body.messages[:-1]:
            earlier = _plain_text(message.content)
            if message.role in ("user", "assistant") and earlier:
                await svc.store.add_message(conversation.id, message.role, earlier)
    for attachment in attachments:
        path = await asyncio.to_thread(
            svc.spaces.save_upload, conversation.id, attachment.filename, io.BytesIO(attachment.data)
        )
        row = svc.spaces.file_row(conversation.id, who.key_id, "upload", path)
        await svc.store.add_file(row)
        file_ids.append(row.id)
    request_text = await attach(svc, who, conversation.id, text, file_ids)
    if not request_text.strip():
        raise ApiError(400, "the request is empty", param="messages")
    run = await start_run(svc, who, conversation.id, request_text)
    created = int(time.time())
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return event_stream(_chunks(run, created, usage))
    if not await finish_or_cancel(request, run):
        return Response(status_code=499)
    if run.answer is None:
        raise ApiError(500, f"the run failed: {run.error}", code="run_failed")
    return {
        "id": _completion_id(run),
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": run.answer["text"], "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(run.answer),
        "system_fingerprint": None,
        "hugginggpt": structured_run(run),
    }


def structured_run(run: Run) -> dict[str, Any]:
    """The documented extra field: how the answer was made, with URLs for every artifact."""
    answer = run.answer or {}
    return {
        "run_id": run.id,
        "conversation_id": run.conversation_id,
        "status": run.status,
        "events_url": f"/v1/runs/{run.id}/events",
        "plan": answer.get("plan", []),
        "selections": answer.get("selections", []),
        "results": answer.get("results", []),
        "artifacts": artifacts_of(answer),
        "timings": answer.get("timings", {}),
        "llm_calls": answer.get("llm_calls", 0),
        "error": answer.get("error") or run.error,
    }


def artifacts_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        value
        for result in answer.get("results", [])
        for value in result.get("outputs", {}).values()
        if isinstance(value, dict) and "file_id" in value
    ]


def _completion_id(run: Run) -> str:
    return "chatcmpl-" + run.id.removeprefix("run-")


def _usage(answer: dict[str, Any]) -> dict[str, int]:
    prompt = sum(call.get("prompt_tokens", 0) for call in answer.get("llm_usage", []))
    completion = sum(call.get("completion_tokens", 0) for call in answer.get("llm_usage", []))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunk(run: Run, created: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": _completion_id(run),
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


async def _chunks(run: Run, created: int, include_usage: bool) -> AsyncIterator[ServerSentEvent]:
    """SSE chunks: the role (with the run and conversation ids), answer deltas, the finish with the structured run,
    optionally usage, then `[DONE]`. A failed run sends an `error` object instead. Hanging up cancels the run."""
    try:
        start = {"run_id": run.id, "conversation_id": run.conversation_id, "events_url": f"/v1/runs/{run.id}/events"}
        yield sse_frame(_chunk(run, created, {"role": "assistant", "content": ""}, hugginggpt=start))
        async for event in run.follow():
            if event["type"] == "answer.token" and event["data"].get("text"):
                yield sse_frame(_chunk(run, created, {"content": event["data"]["text"]}))
        if run.answer is None:
            error = {"message": f"the run failed: {run.error}", "type": "server_error", "code": "run_failed"}
            yield sse_frame({"error": error})
            return
        yield sse_frame(_chunk(run, created, {}, "stop", hugginggpt=structured_run(run)))
        if include_usage:
            usage_chunk = _chunk(run, created, {}, usage=_usage(run.answer))
            usage_chunk["choices"] = []
            yield sse_frame(usage_chunk)
        yield sse_frame("[DONE]")
    finally:
        if not run.finished.is_set():
            run.cancel()


def _plain_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def _read_content(content: str | list[dict[str, Any]] | None, limit: int) -> tuple[str, list[_Attachment], list[str]]:
    """Text, inline files (base64 data URLs, `input_audio`) and uploaded file ids from a user message."""
    if content is None:
        return "", [], []
    if isinstance(content, str):
        return content, [], []
    texts: list[str] = []
    attachments: list[_Attachment] = []
    file_ids: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = str(_field(part, "image_url").get("url", ""))
            if url.startswith("data:"):
                media_type, data = _decode_data_url(url, limit)
                attachments.append(_Attachment(filename=f"image-{index}{_SUFFIX.get(media_type, '.png')}", data=data))
            elif re.match(r"^https?://", url):
                texts.append(url)
            else:
                raise ApiError(400, "image_url must be an http(s) URL or a base64 data URL", param="messages")
        elif kind == "input_audio":
            audio = _field(part, "input_audio")
            fmt = re.sub(r"[^a-z0-9]", "", str(audio.get("format", "wav")).lower()) or "wav"
            data = _decode_base64(str(audio.get("data", "")), limit)
            attachments.append(_Attachment(filename=f"audio-{index}.{fmt}", data=data))
        elif kind == "file":
            file = _field(part, "file")
            if file.get("file_id"):
                file_ids.append(str(file["file_id"]))
            elif file.get("file_data"):
                data_url = str(file["file_data"])
                _, data = _decode_data_url(data_url, limit) if data_url.startswith("data:") else ("", b"")
                if not data:
                    data = _decode_base64(data_url, limit)
                attachments.append(_Attachment(filename=str(file.get("filename") or f"file-{index}"), data=data))
            else:
                raise ApiError(400, "a file part needs file_id or file_data", param="messages")
        else:
            raise ApiError(400, f"unsupported content part type {kind!r}", param="messages")
    return "\n".join(t for t in texts if t), attachments, file_ids


def _field(part: dict[str, Any], key: str) -> dict[str, Any]:
    """The object a content part keeps under `key` (`{"type": "file", "file": {...}}`); a 400 when it is not one."""
    value = part.get(key) or {}
    if not isinstance(value, dict):
        raise ApiError(400, f"a {key} content part needs an object in {key!r}", param="messages")
    return value


def _decode_data_url(url: str, limit: int) -> tuple[str, bytes]:
    match = _DATA_URL.match(url)
    if match is None:
        raise ApiError(400, "data URLs must be base64-encoded (data:<type>;base64,<data>)", param="messages")
    return match.group("type") or "application/octet-stream", _decode_base64(match.group("data"), limit)


def _decode_base64(text: str, limit: int) -> bytes:
    if len(text) * 3 // 4 > limit + 3:
        raise ApiError(413, f"an attached file is larger than this key's upload limit of {limit} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "attached file data is not valid base64", param="messages") from None
    if not data:
        raise ApiError(400, "an attached file is empty", param="messages")
    if len(data) > limit:
        raise ApiError(413, f"an attached file is larger than this key's upload limit of {limit} bytes")
    return data
