"""How the planner's LLM writes a plan: JSON under a JSON schema, or one short line per task under a grammar.

Both read back to the same raw tasks (`{"tasks": [{"step", "task", "id", "dep", "args"}]}`), which `rules` checks
and repairs into a `Plan`. The line syntax costs about half the generated tokens of the JSON: a constrained decoder
still spends one step on every token the JSON's keys and brackets force, and lines have almost none of them.

    0 count the objects in kite.jpg: object-detection(image="kite.jpg")
    1 read the text in sign.png: image-to-text(image="sign.png")
    2 read that text aloud: text-to-speech(text="<resource>-1")

A line is the task's id (its place, from 0), the `step` (the part of the request it does; no colon), the task
type and its arguments as `key="value"` (a JSON string's escapes). A plan with no task is the word `none`.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Protocol

from ..errors import PlanError
from ..jsontext import ArrayElementStream, JSONNotFound, extract_json
from ..tasks import TaskTable
from ..types import arg_modality
from .references import references
from .rules import MAX_ARG_CHARS, MAX_TASKS
from .schema import plan_schema

NO_TASKS = "none"
MAX_STEP_CHARS = 120
_MEDIA_CHARS = 200  # a file name or URL, as MEDIA_PATTERN allows it
_LINE = re.compile(r"(\d+) (?:([^:\n]*): )?([^(\n]+)\((.*)\)")
_ARG = re.compile(r'(\w+)="((?:[^"\\\n]|\\.)*)"')


class Feeder(Protocol):
    def feed(self, chunk: str) -> list[dict[str, Any]]: ...


class PlanSyntax(Protocol):
    """One way for the LLM to write a plan: how demos are shown, the decoding constraint, how a reply reads back."""

    name: str

    def show(self, tasks: list[dict[str, Any]]) -> str:
        """Raw tasks (`step` first where there is one) as the model must write them."""
        ...

    def read(self, text: str) -> Any:
        """A reply as raw JSON (`{"tasks": [...]}`); PlanError when it cannot be read."""
        ...

    def stream(self) -> Feeder:
        """Something to feed the reply's text to, giving each raw task once it is complete."""
        ...

    def constraint(
        self, table: TaskTable, max_tasks: int = MAX_TASKS, *, at_least_one: bool = False, literal: bool = False
    ) -> dict[str, Any]:
        """Keyword arguments for `LLM.complete` that bind the decoder to plans of `table` (one of `json_schema`,
        `grammar`). `at_least_one` refuses the empty plan; `literal` refuses `<resource>-N` in text arguments."""
        ...


class JsonSyntax:
    """`{"tasks": [...]}` under the ordered, typed JSON schema (`schema.plan_schema`)."""

    name = "json"

    def __init__(self, *, typed: bool = True, steps: bool = True, deps: bool = True, ordered: bool = True) -> None:
        self.options = {"typed": typed, "steps": steps, "deps": deps, "ordered": ordered}

    def show(self, tasks: list[dict[str, Any]]) -> str:
        return json.dumps({"tasks": tasks})

    def read(self, text: str) -> Any:
        try:
            return extract_json(text)
        except JSONNotFound as exc:
            raise PlanError(str(exc)) from None

    def stream(self) -> Feeder:
        return ArrayElementStream()

    def constraint(
        self, table: TaskTable, max_tasks: int = MAX_TASKS, *, at_least_one: bool = False, literal: bool = False
    ) -> dict[str, Any]:
        options = self.options if not literal else {**self.options, "ordered": True}
        schema = plan_schema(table, max_tasks, literal=literal, **options)
        if at_least_one:
            tasks = schema["properties"]["tasks"]
            if "anyOf" in tasks:  # ordered: one form per plan length, the first the empty plan
                tasks["anyOf"] = tasks["anyOf"][1:]
            else:
                tasks["minItems"] = 1
        return {"json_schema": schema}


class LineSyntax:
    """One line per task (see the module's docstring) under a GBNF grammar (`grammar`), for backends that take
    one (llama.cpp). The grammar is ordered and typed like the JSON schema: the task at place i has id i, its
    media arguments name a file or `<resource>-k` for k < i only, and each type takes exactly its own keys, its
    inputs first and required."""

    name = "lines"

    def __init__(self, *, steps: bool = True) -> None:
        self.steps = steps

    def show(self, tasks: list[dict[str, Any]]) -> str:
        if not tasks:
            return NO_TASKS
        return "\n".join(self._line(position, task) for position, task in enumerate(tasks))

    def _line(self, position: int, task: dict[str, Any]) -> str:
        args = ", ".join(f"{key}={json.dumps(str(value), ensure_ascii=False)}" for key, value in task["args"].items())
        step = task.get("step") if self.steps else None
        head = f"{task.get('id', position)} " + (f"{_one_line(str(step))}: " if step else "")
        return f"{head}{task['task']}({args})"

    def read(self, text: str) -> Any:
        lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
        if lines in ([], [NO_TASKS]):
            return {"tasks": []}
        return {"tasks": [read_line(line, n) for n, line in enumerate(lines, 1)]}

    def stream(self) -> Feeder:
        return LineStream()

    def constraint(
        self, table: TaskTable, max_tasks: int = MAX_TASKS, *, at_least_one: bool = False, literal: bool = False
    ) -> dict[str, Any]:
        return {"grammar": plan_grammar(table, max_tasks, steps=self.steps, at_least_one=at_least_one, literal=literal)}


def _one_line(step: str) -> str:
    """A demo's step as a line can hold it: no colon, no line break, at most MAX_STEP_CHARS."""
    return " ".join(re.sub(r"[:\n\r]", " ", step).split())[:MAX_STEP_CHARS]


