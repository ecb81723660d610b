"""How the planner's LLM writes a plan: JSON under a JSON schema, or a few lines of code under a grammar.

Both read back to the same raw tasks (`{"tasks": [{"step", "task", "id", "dep", "args"}]}`), which `rules` checks
and repairs into a `Plan`. The code costs about half the generated tokens of the JSON: a constrained decoder still
spends one step on every token the JSON's keys and brackets force, and the code has few of them.

    # count the objects in kite.jpg
    r0 = object_detection(image="kite.jpg")
    # read the text in sign.png
    r1 = image_to_text(image="sign.png")
    # read that text aloud
    r2 = text_to_speech(text=r1)

Each task is a comment (its `step`: the part of the request it does) and a call: task N's output is `rN`, the
task type is written as an identifier, each argument is a quoted string (a JSON string's escapes) or an earlier
`rN`. A plan with no task is the word `pass`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import PlanError
from ..jsontext import ArrayElementStream
from ..tasks import TaskTable
from ..types import MEDIA, arg_modality
from .references import references, short
from .rules import MAX_ARG_CHARS, MAX_TASKS, read_json
from .schema import plan_schema

NO_TASKS = "pass"
MAX_STEP_CHARS = 120
_MEDIA_CHARS = 200  # a file name or URL, as MEDIA_PATTERN allows it
_CALL = re.compile(r"r(\d+) = ([A-Za-z_]\w*)\((.*)\)")
_ARG = re.compile(r'(\w+)=("(?:[^"\\\n]|\\.)*"|r\d+)')


class Feeder(Protocol):
    """Takes a reply's text in chunks (`feed`) and then its end (`close`), giving each raw task once complete."""

    def feed(self, chunk: str) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...


