"""Stage 4: write the answer from the request and the results, streamed; a plain summary if the LLM fails."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import LLMError
from .llm.protocol import LLM, DeltaCallback, Message
from .prompts import render
from .types import Artifact, Selection, Task, TaskResult

MAX_VALUE_CHARS = 600


def _trim(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    if isinstance(value, Artifact):
        return value.path
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} characters)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= limit else text[:limit] + "…"


def result_digest(tasks: Sequence[Task], selections: Sequence[Selection], results: Sequence[TaskResult]) -> list[dict]:
    """What the response LLM sees of each task: type, args, model, status, outputs (long values trimmed)."""
    chosen = {s.task_id: s for s in selections}
    by_id = {r.task_id: r for r in results}
    digest = []
    for task in tasks:
        result = by_id.get(task.id)
        selection = chosen.get(task.id)
        item: dict[str, Any] = {"id": task.id, "task": task.task, "args": task.args}
        if selection is not None:
            item["model"] = selection.model_id
            item["reason"] = selection.reason
        if result is not None:
            item["status"] = result.status
            if result.outputs:
                item["outputs"] = {k: _trim(v) for k, v in result.outputs.items()}
            if result.error:
                item["error"] = result.error
        digest.append(item)
    return digest


def response_messages(request: str, digest: list[dict], history: Sequence[Message] = ()) -> list[Message]:
    results = json.dumps(digest, ensure_ascii=False, indent=1) if digest else ""
    return [
        Message(role="system", content=render("response_system.j2")),
        *history,
        Message(role="user", content=render("response.j2", request=request, results=results)),
    ]


def fallback_answer(request: str, digest: list[dict], error: str | None = None) -> str:
    """An answer built without the LLM: each task's status and outputs, in plain words."""
    lines = []
    if error:
        lines.append(f"I could not write a full answer ({error}). Here is what the models returned:")
    elif not digest:
        return "I could not answer this request: no models were needed, and the language model is not available."
    for item in digest:
        model = item.get("model") or "no model"
        head = f"- Task {item['id']} ({item['task']}) with {model}: {item.get('status', 'not run')}"
        if item.get("error"):
            head += f" — {item['error']}"
        lines.append(head)
        for key, value in item.get("outputs", {}).items():
            lines.append(f"  {key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines)


async def respond(
    llm: LLM,
    request: str,
    digest: list[dict],
    *,
    history: Sequence[Message] = (),
    on_delta: DeltaCallback | None = None,
    max_tokens: int = 600,
) -> tuple[str, str | None]:
    """(answer, error). On an LLM failure the answer is `fallback_answer` and `error` says what failed."""
    try:
        completion = await llm.complete(
            response_messages(request, digest, history), max_tokens=max_tokens, on_delta=on_delta
        )
    except LLMError as exc:
        text = fallback_answer(request, digest, str(exc))
        if on_delta is not None:
            on_delta(text)
        return text, str(exc)
    text = completion.text.strip()
    if not text:
        text = fallback_answer(request, digest, "the language model returned an empty answer")
        if on_delta is not None:
            on_delta(text)
        return text, "empty answer"
    return text, None