def read_line(line: str, number: int = 1) -> dict[str, Any]:
    """One line of the line syntax as a raw task; PlanError saying what is wrong with it."""
    match = _LINE.fullmatch(line.strip())
    if match is None:
        shown = line if len(line) <= 120 else line[:120] + "…"
        raise PlanError(f'line {number} is not `N step: task(key="value", ...)`: {shown!r}')
    task_id, step, task, body = match.groups()
    args: dict[str, str] = {}
    at = 0
    while at < len(body):
        arg = _ARG.match(body, at)
        if arg is None:
            raise PlanError(f'line {number}: the arguments must be key="value" pairs, got {body[at:][:80]!r}')
        key, value = arg.group(1), arg.group(2)
        if key in args:
            raise PlanError(f"line {number}: argument {key!r} is given twice")
        try:
            args[key] = json.loads(f'"{value}"')
        except json.JSONDecodeError:
            raise PlanError(f"line {number}: argument {key!r} has a bad escape: {value[:80]!r}") from None
        at = arg.end()
        if at < len(body):
            if not body.startswith(", ", at):
                raise PlanError(f"line {number}: expected ', ' between arguments, got {body[at:][:80]!r}")
            at += 2
    dep = sorted({n for value in args.values() for n in references(value)})
    raw: dict[str, Any] = {"task": task.strip(), "id": int(task_id), "dep": dep, "args": args}
    return {"step": step.strip(), **raw} if step is not None else raw


class LineStream:
    """Feed a line-syntax reply in chunks; get each task back once its line has ended. `close()` gives the last
    line's task (a reply need not end with a line break). Lines that do not read are skipped here: the whole
    reply's check names them."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        self._buffer += chunk
        *done, self._buffer = self._buffer.split("\n")
        return self._read(done)

    def close(self) -> list[dict[str, Any]]:
        rest, self._buffer = self._buffer, ""
        return self._read([rest])

    @staticmethod
    def _read(lines: list[str]) -> list[dict[str, Any]]:
        tasks = []
        for line in lines:
            if line.strip() and line.strip() != NO_TASKS:
                with contextlib.suppress(PlanError):
                    tasks.append(read_line(line))
        return tasks


def plan_grammar(
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    *,
    steps: bool = True,
    at_least_one: bool = False,
    literal: bool = False,
) -> str:
    """The GBNF grammar of line-syntax plans of `table` with at most `max_tasks` tasks (see `LineSyntax`)."""
    if max_tasks < 1:
        raise ValueError("a plan grammar needs room for at least one task")
    rules: dict[str, str] = {"root": "p0" if at_least_one else f'"{NO_TASKS}" | p0'}
    for i in range(max_tasks):
        rules[f"p{i}"] = f't{i} ("\\n" p{i + 1})?' if i + 1 < max_tasks else f"t{i}"
        calls = []
        for j, task_type in enumerate(table):
            name = f"c{i}-{j}"
            values = {key: _value_rule(key, i, literal) for key in task_type.arg_keys}
            required = [f'"{key}=" {values[key]}' for key in task_type.inputs]
            optional = [f'"{key}=" {values[key]}' for key in task_type.arg_keys if key not in task_type.inputs]
            rules[name] = f'{_gbnf_string(task_type.name + "(")} {_arg_list(required, optional)} ")"'
            calls.append(name)
        step = 'step ": " ' if steps else ""
        rules[f"t{i}"] = f'"{i} " {step}({" | ".join(calls)})'
        if i:
            earlier = " | ".join(f'"{k}"' for k in range(i))
            rules[f"media{i}"] = f'"\\"" ("<resource>-" ({earlier}) | media) "\\""'
    rules["media0"] = '"\\"" media "\\""'
    rules["media"] = f'[^<>"\\\\\\n\\r\\t]{{1,{_MEDIA_CHARS}}}'
    rules["text"] = f'"\\"" tchar{{0,{MAX_ARG_CHARS}}} "\\""'
    rules["tchar"] = '[^"\\\\\\n\\r] | "\\\\" ["\\\\/nrt]'
    rules["literal"] = f'"\\"" [^<"\\\\\\n\\r\\t]{{1,{MAX_ARG_CHARS}}} "\\""'
    if steps:
        rules["step"] = f"[^:\\n\\r]{{1,{MAX_STEP_CHARS}}}"
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


def _value_rule(key: str, position: int, literal: bool) -> str:
    if arg_modality(key) in ("image", "audio", "video"):
        return f"media{position}"
    return "literal" if literal else "text"


def _arg_list(required: list[str], optional: list[str]) -> str:
    """A GBNF sequence: every `required` item, then any of the `optional` ones in order, all ', '-separated."""
    tail = ""
    for item in reversed(optional):
        tail = f'(", " {item} {tail})?'
    if required:
        return " ".join([' ", " '.join(required), tail]).strip()
    if not optional:
        return ""
    # no required item: the first one written has no separator before it
    starts = []
    for k, item in enumerate(optional):
        rest = ""
        for later in reversed(optional[k + 1 :]):
            rest = f'(", " {later} {rest})?'
        starts.append(f"{item} {rest}".strip())
    return f"({' | '.join(starts)})?"


def _gbnf_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def syntax_for(name: str, llm: Any, **options: Any) -> PlanSyntax:
    """The plan syntax `name` asks for: `json`, `lines`, or `auto` (lines for an LLM that takes a grammar, its
    `accepts_grammar` set; JSON otherwise). `options`: `steps`, and for JSON `typed`, `deps`, `ordered`."""
    if name == "auto":
        name = "lines" if getattr(llm, "accepts_grammar", False) else "json"
    if name == "lines":
        return LineSyntax(steps=options.get("steps", True))
    if name == "json":
        return JsonSyntax(**options)
    raise ValueError(f"unknown plan syntax {name!r}: expected auto, json or lines")