class PlanSyntax(Protocol):
    """One way for the LLM to write a plan: how demos are shown, the decoding constraint, how a reply reads back."""

    name: str
    binds_files: bool  # whether `constraint` binds media arguments to the `files` it is given

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
        self,
        table: TaskTable,
        max_tasks: int = MAX_TASKS,
        *,
        at_least_one: bool = False,
        literal: bool = False,
        files: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for `LLM.complete` that bind the decoder to plans of `table` (one of `json_schema`,
        `grammar`). `at_least_one` refuses the empty plan; `literal` refuses `<resource>-N` in text arguments;
        `files` (the conversation's media files and URLs with their kinds) are the only ones an image, audio or
        video argument may name, where the syntax can bind that."""
        ...


class JsonSyntax:
    """`{"tasks": [...]}` under the ordered, typed JSON schema (`schema.plan_schema`)."""

    name = "json"
    binds_files = False

    def __init__(self, *, typed: bool = True, steps: bool = True, deps: bool = True, ordered: bool = True) -> None:
        self.options = {"typed": typed, "steps": steps, "deps": deps, "ordered": ordered}

    def show(self, tasks: list[dict[str, Any]]) -> str:
        return json.dumps({"tasks": tasks})

    def read(self, text: str) -> Any:
        return read_json(text)

    def stream(self) -> Feeder:
        return ArrayElementStream()

    def constraint(
        self,
        table: TaskTable,
        max_tasks: int = MAX_TASKS,
        *,
        at_least_one: bool = False,
        literal: bool = False,
        files: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """`files` is not bound here (a media argument is any file name or URL): the plan checks refuse those the
        conversation does not name."""
        options = self.options if not literal else {**self.options, "ordered": True}
        schema = plan_schema(table, max_tasks, literal=literal, **options)
        if at_least_one:
            tasks = schema["properties"]["tasks"]
            if "anyOf" in tasks:  # ordered: one form per plan length, the first the empty plan
                tasks["anyOf"] = tasks["anyOf"][1:]
            else:
                tasks["minItems"] = 1
        return {"json_schema": schema}


class CodeSyntax:
    """A plan as a few lines of call code (see the module's docstring) under a GBNF grammar (`grammar`), for
    backends that take one (llama.cpp). Task types are written as identifiers (`object_detection` for
    `object-detection`, `image_downloader` for "Image Downloader"), task N's output is the variable `rN`. The
    grammar is ordered and typed like the JSON schema: the task at place i is `ri`, its arguments can name `rk` for
    k < i only, and each type takes exactly its own keys, its inputs first and required."""

    name = "code"
    binds_files = True

    def __init__(self, table: TaskTable, *, steps: bool = True) -> None:
        self.steps = steps
        self.identifiers = identifiers(table.names())
        self._names = {ident: name for name, ident in self.identifiers.items()}

    def identifier(self, task: str) -> str:
        return self.identifiers.get(task) or _identifier(task)

    def show(self, tasks: list[dict[str, Any]]) -> str:
        if not tasks:
            return NO_TASKS
        return "\n".join(self._call(position, task) for position, task in enumerate(tasks))

    def _call(self, position: int, task: dict[str, Any]) -> str:
        args = ", ".join(f"{key}={_shown_value(str(value))}" for key, value in task["args"].items())
        step = task.get("step") if self.steps else None
        comment = f"# {_one_line(str(step))}\n" if step else ""
        return f"{comment}r{task.get('id', position)} = {self.identifier(task['task'])}({args})"

    def read(self, text: str) -> Any:
        reader = CodeStream(self._names)
        tasks = reader.feed(text, strict=True) + reader.close(strict=True)
        return {"tasks": tasks}

    def stream(self) -> Feeder:
        return CodeStream(self._names)

    def constraint(
        self,
        table: TaskTable,
        max_tasks: int = MAX_TASKS,
        *,
        at_least_one: bool = False,
        literal: bool = False,
        files: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any]:
        grammar = plan_grammar(
            table, max_tasks, self.identifier, steps=self.steps, at_least_one=at_least_one, literal=literal, files=files
        )
        return {"grammar": grammar}


def identifiers(names: list[str]) -> dict[str, str]:
    """Each task type's name as an identifier, distinct within `names`: lower case, runs of other characters as
    one `_`, `t_` before a leading digit, `_2`, `_3` ... after a repeat."""
    taken: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = _identifier(name)
        ident, n = base, 1
        while ident in used or ident == NO_TASKS:
            n += 1
            ident = f"{base}_{n}"
        used.add(ident)
        taken[name] = ident
    return taken


def _identifier(name: str) -> str:
    ident = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "task"
    return f"t_{ident}" if ident[0].isdigit() else ident


def _shown_value(value: str) -> str:
    """An argument as code: `rN` for exactly `<resource>-N`, else a quoted string."""
    ref = re.fullmatch(r"<resource>-(\d+)", value)
    return f"r{ref.group(1)}" if ref else json.dumps(value, ensure_ascii=False)


def _one_line(step: str) -> str:
    """A demo's step as a comment can hold it: one line, at most MAX_STEP_CHARS."""
    return " ".join(step.split())[:MAX_STEP_CHARS]


def read_call(line: str, names: dict[str, str] | None = None, number: int = 1) -> dict[str, Any]:
    """One `rN = type(key=value, ...)` line as a raw task (no step); PlanError saying what is wrong with it.
    `names` maps identifiers back to task type names (an unknown one is kept for the plan check to name)."""
    match = _CALL.fullmatch(line.strip())
    if match is None:
        raise PlanError(f'line {number} is not `rN = task(key="value", ...)` or a `# step` comment: {short(line, 120)}')
    task_id, ident, body = match.groups()
    args: dict[str, str] = {}
    at = 0
    while at < len(body):
        arg = _ARG.match(body, at)
        if arg is None:
            raise PlanError(f'line {number}: the arguments must be key="value" or key=rN, got {body[at:][:80]!r}')
        key, value = arg.group(1), arg.group(2)
        if key in args:
            raise PlanError(f"line {number}: argument {key!r} is given twice")
        if value.startswith('"'):
            try:
                args[key] = json.loads(value)
            except json.JSONDecodeError:
                raise PlanError(f"line {number}: argument {key!r} has a bad escape: {value[:80]!r}") from None
        else:
            args[key] = f"<resource>-{value[1:]}"
        at = arg.end()
        if at < len(body):
            if not body.startswith(", ", at):
                raise PlanError(f"line {number}: expected ', ' between arguments, got {body[at:][:80]!r}")
            at += 2
    dep = sorted({n for value in args.values() for n in references(value)})
    task = (names or {}).get(ident, ident)
    return {"task": task, "id": int(task_id), "dep": dep, "args": args}


class CodeStream:
    """Feed a plan in code in chunks; get each task back once its call's line has ended, with the step of the
    comment before it. `close()` gives the last call (a reply need not end with a line break). While streaming,
    lines that do not read are skipped (the whole reply's check names them); `strict=True` raises on them."""

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self._names = names or {}
        self._buffer = ""
        self._step: str | None = None
        self._line = 0

    def feed(self, chunk: str, *, strict: bool = False) -> list[dict[str, Any]]:
        self._buffer += chunk
        *done, self._buffer = self._buffer.split("\n")
        return self._read(done, strict)

    def close(self, *, strict: bool = False) -> list[dict[str, Any]]:
        rest, self._buffer = self._buffer, ""
        return self._read([rest], strict)

    def _read(self, lines: list[str], strict: bool) -> list[dict[str, Any]]:
        tasks = []
        for line in lines:
            self._line += 1
            text = line.strip()
            if not text or text == NO_TASKS:
                continue
            if text.startswith("#"):
                self._step = text[1:].strip()
                continue
            try:
                raw = read_call(text, self._names, self._line)
            except PlanError:
                if strict:
                    raise
                continue
            step, self._step = self._step, None
            tasks.append({"step": step, **raw} if step else raw)
        return tasks


def plan_grammar(
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    identifier: Callable[[str], str] = _identifier,
    *,
    steps: bool = True,
    at_least_one: bool = False,
    literal: bool = False,
    files: Mapping[str, str | None] | None = None,
) -> str:
    """The GBNF grammar of plans in code for `table` with at most `max_tasks` tasks (see `CodeSyntax`);
    `identifier` writes a task type's name. With `files` (the conversation's files and URLs, each with its kind:
    image, audio, video, or None for a URL of no known kind), an image, audio or video argument names one of those
    of its kind or an earlier `rN`, and a task type whose input has neither cannot be written there."""
    if max_tasks < 1:
        raise ValueError("a plan grammar needs room for at least one task")
    rules: dict[str, str] = {}
    media = _media_rules(files, rules)
    length = max_tasks
    for i in range(max_tasks):
        calls = []
        for j, task_type in enumerate(table):
            values = {key: _value_rule(key, i, literal, media) for key in task_type.arg_keys}
            if any(values[key] is None for key in task_type.inputs):
                continue
            required = [f'"{key}=" {values[key]}' for key in task_type.inputs]
            optional = [
                f'"{key}=" {values[key]}'
                for key in task_type.arg_keys
                if key not in task_type.inputs and values[key] is not None
            ]
            rules[f"c{i}-{j}"] = f'"{identifier(task_type.name)}(" {_arg_list(required, optional)} ")"'
            calls.append(f"c{i}-{j}")
        if not calls:  # no task can come at this place (none can read the files there are): the plan ends before
            length = i
            break
        step = '"# " step "\\n" ' if steps else ""
        rules[f"t{i}"] = f'{step}"r{i} = " ({" | ".join(calls)})'
        if i:
            rules[f"ref{i}"] = " | ".join(f'"r{k}"' for k in range(i))
            rules[f"text{i}"] = f"ref{i} | text0"
    for i in range(length):
        rules[f"p{i}"] = f't{i} ("\\n" p{i + 1})?' if i + 1 < length else f"t{i}"
    if length == 0 and at_least_one:  # no plan fits the files: leave the files free, for the checks to say why
        return plan_grammar(table, max_tasks, identifier, steps=steps, at_least_one=True, literal=literal)
    root = ["p0"] if length else []
    rules = {"root": " | ".join(root if at_least_one else [f'"{NO_TASKS}"', *root]), **rules}
    rules["text0"] = f'"\\"" tchar{{0,{MAX_ARG_CHARS}}} "\\""'
    rules["tchar"] = '[^"\\\\\\n\\r] | "\\\\" ["\\\\/nrt]'
    rules["literal0"] = f'"\\"" [^<"\\\\\\n\\r\\t]{{1,{MAX_ARG_CHARS}}} "\\""'
    if steps:
        rules["step"] = f"[^\\n\\r]{{1,{MAX_STEP_CHARS}}}"
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


def _media_rules(files: Mapping[str, str | None] | None, rules: dict[str, str]) -> dict[str, str | None]:
    """Add the rules of what an image, audio or video argument may name besides `rN`: any file name or URL
    (`files` None), or one of `files` of that kind; give each kind's rule name (None: nothing of that kind)."""
    if files is None:
        rules["media0"] = f'"\\"" [^<>"\\\\\\n\\r\\t]{{1,{_MEDIA_CHARS}}} "\\""'
        return dict.fromkeys(MEDIA, "media0")
    kinds: dict[str, str | None] = {}
    for kind in MEDIA:
        names = sorted(name for name, of in files.items() if of in (kind, None))
        if names:
            quoted = (json.dumps(json.dumps(name, ensure_ascii=False), ensure_ascii=False) for name in names)
            rules[f"{kind}0"] = " | ".join(quoted)
        kinds[kind] = f"{kind}0" if names else None
    return kinds


def _value_rule(key: str, position: int, literal: bool, media: dict[str, str | None]) -> str | None:
    """The rule of `key`'s value at `position`; None when nothing can be written there."""
    kind = arg_modality(key)
    if kind in MEDIA:
        alternatives = [f"ref{position}"] if position else []
        alternatives += [media[kind]] if media[kind] else []
        return f"({' | '.join(alternatives)})" if alternatives else None
    return "literal0" if literal else f"text{position}"


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


def syntax_for(name: str, llm: Any, table: TaskTable, **options: Any) -> PlanSyntax:
    """The plan syntax `name` asks for, for plans of `table`: `json`, or `code` where `llm` takes a grammar (its
    `accepts_grammar` set; JSON otherwise). `options`: `steps`, and for JSON `typed`, `deps`, `ordered`."""
    if name == "code" and getattr(llm, "accepts_grammar", False):
        return CodeSyntax(table, steps=options.get("steps", True))
    if name in ("code", "json"):
        return JsonSyntax(**options)
    raise ValueError(f"unknown plan syntax {name!r}: expected json or code")
