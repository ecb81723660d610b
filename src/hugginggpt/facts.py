"""What each task of a run did, in short plain words: the facts the answer, its account and its check are built on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, Field

from .tasks import DEFAULT_TASK_TYPES, TaskTable
from .types import MEDIA, Artifact, Selection, Task, TaskResult, arg_modality

RESULT_CHARS = 600  # of a task's text result shown to the response LLM
ARG_CHARS = 80  # of a text argument in a task's description
TOP_LABELS = 3
NOUNS = {"image": "image", "audio": "audio", "video": "video", "text": "text file"}

_RESOURCE = re.compile(r"^<resource>-(\d+)$")
_INLINE_RESOURCE = re.compile(r"<resource>-(\d+)")


class TaskFacts(BaseModel):
    """One task's outcome in short: what it was, its status, its human-readable result and what it produced.

    `result` never holds raw boxes, score lists or long JSON: only the expert's `text` output (trimmed) and a few
    key fields (object counts, top labels, an answer, a duration)."""

    id: int
    task: str
    what: str = Field(description="the task in plain words, e.g. 'object detection on a.jpg'")
    status: str
    model_id: str | None = None
    seconds: float | None = None
    result: str = ""
    produced: list[Artifact] = Field(default_factory=list)
    error: str | None = None
    makes: list[str] = Field(default_factory=list, description="the media the task type produces (image/audio/video)")
    counts: dict[str, int] = Field(default_factory=dict, description="objects found, per label (detection)")
    final: bool = Field(False, description="no other task of the plan uses its output: it is for the user")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def kinds(self) -> list[str]:
        """The kinds of file produced, e.g. ['image'], without paths."""
        return [artifact.modality for artifact in self.produced]


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _describe_arg(key: str, value: str) -> str:
    if match := _RESOURCE.match(value.strip()):
        return f"the result of task {match.group(1)}"
    modality = arg_modality(key)
    if modality in MEDIA or (modality is None and ("/" in value or "\\" in value)):
        return PurePath(value).name or value
    text = _INLINE_RESOURCE.sub(lambda m: f"(the result of task {m.group(1)})", value)
    return '"' + _shorten(text, ARG_CHARS) + '"'


def describe(task: Task) -> str:
    """'object detection on a.jpg', 'translation of "good morning" (tgt_lang: French)'."""
    name = task.task.replace("-", " ")
    media = [_describe_arg(k, v) for k, v in task.args.items() if arg_modality(k) in MEDIA]
    texts = [_describe_arg(k, v) for k, v in task.args.items() if arg_modality(k) == "text"]
    params = [f"{k}: {_shorten(v, ARG_CHARS)}" for k, v in task.args.items() if arg_modality(k) is None]
    parts = [name]
    if media:
        parts.append("on " + " and ".join(media))
    if texts:
        parts.append(("with " if media else "of ") + " and ".join(texts))
    if params:
        parts.append("(" + ", ".join(params) + ")")
    return " ".join(parts)


def _labels(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return None
    shown = []
    for item in value[:TOP_LABELS]:
        if isinstance(item, dict) and "label" in item:
            score = item.get("score")
            shown.append(f"{item['label']} ({score:.2f})" if isinstance(score, int | float) else str(item["label"]))
        elif isinstance(item, str | int | float):
            shown.append(str(item))
    return ", ".join(shown) or None


def key_fields(data: dict[str, Any], text: str) -> list[str]:
    """The few fields of an expert's JSON output worth a sentence: counts, top labels, an answer, a duration."""
    fields = []
    counts = data.get("counts")
    if isinstance(counts, dict) and counts and not text:
        fields.append(", ".join(f"{n} {label}" for label, n in counts.items()))
    labels = _labels(data.get("labels"))
    if labels and labels != text:
        fields.append(f"top labels: {labels}")
    answer = data.get("answer")
    if isinstance(answer, str | int | float) and str(answer) != text:
        fields.append(f"answer: {answer}")
    for key in ("similarity", "score"):
        if isinstance(data.get(key), int | float) and not text:
            fields.append(f"{key}: {data[key]}")
            break
    for key in ("seconds", "duration"):
        if isinstance(data.get(key), int | float):
            fields.append(f"{data[key]} s long")
            break
    return fields


def object_counts(result: TaskResult) -> dict[str, int]:
    """Objects found per label, from a detector's JSON (`counts`, or `objects` with labels); {} for other tasks."""
    data = result.outputs.get("json")
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("counts"), dict):
        return {str(k): int(v) for k, v in data["counts"].items() if isinstance(v, int | float)}
    counts: dict[str, int] = {}
    for item in data.get("objects") or []:
        if isinstance(item, dict) and "label" in item:
            counts[str(item["label"])] = counts.get(str(item["label"]), 0) + 1
    return counts


def total_counts(facts: Sequence[TaskFacts]) -> dict[str, int]:
    """Objects per label summed over the tasks that counted objects, most first."""
    total: dict[str, int] = {}
    for fact in facts:
        for label, n in fact.counts.items():
            total[label] = total.get(label, 0) + n
    return dict(sorted(total.items(), key=lambda item: -item[1]))


def short_result(result: TaskResult, limit: int = RESULT_CHARS) -> str:
    """A task's result in plain words: its text output (trimmed) and key fields; '' when it has none."""
    text = result.outputs.get("text")
    text = _shorten(text, limit) if isinstance(text, str) else ""
    parts = [text] if text else []
    for key, value in result.outputs.items():
        if key == "json" and isinstance(value, dict):
            parts += key_fields(value, text)
        elif key != "text" and isinstance(value, str) and arg_modality(key) == "text":
            parts.append(_shorten(value, limit // 2))
    return "; ".join(parts)


def task_facts(
    tasks: Sequence[Task],
    selections: Sequence[Selection],
    results: Sequence[TaskResult],
    table: TaskTable | None = None,
) -> list[TaskFacts]:
    """The facts of each planned task, in plan order."""
    table = table or TaskTable(DEFAULT_TASK_TYPES)
    chosen = {s.task_id: s for s in selections}
    by_id = {r.task_id: r for r in results}
    used = {dep for task in tasks for dep in task.dep}
    facts = []
    for task in tasks:
        result = by_id.get(task.id)
        selection = chosen.get(task.id)
        task_type = table.resolve(task.task)
        makes = [m for m in MEDIA if task_type and any(arg_modality(o) == m for o in task_type.outputs)]
        model_id = (result.model_id if result else None) or (selection.model_id if selection else None)
        facts.append(
            TaskFacts(
                id=task.id,
                task=task.task,
                what=describe(task),
                status=result.status if result else "not run",
                model_id=model_id,
                seconds=round(result.seconds, 2) if result and result.seconds is not None else None,
                result=short_result(result) if result and result.status == "ok" else "",
                produced=result.artifacts() if result and result.status == "ok" else [],
                error=(result.error if result else None) or (None if model_id or not selection else selection.reason),
                makes=makes,
                counts=object_counts(result) if result and result.status == "ok" else {},
                final=task.id not in used,
            )
        )
    return facts


def a_kind(kind: str) -> str:
    """'an image', 'audio', 'a video'."""
    noun = NOUNS.get(kind, kind)
    return noun if noun == "audio" else ("an " if noun[0] in "aeiou" else "a ") + noun
