"""Stage 2: choose a model for each task from the catalogue's available candidates.

Strategies: `top` (the most downloaded available card) and `llm` (one batched LLM call chooses for every task of
the plan that has more than one candidate). No candidates means the task fails with "no available model".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .catalog import ModelCatalog
from .errors import LLMError
from .jsontext import JSONNotFound, extract_json
from .llm.protocol import LLM, Message
from .prompts import render
from .types import ModelCard, Selection, Task

STRATEGIES = ("llm", "top")


def _key(task: Task) -> str:
    return f"task_{task.id}"


def selection_schema(pending: list[tuple[Task, list[ModelCard]]]) -> dict[str, Any]:
    """One property per task; each task's `id` is an enum of its own candidates."""
    properties = {
        _key(task): {
            "type": "object",
            "properties": {
                "id": {"type": "string", "enum": [c.id for c in candidates]},
                "reason": {"type": "string", "maxLength": 200},
            },
            "required": ["id", "reason"],
            "additionalProperties": False,
        }
        for task, candidates in pending
    }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class Selector:
    """Chooses models for tasks as they arrive. Tasks that need the LLM wait for `flush()`, which asks once for all."""

    def __init__(
        self, catalog: ModelCatalog, llm: LLM | None, request: str, *, strategy: str = "llm", top_k: int = 5
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if strategy == "llm" and llm is None:
            raise ValueError("the llm selection strategy needs an LLM")
        self.catalog = catalog
        self.llm = llm
        self.request = request
        self.strategy = strategy
        self.top_k = top_k
        self.selections: dict[int, Selection] = {}
        self._pending: list[tuple[Task, list[ModelCard], asyncio.Future[Selection]]] = []

    def submit(self, task: Task) -> asyncio.Future[Selection]:
        """A future for the task's selection: resolved now when no LLM is needed, else by `flush()`."""
        future: asyncio.Future[Selection] = asyncio.get_running_loop().create_future()
        candidates = self.catalog.candidates(task.task, self.top_k, task.args)
        if not candidates:
            self._resolve(
                future,
                Selection(
                    task_id=task.id, model_id=None, reason=f"no available model for {task.task}", strategy="none"
                ),
            )
        elif len(candidates) == 1:
            self._resolve(future, _chosen(task, candidates[0], "the only available model", "single"))
        elif self.strategy == "top":
            self._resolve(future, _chosen(task, candidates[0], "the most downloaded available model", "top"))
        else:
            self._pending.append((task, candidates, future))
        return future

    async def flush(self) -> None:
        """Select for every waiting task with one LLM call; an unusable reply falls back to the top candidate."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        assert self.llm is not None
        choices: dict[str, Any] = {}
        problem = None
        try:
            completion = await self.llm.complete(
                self._messages(pending),
                json_schema=selection_schema([(t, c) for t, c, _ in pending]),
                max_tokens=120 * len(pending) + 60,
            )
            value = extract_json(completion.text)
            if isinstance(value, dict):
                choices = value
            else:
                problem = "the selection reply was not a JSON object"
        except (LLMError, JSONNotFound) as exc:
            problem = f"model selection failed ({exc})"
        for task, candidates, future in pending:
            choice = choices.get(_key(task)) or choices.get(str(task.id))
            by_id = {c.id: c for c in candidates}
            if isinstance(choice, dict) and choice.get("id") in by_id:
                reason = str(choice.get("reason") or "chosen by the LLM")[:300]
                self._resolve(future, _chosen(task, by_id[choice["id"]], reason, "llm"))
            else:
                why = problem or f"the LLM's choice for task {task.id} was not one of the candidates"
                self._resolve(future, _chosen(task, candidates[0], f"{why}; using the most downloaded model", "top"))

    def cancel(self) -> None:
        for _, _, future in self._pending:
            future.cancel()
        self._pending = []

    def _messages(self, pending: list[tuple[Task, list[ModelCard], asyncio.Future[Selection]]]) -> list[Message]:
        items = [
            {"key": _key(task), "task": task, "args": json.dumps(task.args, ensure_ascii=False), "candidates": cands}
            for task, cands, _ in pending
        ]
        return [
            Message(role="system", content=render("selection_system.j2")),
            Message(role="user", content=render("selection.j2", request=self.request, items=items)),
        ]

    def _resolve(self, future: asyncio.Future[Selection], selection: Selection) -> None:
        self.selections[selection.task_id] = selection
        future.set_result(selection)


def _chosen(task: Task, card: ModelCard, reason: str, strategy: str) -> Selection:
    return Selection(task_id=task.id, model_id=card.id, reason=reason, strategy=strategy, backend=card.backend)
