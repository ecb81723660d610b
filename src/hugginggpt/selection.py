"""Stage 2: choose a model for each task from the catalogue's available candidates.

Strategies: `fit` (the default: candidates ranked by how well their card fits the task's part of the request; the
LLM is asked, in one batched call, only when several comparable catalogue models fit equally), `llm` (one batched
LLM call chooses for every task with more than one candidate) and `top` (the best-ranked card, no LLM). A task with
no candidate fails with what would serve it (`coverage.what_would_serve`).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from .catalog import ModelCatalog
from .coverage import what_would_serve
from .errors import LLMError
from .jsontext import JSONNotFound, extract_json
from .llm.protocol import LLM, Message
from .prompts import render
from .types import MEDIA, ModelCard, Selection, Task, arg_modality

STRATEGIES = ("fit", "llm", "top")
# backends whose cards are catalogue (Hub) models: several of them for one task are comparable, so a tie among
# them may go to the LLM; embedded and LLM-served experts are told apart by their cards
_CATALOGUE_BACKENDS = {"transformers", "inference", "remote", "server"}
_CLAUSES = re.compile(r"(?<=[.;!?])\s+|,\s*(?:and\s+|then\s+)?|\s+(?:and then|then|and)\s+", re.IGNORECASE)


def _key(task: Task) -> str:
    return f"task_{task.id}"


def _asked(text: str, words: list[str]) -> str | None:
    """The first of `words` (a word or phrase, plurals included) that `text` says, or None."""
    lowered = text.lower()
    for word in words:
        if re.search(rf"\b{re.escape(word.lower())}(?:s|es)?\b", lowered):
            return word
    return None


def task_text(task: Task, request: str) -> str:
    """The part of the request a task does: its `step` when the plan has one, else the clauses of the request that
    name the task's input files (the whole request when none does), plus the task's own written-out text inputs."""
    texts = [v for k, v in task.args.items() if arg_modality(k) == "text" and "<resource>-" not in v]
    if task.step:
        return " ".join([task.step, *texts])
    files = [v for k, v in task.args.items() if arg_modality(k) in MEDIA]
    stems = {f.rsplit("/", 1)[-1].lower() for f in files} | {
        f.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower() for f in files
    }
    clauses = [c for c in _CLAUSES.split(request) if c and c.strip()]
    named = [c for c in clauses if any(len(s) >= 3 and s in c.lower() for s in stems) or any(f in c for f in files)]
    return " ".join([*(named or [request]), *texts])


@dataclass
class Fit:
    """How well a card fits a task: a score (higher is better) and the reason in words."""

    score: int
    reason: str


def fit(card: ModelCard, text: str) -> Fit:
    """A specialist fits (2) when the text asks for its specialty and fits last (-1) otherwise; a general model
    fits (0) unless the text asks for what it is not for."""
    if card.specialty:
        word = _asked(text, card.specialty)
        if word is not None:
            return Fit(2, f"asked for {word!r}, which this model is for")
        return Fit(-1, f"a {card.specialty[0]} model, and the request does not ask for that")
    if card.composed_from:
        return Fit(0, "composed from " + ", ".join(card.composed_from))
    return Fit(0, "a general model for the task")


def rank(cards: list[ModelCard], text: str) -> list[tuple[ModelCard, Fit]]:
    """Cards best first: by fit, then those using more of the given parameters, real models before composed ones,
    then downloads, likes and priority."""
    scored = [(card, fit(card, text)) for card in cards]
    scored.sort(
        key=lambda cf: (
            -cf[1].score,
            -len(cf[0].requires),
            bool(cf[0].composed_from),
            -cf[0].downloads,
            -cf[0].likes,
            -cf[0].priority,
            cf[0].id,
        )
    )
    return scored


def _tied(ranked: list[tuple[ModelCard, Fit]]) -> list[ModelCard]:
    """The comparable catalogue models that fit as well as the best one (more than one: the LLM chooses)."""
    best_card, best = ranked[0]
    if best_card.backend not in _CATALOGUE_BACKENDS:
        return []
    tied = [
        card
        for card, f in ranked
        if f.score == best.score and card.backend in _CATALOGUE_BACKENDS and card.requires == best_card.requires
    ]
    return tied if len(tied) > 1 else []


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
        self,
        catalog: ModelCatalog,
        llm: LLM | None,
        request: str,
        *,
        strategy: str = "fit",
        top_k: int = 5,
        routing: str = "hybrid",
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
        self.routing = routing
        self.selections: dict[int, Selection] = {}
        self._pending: list[tuple[Task, list[ModelCard], asyncio.Future[Selection]]] = []

    def submit(self, task: Task) -> asyncio.Future[Selection]:
        """A future for the task's selection: resolved now when no LLM is needed, else by `flush()`."""
        future: asyncio.Future[Selection] = asyncio.get_running_loop().create_future()
        candidates = self.catalog.candidates(task.task, None, task.args)
        if not candidates:
            reason = what_would_serve(task.task, self.catalog, routing=self.routing)
            self._resolve(future, Selection(task_id=task.id, model_id=None, reason=reason, strategy="none"))
            return future
        ranked = rank(candidates, task_text(task, self.request))
        best, best_fit = ranked[0]
        if len(ranked) == 1:
            self._resolve(future, _chosen(task, best, "the only available model", "single"))
        elif self.strategy == "top":
            self._resolve(future, _chosen(task, best, f"ranked first: {best_fit.reason}", "top"))
        elif self.strategy == "llm":
            self._pending.append((task, [card for card, _ in ranked[: self.top_k]], future))
        elif tied := _tied(ranked):
            self._pending.append((task, tied[: self.top_k], future))
        else:
            runner_up = ranked[1][1]
            why = best_fit.reason if best_fit.score > runner_up.score else f"{best_fit.reason}; ranked first"
            self._resolve(future, _chosen(task, best, why, "fit"))
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
                self._resolve(future, _chosen(task, candidates[0], f"{why}; using the best-ranked model", "top"))

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
