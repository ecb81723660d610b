"""The JSON schema of a plan, for LLMs that decode constrained to one: task names, argument keys, bounded sizes."""

from __future__ import annotations

from typing import Any

from ..tasks import TaskTable
from ..types import arg_modality
from .references import MEDIA_PATTERN
from .rules import MAX_ARG_CHARS, MAX_TASKS


def plan_schema(
    table: TaskTable, max_tasks: int = MAX_TASKS, *, typed: bool = False, steps: bool = False, deps: bool = True
) -> dict[str, Any]:
    """JSON schema for a plan: task names as an enum, argument keys as known properties, bounded sizes.

    With `typed=True` each task type gets its own branch (`anyOf`) whose args are exactly its own keys, with its
    inputs required, so a constrained decoder cannot write an argument the chosen task does not take. With
    `steps=True` each task starts with a `step`: the part of the request it does, in the user's words. With
    `deps=False` a task has no `dep` list: the dependencies are the tasks its `<resource>-N` arguments name, which
    is what validation keeps of a `dep` anyway.
    """
    keys: list[str] = []
    for task_type in table:
        keys.extend(k for k in task_type.arg_keys if k not in keys)
    if typed:
        items: dict[str, Any] = {"anyOf": [_task_schema([t.name], t.arg_keys, t.inputs, steps, deps) for t in table]}
    else:
        items = _task_schema(table.names(), keys, [], steps, deps)
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": items, "maxItems": max_tasks}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def _task_schema(
    names: list[str], keys: list[str], required: list[str], steps: bool = False, deps: bool = True
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "type": "object",
        "properties": {k: _arg_schema(k) for k in keys},
        "additionalProperties": False,
    }
    if required:
        args["required"] = required
    properties: dict[str, Any] = {"step": {"type": "string", "maxLength": 120}} if steps else {}
    properties |= {"task": {"type": "string", "enum": names}, "id": {"type": "integer", "minimum": 0, "maximum": 99}}
    if deps:
        properties["dep"] = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "maxItems": 4}
    properties["args"] = args
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _arg_schema(key: str) -> dict[str, Any]:
    if arg_modality(key) in ("image", "audio", "video"):
        return {"type": "string", "pattern": MEDIA_PATTERN}
    return {"type": "string", "maxLength": MAX_ARG_CHARS}
