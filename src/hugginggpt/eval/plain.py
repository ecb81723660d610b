"""A plain planning baseline for `eval taskbench`, so every report can set our planner against it.

`PlainPlanner` asks the LLM once, with a short prompt in our own words (`prompts/plain_planning.j2`: the tool list,
five rules, three generic demos) and the same schema-constrained greedy decoding as our planner, and takes the reply
as written: no repair call, no salvage, no streaming, none of our plan checks. A reply that is not JSON, does not
match the schema or was cut off raises `PlanError`, which `runner.predict` records as an unparsed row. Nothing in the
pipeline uses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import PlanError
from ..llm.protocol import LLM, Message
from ..planning.rules import MAX_TASKS
from ..planning.schema import plan_schema
from ..prompts import render
from ..tasks import TaskTable
from ..types import Plan, Task

PROMPT = "plain_planning.j2"
NO_DEPENDENCY = -1  # TaskBench's `"dep": [-1]`: a task that depends on no other task


def plain_schema(table: TaskTable, max_tasks: int = MAX_TASKS) -> dict[str, Any]:
    """Our planner's schema (tool names as an enum, each tool's own argument keys) with `task`, `id`, `dep` and
    `args` and no `step`, where `dep` may hold -1."""
    schema = plan_schema(table, max_tasks, typed=True, steps=False, deps=True)
    for branch in schema["properties"]["tasks"]["items"]["anyOf"]:
        branch["properties"]["dep"]["items"]["minimum"] = NO_DEPENDENCY
    return schema


class PlainPlanner:
    """One LLM call per request: the plain prompt, the request, the plan schema; the reply read as it is."""

    name = "plain"

    def __init__(self, llm: LLM, table: TaskTable, *, max_tasks: int = MAX_TASKS, max_tokens: int = 1024) -> None:
        self.llm = llm
        self.table = table
        self.max_tokens = max_tokens
        self.schema = plain_schema(table, max_tasks)
        self.system = render(PROMPT, tools=list(table))

    def messages(self, request: str) -> list[Message]:
        return [Message(role="system", content=self.system), Message(role="user", content=request)]

    async def plan(self, request: str, *, llm: LLM | None = None) -> Plan:
        """Plan `request` with greedy decoding; `PlanError` when the reply is cut off or does not validate."""
        completion = await (llm or self.llm).complete(
            self.messages(request), json_schema=self.schema, max_tokens=self.max_tokens, temperature=0.0
        )
        if completion.finish_reason == "length":
            raise PlanError("the plan was cut off at the token limit")
        return read_plan(completion.text, self.schema)


def read_plan(text: str, schema: dict[str, Any]) -> Plan:
    """The plan of a reply that is JSON matching `schema`, with -1 taken out of each `dep`; else `PlanError`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"the reply is not JSON ({exc})") from None
    problem = schema_error(value, schema)
    if problem is not None:
        raise PlanError(f"the reply does not match the schema: {problem}")
    tasks = [
        Task(id=t["id"], task=t["task"], dep=[d for d in t["dep"] if d != NO_DEPENDENCY], args=t["args"])
        for t in value["tasks"]
    ]
    return Plan(tasks=tasks)


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def schema_error(value: Any, schema: dict[str, Any], where: str = "reply") -> str | None:
    """Why `value` does not match `schema`, or None when it does. Covers the keywords the plan schemas use
    (type, enum, anyOf, properties, required, additionalProperties, items, min/maxItems, minimum, maximum,
    maxLength, pattern)."""
    if "anyOf" in schema:
        found = [schema_error(value, branch, where) for branch in schema["anyOf"]]
        errors = [e for e in found if e is not None]
        if len(errors) < len(found):
            return None
        # the closest branch: the one that failed deepest, and past its enum (the task name) where that ties
        closest = max(errors, key=lambda e: (len(e.split(":", 1)[0]), "is not one of" not in e))
        return f"{where} matches none of the {len(errors)} forms (closest: {closest})"
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return f"{where}: {json.dumps(value)[:60]} is not of type {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {json.dumps(value)[:60]} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return f"{where}: {json.dumps(value)[:60]} does not match {schema['pattern']}"
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: {value} is below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: {value} is above {schema['maximum']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where}: more than {schema['maxItems']} items"
        if "items" in schema:
            for i, item in enumerate(value):
                if (error := schema_error(item, schema["items"], f"{where}[{i}]")) is not None:
                    return error
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        missing = [key for key in schema.get("required", []) if key not in value]
        if missing:
            return f"{where}: missing {', '.join(missing)}"
        if schema.get("additionalProperties") is False and (extra := [k for k in value if k not in properties]):
            return f"{where}: unknown key {', '.join(map(str, extra))}"
        for key, sub in properties.items():
            if key in value and (error := schema_error(value[key], sub, f"{where}.{key}")) is not None:
                return error
    return None
