"""The original JARVIS server contract: `POST /hugginggpt`, `/tasks` and `/results` with `{"messages": [...]}`.

As in JARVIS, the last message is the request and the earlier ones are its context. JARVIS's `api_key`,
`api_type` and `api_endpoint` body fields are accepted and ignored: the controller LLM is the server's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import HuggingGPTError, LLMError, PlanError
from ..llm.protocol import Message
from .deps import (
    ApiError,
    Principal,
    PrincipalDep,
    Services,
    ServicesDep,
    check_capacity,
    conversation_for,
    finish_or_cancel,
    start_run,
    too_many_runs,
    until_disconnected,
    valid_unicode,
)
from .runs import Run

router = APIRouter()


class JarvisMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant"]
    content: str


class JarvisRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    messages: list[JarvisMessage] = Field(min_length=1)

    _unicode = model_validator(mode="before")(valid_unicode)


def _split(body: JarvisRequest) -> tuple[str, list[Message]]:
    last = body.messages[-1]
    if last.role != "user" or not last.content.strip():
        raise ApiError(400, "the last message must be the user's request", param="messages")
    context = [Message(role=m.role, content=m.content) for m in body.messages[:-1] if m.role != "system"]
    return last.content, context


async def _run(body: JarvisRequest, request: Request, svc: Services, who: Principal) -> Run | None:
    """Answer in a new conversation seeded with the context; None when the client hung up (the run is cancelled)."""
    text, context = _split(body)
    check_capacity(svc, who)
    conversation = await conversation_for(svc, who, None)
    for message in context:
        await svc.store.add_message(conversation.id, message.role, message.content)
    run = await start_run(svc, who, conversation.id, text)
    if not await finish_or_cancel(request, run):
        return None
    if run.answer is None:
        raise ApiError(500, f"the run failed: {run.error}", code="run_failed")
    return run


@router.post("/hugginggpt", response_model=None)
async def hugginggpt(body: JarvisRequest, request: Request, svc: ServicesDep, who: PrincipalDep) -> dict | Response:
    """All four stages: `{"message": "<answer>"}`."""
    run = await _run(body, request, svc, who)
    if run is None:
        return Response(status_code=499)
    assert run.answer is not None
    return {"message": run.answer["text"]}


@router.post("/results", response_model=None)
async def results(body: JarvisRequest, request: Request, svc: ServicesDep, who: PrincipalDep) -> dict | Response:
    """Stages 1-3 keyed by task id: the task, the chosen model and why, and the inference result (files as URLs)."""
    run = await _run(body, request, svc, who)
    if run is None:
        return Response(status_code=499)
    assert run.answer is not None
    chosen = {s["task_id"]: s for s in run.answer.get("selections", [])}
    tasks = {t["id"]: t for t in run.answer.get("plan", [])}
    out: dict[str, Any] = {}
    for result in run.answer.get("results", []):
        task_id = result["task_id"]
        selection = chosen.get(task_id, {})
        out[str(task_id)] = {
            "task": tasks.get(task_id, {"id": task_id, "task": result["task"]}),
            "choose model result": {"id": selection.get("model_id"), "reason": selection.get("reason")},
            "inference result": result.get("outputs", {}),
            "status": result.get("status"),
            "error": result.get("error"),
        }
    return out


@router.post("/tasks", response_model=None)
async def tasks(body: JarvisRequest, request: Request, svc: ServicesDep, who: PrincipalDep) -> list | Response:
    """Stage 1 only: the validated plan, a list of `{"task", "id", "dep", "args"}`."""
    text, context = _split(body)
    if not svc.limiter.try_acquire(who.key_id):
        raise too_many_runs(svc)
    try:
        planning = asyncio.create_task(svc.gpt.plan(text, context))
        watcher = asyncio.create_task(until_disconnected(request))
        try:
            await asyncio.wait({planning, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not planning.done():
                planning.cancel()
                await asyncio.gather(planning, return_exceptions=True)
        if planning.cancelled():
            return Response(status_code=499)
        try:
            plan = planning.result()
        except PlanError as exc:
            raise ApiError(400, f"could not plan this request: {exc}", code="plan_error") from None
        except LLMError as exc:
            raise ApiError(502, f"the controller LLM failed: {exc}", code="llm_error") from None
        except HuggingGPTError as exc:
            raise ApiError(400, str(exc)) from None
        return [task.model_dump(exclude_none=True) for task in plan.tasks]  # JARVIS's task format: no `step` key
    finally:
        svc.limiter.release(who.key_id)
