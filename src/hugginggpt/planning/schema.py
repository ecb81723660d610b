"""The JSON schema of a plan, for LLMs that decode constrained to one: task names, argument keys, bounded sizes."""

from __future__ import annotations

from typing import Any

from ..tasks import TaskTable
from ..types import MEDIA, arg_modality
from .references import MEDIA_PATTERN
from .rules import MAX_ARG_CHARS, MAX_TASKS

_MEDIA_VALUE = r'[^<>"\\\n\r\t]{1,200}'  # a file name or URL, as MEDIA_PATTERN allows it
# Text with no `<resource>-N` in it: no `<` (and, as any pattern must for valid JSON, no quote or backslash).
_LITERAL_TEXT = rf'^[^<"\\\n\r\t]{{1,{MAX_ARG_CHARS}}}$'


def plan_schema(
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    *,
    typed: bool = False,
    steps: bool = False,
    deps: bool = True,
    ordered: bool = False,
    literal: bool = False,
) -> dict[str, Any]:
    """JSON schema for a plan: task names as an enum, argument keys as known properties, bounded sizes.

    With `typed=True` each task type gets its own branch (`anyOf`) whose args are exactly its own keys, with its
    inputs required, so a constrained decoder cannot write an argument the chosen task does not take. With
    `steps=True` each task starts with a `step`: the part of the request it does, in the user's words. With
    `deps=False` a task has no `dep` list: the dependencies are the tasks its `<resource>-N` arguments name, which
    is what validation keeps of a `dep` anyway.

    With `ordered=True` the schema knows each task's place: the task at position i has id i, and its `dep` and
    media arguments can name only tasks 0..i-1 (one tuple per plan length, tasks in `$defs`), so a decoder bound
    to it cannot write a task that uses itself or a later task. With `literal=True` (for the single task of the
    fallback) no text argument may hold `<resource>-N` either.
    """
    keys: list[str] = []
    for task_type in table:
        keys.extend(k for k in task_type.arg_keys if k not in keys)
    if not ordered:
        tasks: dict[str, Any] = {
            "type": "array",
            "items": _items(table, keys, typed, steps, deps, literal=literal),
            "maxItems": max_tasks,
        }
        return _plan(tasks)
    defs = {f"task-{i}": _items(table, keys, typed, steps, deps, i, literal) for i in range(max_tasks)}
    lengths = [
        {
            "type": "array",
            "prefixItems": [{"$ref": f"#/$defs/task-{i}"} for i in range(n)],
            "minItems": n,
            "maxItems": n,
        }
        for n in range(max_tasks + 1)
    ]
    return {**_plan({"anyOf": lengths}), "$defs": defs}


def _plan(tasks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"tasks": tasks}, "required": ["tasks"], "additionalProperties": False}


def _items(
    table: TaskTable,
    keys: list[str],
    typed: bool,
    steps: bool,
    deps: bool,
    position: int | None = None,
    literal: bool = False,
) -> dict[str, Any]:
    if typed:
        return {"anyOf": [_task_schema([t.name], t.arg_keys, t.inputs, steps, deps, position, literal) for t in table]}
    return _task_schema(table.names(), keys, [], steps, deps, position, literal)


def _task_schema(
    names: list[str],
    keys: list[str],
    required: list[str],
    steps: bool = False,
    deps: bool = True,
    position: int | None = None,
    literal: bool = False,
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "type": "object",
        "properties": {k: _arg_schema(k, position, literal) for k in keys},
        "additionalProperties": False,
    }
    if required:
        args["required"] = required
    properties: dict[str, Any] = {"step": {"type": "string", "maxLength": 120}} if steps else {}
    task_id: dict[str, Any] = (
        {"type": "integer", "minimum": 0, "maximum": 99} if position is None else {"const": position}
    )
    properties |= {"task": {"type": "string", "enum": names}, "id": task_id}
    if deps:
        if position is None:
            dep: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 99}
            properties["dep"] = {"type": "array", "items": dep, "maxItems": 4}
        elif position == 0:
            properties["dep"] = {"type": "array", "prefixItems": [], "maxItems": 0}
        else:
            dep = {"type": "integer", "enum": list(range(position))}
            properties["dep"] = {"type": "array", "items": dep, "maxItems": min(4, position)}
    properties["args"] = args
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _arg_schema(key: str, position: int | None = None, literal: bool = False) -> dict[str, Any]:
    if arg_modality(key) == "text" and literal:
        return {"type": "string", "pattern": _LITERAL_TEXT}
    if arg_modality(key) not in MEDIA:
        return {"type": "string", "maxLength": MAX_ARG_CHARS}
    if position is None:
        return {"type": "string", "pattern": MEDIA_PATTERN}
    if position == 0:  # nothing before it to refer to: a file name or URL
        return {"type": "string", "pattern": f"^{_MEDIA_VALUE}$"}
    earlier = "|".join(str(i) for i in range(position))
    return {"type": "string", "pattern": f"^(<resource>-({earlier})|{_MEDIA_VALUE})$"}
