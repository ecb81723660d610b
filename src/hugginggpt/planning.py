"""Stage 1: turn a request (and chat history) into a validated task graph.

Builds the prompt (specification, few-shot demos, trimmed history, the task types available now), asks the LLM for
schema-constrained JSON, parses it (streamed, task by task), then validates and repairs it.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from .demos import DemoBank, fit_demos
from .errors import LLMError, PlanError
from .jsontext import ArrayElementStream, JSONNotFound, extract_json
from .llm.protocol import LLM, Message
from .prompts import load_demos, render
from .tasks import TaskTable, TaskType
from .types import Plan, Task, arg_modality

# `<resource>-3`, JARVIS's `<GENERATED>-3`, TaskBench's `<node-3>`, and loose variants like `<resource-3>`.
_PLACEHOLDER = re.compile(r"<\s*(?:resource|generated|node)\s*>?\s*-\s*(\d+)>?", re.IGNORECASE)
_BARE_PLACEHOLDER = re.compile(r"<\s*(?:resource|generated|node)\s*>(?!\s*-\s*\d)", re.IGNORECASE)
_RESOURCE = re.compile(r"<resource>-(\d+)")
# A URL's scheme (`https://`) and a file extension (`.jpg`), as the file and URL patterns below match them.
_SCHEME = r"[a-z][a-z0-9+.-]*://"
_EXTENSION = r"\.[A-Za-z0-9]{2,5}"
_FILE_OR_URL = re.compile(rf"^(?:{_SCHEME}\S+|[^\n]*{_EXTENSION}|<resource>-\d+)$", re.IGNORECASE)
_NAMED_FILE = re.compile(rf"(?:{_SCHEME})?[^\s'\"<>()\[\],;]+{_EXTENSION}\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|\band\b|\n)\s*")
_BRACKETED_FILE = re.compile(rf"<\s*((?:{_SCHEME})?[^<>\s]+{_EXTENSION})\s*>", re.IGNORECASE)
_URL = re.compile(rf"^{_SCHEME}\S+$", re.IGNORECASE)
# What a constrained decoder may write in a media argument: `<resource>-N`, or a file name or URL without `<>`.
MEDIA_PATTERN = r'^(<resource>-[0-9]{1,2}|[^<>"\\\n\r\t]{1,200})$'

_FILE_EXTENSIONS = {
    "image": {"jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "svg", "ico"},
    "audio": {"wav", "mp3", "flac", "ogg", "m4a", "aac", "wma", "aiff", "opus"},
    "video": {"mp4", "avi", "mov", "mkv", "webm", "flv", "wmv", "m4v", "mpg", "mpeg"},
    "text": {"txt", "md", "csv", "json", "html", "htm", "pdf", "doc", "docx", "rtf"},
}
_FILE_NAME = re.compile(rf"^(?:{_SCHEME})?[^\s'\"<>]+\.([A-Za-z0-9]{{2,5}})$", re.IGNORECASE)

MAX_TASKS = 8
MAX_ARG_CHARS = 400


def normalize_placeholders(value: str) -> str:
    """Rewrite every placeholder form to `<resource>-N` and unwrap file names in angle brackets; reject a
    placeholder without a number."""
    if _BARE_PLACEHOLDER.search(value):
        raise PlanError(f"placeholder without a task number in {value!r}; write <resource>-N")
    value = _BRACKETED_FILE.sub(lambda m: m.group(1), value)  # `<photo.jpg>` means photo.jpg
    return _PLACEHOLDER.sub(lambda m: f"<resource>-{int(m.group(1))}", value)


def file_kind(value: str) -> str | None:
    """image, audio, video or text (a document such as notes.md) when `value` is a single file name or URL with
    such an extension, else None."""
    match = _FILE_NAME.match(value)
    if match is None:
        return None
    extension = match.group(1).lower()
    return next((kind for kind, names in _FILE_EXTENSIONS.items() if extension in names), None)


def media_kind(value: str) -> str | None:
    """image, audio or video when `value` is a single file name or URL with such an extension, else None."""
    kind = file_kind(value)
    return None if kind == "text" else kind


def _reads_only(task_type: TaskType, modality: str) -> bool:
    return [arg_modality(k) for k in task_type.inputs] == [modality]


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def references(value: str) -> list[int]:
    return [int(n) for n in _RESOURCE.findall(value)]


def _only_reference(value: str) -> int | None:
    """N when `value` is exactly `<resource>-N`."""
    match = _RESOURCE.fullmatch(value.strip())
    return int(match.group(1)) if match else None


def _compares_with_itself(task_type: TaskType, args: dict[str, str]) -> bool:
    """Whether two text inputs of the task are the same written-out text (not task outputs): a comparison of a
    text with itself, which no one asks for."""
    texts = [args[k].strip() for k in task_type.inputs if arg_modality(k) == "text" and k in args]
    return len(texts) >= 2 and len(set(texts)) < len(texts) and not any(references(t) for t in texts)


def _split_resources(value: str) -> list[str]:
    """The resources a media argument names: one, or several separated by commas / 'and'."""
    parts = [p.strip().strip("'\"") for p in _SEPARATORS.split(value) if p.strip()]
    if len(parts) > 1 and all(_FILE_OR_URL.match(p) for p in parts):
        return parts
    return [value.strip().strip("'\"")]


class PlanBuilder:
    """Validates and repairs a plan one raw task at a time, so tasks can be used while the plan streams.

    Ids are kept when they are free; a task split into several (one per resource) gets new ids, and later tasks
    that referred to it refer to all its parts. `dep` is recomputed from the placeholders in `args`.
    """

    def __init__(
        self,
        table: TaskTable,
        max_tasks: int = MAX_TASKS,
        *,
        example_files: Collection[str] = (),
        mentioned: str = "",
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.table = table
        self.exists = exists  # whether a named input file is there (None: no input folders to look in)
        self.max_tasks = max_tasks
        self.example_files = {f.lower() for f in example_files}
        self.given = mentioned  # the request and history as written (file names keep their case)
        self.mentioned = mentioned.lower()
        self.tasks: list[Task] = []
        self._ids: dict[int, list[int]] = {}  # the LLM's id -> the ids it became ([] when left out)
        self._left_out: dict[int, str] = {}  # the LLM's id -> why that task was left out

    def plan(self) -> Plan:
        return Plan(tasks=list(self.tasks))

    def add(self, raw: Any) -> list[Task]:
        if not isinstance(raw, dict):
            raise PlanError(f"each task must be a JSON object, got {json.dumps(raw)[:80]}")
        llm_id = _as_int(raw.get("id"), "id")
        where = f"task {llm_id}"
        if llm_id in self._ids:
            raise PlanError(f"{where}: duplicate id {llm_id}; every task needs its own id")
        name = raw.get("task")
        if not isinstance(name, str) or not name.strip():
            raise PlanError(f"{where}: missing task type")
        task_type = self.table.resolve(name)
        if task_type is None:
            known = ", ".join(self.table.names())
            raise PlanError(f"{where}: unknown task type {name!r}; available types: {known}")
        where = f"task {llm_id} ({task_type.name})"
        args = self._args(raw.get("args", {}), task_type, llm_id, where)
        if _compares_with_itself(task_type, args):
            self._ids[llm_id] = []
            self._left_out[llm_id] = "it compares a text with itself"
            return []
        same: list[int] = []  # tasks this one repeats: later references go to them
        variants = []
        for variant in self._variants(args, task_type):
            if (earlier := self._redundant(task_type, variant)) is not None:
                same.append(earlier)
            else:
                variants.append(variant)
        if len(self.tasks) + len(variants) > self.max_tasks:
            raise PlanError(f"the plan has more than {self.max_tasks} tasks; ask for less at once")
        step = raw.get("step")
        step = " ".join(step.split())[:200] or None if isinstance(step, str) else None
        new: list[Task] = []
        for variant in variants:
            new_id = llm_id if not self._used(llm_id) and not new else self._next_id()
            dep = sorted({n for value in variant.values() for n in references(value)})
            new.append(Task(id=new_id, task=task_type.name, dep=dep, args=variant, step=step))
            self.tasks.append(new[-1])
        self._ids[llm_id] = [*same, *(t.id for t in new)]
        return new

    def _redundant(self, task_type: TaskType, args: dict[str, str]) -> int | None:
        """The earlier task this one only repeats: the same task on the same inputs, or a labelling task
        (a classification) run again on its own output, as in "find the entities in the entities found"."""
        for task in self.tasks:
            if task.task == task_type.name and task.args == args:
                return task.id
        if not task_type.name.endswith("classification"):
            return None
        sources = {_only_reference(args.get(key, "")) for key in task_type.inputs}
        source = sources.pop() if len(sources) == 1 else None
        if source is None:
            return None
        earlier = self.tasks[self._index(source)]
        return earlier.id if earlier.task == task_type.name else None

    def _used(self, task_id: int) -> bool:
        return any(t.id == task_id for t in self.tasks)

    def _next_id(self) -> int:
        reserved = {i for ids in self._ids.values() for i in ids} | set(self._ids) | {t.id for t in self.tasks}
        return max(reserved, default=-1) + 1

    def _args(self, raw_args: Any, task_type: TaskType, llm_id: int, where: str) -> dict[str, str]:
        if raw_args is None:
            raw_args = {}
        if not isinstance(raw_args, dict):
            raise PlanError(f'{where}: args must be an object like {{"image": "photo.jpg"}}')
        args: dict[str, str] = {}
        for raw_key, raw_value in raw_args.items():
            key = str(raw_key).strip().lower()
            if key not in task_type.arg_keys:
                raise PlanError(f"{where}: unknown argument {raw_key!r}; it takes {', '.join(task_type.arg_keys)}")
            if raw_value is None or raw_value == "" or raw_value == []:
                continue
            if isinstance(raw_value, list):
                value = ", ".join(str(v) for v in raw_value)
            elif isinstance(raw_value, (dict, bool)):
                raise PlanError(f"{where}: argument {key!r} must be a string")
            else:
                value = str(raw_value)
            try:
                value = normalize_placeholders(value)
            except PlanError as exc:
                raise PlanError(f"{where}: {exc}") from None
            args[key] = self._resolve_refs(value, key, task_type, llm_id, where)
        missing = [key for key in task_type.inputs if key not in args]
        if missing:
            raise PlanError(f"{where}: missing argument {', '.join(repr(m) for m in missing)}")
        return args

    def _resolve_refs(self, value: str, key: str, task_type: TaskType, llm_id: int, where: str) -> str:
        modality = arg_modality(key)
        refs = references(value)
        if refs and modality is None:
            raise PlanError(f"{where}: parameter {key!r} cannot take <resource>-N; only inputs can")
        for ref in refs:
            if ref == llm_id:
                given = self._only_file(value, ref, modality)
                if given is None:
                    raise PlanError(
                        f"{where}: argument {key!r} refers to the task itself (<resource>-{ref}); write the input "
                        "itself (the text, or a file name or URL from the request) or <resource>-N of an earlier task"
                        + self._instead(task_type, modality)
                    )
                return self._resolve_refs(given, key, task_type, llm_id, where)
            if ref in self._left_out:
                raise PlanError(
                    f"{where}: argument {key!r} uses <resource>-{ref}, but task {ref} was left out: "
                    f"{self._left_out[ref]}"
                )
            if ref not in self._ids:
                raise PlanError(
                    f"{where}: argument {key!r} uses <resource>-{ref}, but no earlier task has id {ref}; "
                    "a task can only use the outputs of tasks written before it"
                )
            for target_id in self._ids[ref]:
                target = self.table.get(self.tasks[self._index(target_id)].task)
                if target is not None and modality not in {arg_modality(o) for o in target.outputs}:
                    same = self._pass_through(value, ref, modality)
                    if same is not None:
                        return self._resolve_refs(same, key, task_type, llm_id, where)
                    produced = ", ".join(target.outputs)
                    raise PlanError(
                        f"{where}: {key!r} needs {modality} from <resource>-{ref}, "
                        f"but task {ref} ({target.name}) produces {produced}"
                    )
        if modality in ("image", "audio", "video"):
            for part in _split_resources(value):
                if not _FILE_OR_URL.match(part):
                    raise PlanError(f"{where}: {key!r} must be a file name, a URL or <resource>-N, got {part[:60]!r}")
                kind = media_kind(part)
                if kind is not None and kind != modality:
                    raise PlanError(f"{where}: {key!r} needs {modality}, but {part!r} is {_a(kind)} file")
                example = part.lower() in self.example_files
                if (example or self.given) and not references(part) and not self._mentions(part):
                    origin = (
                        "a file from the examples, not from this request" if example else "a file the user did not give"
                    )
                    raise PlanError(
                        f"{where}: {key!r} names {part[:60]!r}, {origin}; "
                        "use a file or URL the user gave, or <resource>-N" + self._instead(task_type, modality)
                    )
        elif len(value) > MAX_ARG_CHARS * 10:
            raise PlanError(f"{where}: argument {key!r} is too long")
        elif (
            modality == "text"
            and not refs
            and not _URL.match(value.strip())  # a link is text: some tools take one (e.g. a downloader)
            and (kind := media_kind(value.strip().strip("'\""))) is not None
        ):
            readers = [t.name for t in self.table if "text" in t.outputs and _reads_only(t, kind)]
            hint = f" (e.g. {', '.join(readers[:3])})" if readers else ""
            raise PlanError(
                f"{where}: {key!r} takes text, but {value.strip()[:60]!r} is {_a(kind)} file; "
                f"add a task that turns it into text{hint} and use its <resource>-N here"
            )

        def expand(match: re.Match[str]) -> str:
            return ", ".join(f"<resource>-{i}" for i in self._ids[int(match.group(1))])

        return _RESOURCE.sub(expand, value)

    def _instead(self, task_type: TaskType, modality: str | None) -> str:
        """A hint for a task that needs a `modality` file the request does not give: the task types that make the
        same kind of output without such an input (image-to-image with no image given: text-to-image)."""
        if modality not in ("image", "audio", "video") or self._named_files(modality):
            return ""
        makes = {arg_modality(o) for o in task_type.outputs}
        others = [
            t.name
            for t in self.table
            if t.name != task_type.name
            and makes <= {arg_modality(o) for o in t.outputs}
            and modality not in {arg_modality(k) for k in t.inputs}
        ]
        if not others or len(others) > 3:
            return ""
        made = ", ".join(sorted(makes))
        types = " or ".join(f'"{name}"' for name in others)
        return (
            f". The request gives no {modality} file, so if it asks for a new {made}, write the task type {types} "
            f'instead of "{task_type.name}"'
        )

    def _named_files(self, modality: str) -> set[str]:
        """The files of `modality` (a text document for text) the request or history names."""
        return {m.group(0) for m in _NAMED_FILE.finditer(self.given) if file_kind(m.group(0)) == modality}

    def _mentions(self, name: str) -> bool:
        """Whether the request or history names this file, or at least its stem ("the masks" for masks.png; stems
        shorter than three letters, such as "a" for a.jpg, do not count). A stem counts only when that file is in
        the input folders (`exists`), or, with no folders to look in, when the conversation names some file at all:
        "lighthouse.jpg" for "draw a lighthouse" is made up."""
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
        if name.lower() in self.mentioned:
            return True
        if len(stem) < 3 or re.search(rf"\b{re.escape(stem)}\b", self.mentioned) is None:
            return False
        if self.exists is not None:  # input folders to look in: the stem counts when that file is there
            return self.exists(name)
        return _NAMED_FILE.search(self.given) is not None

    def _pass_through(self, value: str, ref: int, modality: str | None) -> str | None:
        """The input task `ref` read, when `value` is just `<resource>-ref` and that task produces no `modality` but
        took one input of it: "classify a.jpg, then answer a question about <resource>-0" means about a.jpg, and
        "read notes.txt aloud, then summarise <resource>-0" means summarise notes.txt."""
        if modality is None or _only_reference(value) != ref:
            return None
        if len(self._ids[ref]) != 1:
            return None
        source = self.tasks[self._index(self._ids[ref][0])]
        files = [v for k, v in source.args.items() if arg_modality(k) == modality]
        return files[0] if len(files) == 1 and not references(files[0]) else None

    def _only_file(self, value: str, ref: int, modality: str | None) -> str | None:
        """The one file of `modality` (a text file for text) the request names, when an argument is just its own
        `<resource>-ref`: small models write "the output of this task" to mean "the user's input"."""
        if modality is None or _only_reference(value) != ref:
            return None
        named = self._named_files(modality)
        return named.pop() if len(named) == 1 else None

    def _index(self, task_id: int) -> int:
        return next(i for i, t in enumerate(self.tasks) if t.id == task_id)

    def _variants(self, args: dict[str, str], task_type: TaskType) -> list[dict[str, str]]:
        """One argument set per combination of resources, when a media argument names several."""
        choices = []
        for key, value in args.items():
            if arg_modality(key) in ("image", "audio", "video"):
                choices.append([(key, part) for part in _split_resources(value)])
            else:
                choices.append([(key, value)])
        return [dict(combo) for combo in itertools.product(*choices)]


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise PlanError(f"task {field} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise PlanError(f"task {field} must be an integer, got {value!r}")


def raw_tasks(value: Any) -> list[Any]:
    """The task list in a parsed reply: a bare list or an object with a `tasks` list."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("tasks", "plan", "task_nodes"):
            if isinstance(value.get(key), list):
                return value[key]
        if "task" in value:
            return [value]
    raise PlanError('the reply is not a task list; expected {"tasks": [...]}')


def _check_cycles(items: list[Any]) -> None:
    """Name a cycle among the raw tasks, if there is one, before the forward-reference check does less well."""
    graph: dict[int, set[int]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            node = _as_int(item.get("id"), "id")
        except PlanError:
            continue
        text = json.dumps(item.get("args", {}))
        graph.setdefault(node, set()).update(int(n) for n in _PLACEHOLDER.findall(text))
    state: dict[int, int] = {}

    def visit(node: int, path: list[int]) -> None:
        state[node] = 1
        for nxt in graph.get(node, set()) - {node}:  # a self-reference gets its own message later
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise PlanError("the plan has a cycle: " + " -> ".join(f"task {n}" for n in cycle))
            if nxt in graph and nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def validate_plan(value: Any, table: TaskTable, max_tasks: int = MAX_TASKS, **context: Any) -> Plan:
    """Validate and repair a parsed plan (list or {"tasks": [...]}); raise PlanError when it cannot be made valid.

    `context` (`example_files`, `mentioned`): a media argument must name a file or URL the request or history
    (`mentioned`) names, or a task's output; with no `mentioned`, only the prompt's example files are refused."""
    items = raw_tasks(value)
    _check_cycles(items)
    builder = PlanBuilder(table, max_tasks, **context)
    for item in items:
        builder.add(item)
    return builder.plan()


def parse_plan(text: str, table: TaskTable, max_tasks: int = MAX_TASKS, **context: Any) -> Plan:
    """Parse LLM text into a validated plan (see `validate_plan`)."""
    try:
        value = extract_json(text)
    except JSONNotFound as exc:
        raise PlanError(str(exc)) from None
    return validate_plan(value, table, max_tasks, **context)


def salvage_plan(text: str, table: TaskTable, max_tasks: int = MAX_TASKS, **context: Any) -> Plan:
    """The valid tasks of a reply that fails validation: invalid tasks, and tasks that use their outputs, are left
    out, and `dropped` says why. An empty plan when nothing in the reply is usable."""
    try:
        items = raw_tasks(extract_json(text))
    except (JSONNotFound, PlanError):
        return Plan()
    builder = PlanBuilder(table, max_tasks, **context)
    dropped = []
    for item in items:
        try:
            builder.add(item)
        except PlanError as exc:
            dropped.append(str(exc))
    return Plan(tasks=builder.plan().tasks, dropped=dropped)


def plan_schema(
    table: TaskTable, max_tasks: int = MAX_TASKS, *, typed: bool = False, steps: bool = False
) -> dict[str, Any]:
    """JSON schema for a plan: task names as an enum, argument keys as known properties, bounded sizes.

    With `typed=True` each task type gets its own branch (`anyOf`) whose args are exactly its own keys, with its
    inputs required, so a constrained decoder cannot write an argument the chosen task does not take. With
    `steps=True` each task starts with a `step`: the part of the request it does, in the user's words.
    """
    keys: list[str] = []
    for task_type in table:
        keys.extend(k for k in task_type.arg_keys if k not in keys)
    if typed:
        items: dict[str, Any] = {"anyOf": [_task_schema([t.name], t.arg_keys, t.inputs, steps) for t in table]}
    else:
        items = _task_schema(table.names(), keys, [], steps)
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": items, "maxItems": max_tasks}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def _task_schema(names: list[str], keys: list[str], required: list[str], steps: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {
        "type": "object",
        "properties": {k: _arg_schema(k) for k in keys},
        "additionalProperties": False,
    }
    if required:
        args["required"] = required
    properties: dict[str, Any] = {"step": {"type": "string", "maxLength": 120}} if steps else {}
    properties |= {
        "task": {"type": "string", "enum": names},
        "id": {"type": "integer", "minimum": 0, "maximum": 99},
        "dep": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "maxItems": 4},
        "args": args,
    }
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


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) for trimming history."""
    return len(text) // 4 + 1


def trim_history(history: Sequence[Message], budget: int) -> list[Message]:
    """The most recent messages that fit in `budget` tokens, dropping the oldest first."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


class Planner:
    """Stage 1. The system prompt and the fixed demos come first and never change within a process, so backends that
    cache the prompt prefix (llama.cpp) only process what follows: demos retrieved from `bank` for this request (the
    `retrieve` most similar), the history and the request.

    Demos are fitted to the table: a demo using a task type the table lacks is left out, and parameters the table's
    task types do not take are dropped. `typed=True` constrains each task's args to its own keys (`plan_schema`).
    A plan that fails validation gets one repair request; if that fails too, `salvage=True` keeps the valid tasks
    of the replies (`salvage_plan`) rather than failing the whole request.
    """

    def __init__(
        self,
        llm: LLM,
        table: TaskTable,
        *,
        demos: list[dict[str, Any]] | None = None,
        bank: DemoBank | None = None,
        retrieve: int = 4,
        history_tokens: int = 1024,
        max_tasks: int = MAX_TASKS,
        repair: bool = True,
        salvage: bool = True,
        typed: bool = True,
        steps: bool = True,
    ) -> None:
        self.llm = llm
        self.table = table
        self.history_tokens = history_tokens
        self.max_tasks = max_tasks
        self.repair = repair
        self.salvage = salvage
        all_demos = load_demos() if demos is None else demos
        self.demos = fit_demos(all_demos, table)
        self.bank = bank.fit(table) if bank is not None else None
        self.retrieve = retrieve
        self.steps = steps
        shown = [*self.demos, *(self.bank.demos if self.bank is not None else [])]
        self.example_files = {
            v for d in shown for t in d["tasks"] for k, v in t["args"].items() if media_kind(v) is not None
        }
        self.schema = plan_schema(table, max_tasks, typed=typed, steps=steps)
        # A repair fixes the plan it is shown: it may not give up and answer with no tasks at all.
        self.repair_schema = copy.deepcopy(self.schema)
        self.repair_schema["properties"]["tasks"]["minItems"] = 1

    def select_demos(self, request: str, history: Sequence[Message] = ()) -> list[dict[str, Any]]:
        """The demos for this request: the fixed ones, then those retrieved for it (most similar last). Demos with
        a chat history come last, and only when the request has a history too."""
        demos = list(self.demos)
        if self.bank is not None and self.retrieve > 0:
            fixed = {d["request"] for d in demos}
            picked = [d for d in self.bank.select(request, self.retrieve + len(fixed)) if d["request"] not in fixed]
            demos += picked[-self.retrieve :]
        plain = [d for d in demos if not d.get("history")]
        return plain + [d for d in demos if d.get("history")] if history else plain

    def prefix(self) -> list[Message]:
        """The fixed start of every planning prompt `messages` builds: the system prompt and the fixed demos without
        a history (those with one, and retrieved demos, come later), the same for every request and history."""
        system = render("planning.j2", task_types=list(self.table), steps=self.steps)
        messages = [Message(role="system", content=system)]
        for demo in self.demos:
            if not demo.get("history"):
                messages.append(Message(role="user", content=demo["request"]))
                messages.append(Message(role="assistant", content=json.dumps({"tasks": self._shown(demo["tasks"])})))
        return messages

    def messages(self, request: str, history: Sequence[Message] = ()) -> list[Message]:
        system = render("planning.j2", task_types=list(self.table), steps=self.steps)
        messages = [Message(role="system", content=system)]
        for demo in self.select_demos(request, history):
            for turn in demo.get("history", []):
                messages.append(Message(**turn))
            messages.append(Message(role="user", content=demo["request"]))
            messages.append(Message(role="assistant", content=json.dumps({"tasks": self._shown(demo["tasks"])})))
        messages.extend(trim_history(history, self.history_tokens))
        messages.append(Message(role="user", content=request))
        return messages

    def _shown(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Demo tasks as the model must write them: with `step` first when steps are on, without it otherwise."""
        if not self.steps:
            return [{k: v for k, v in t.items() if k != "step"} for t in tasks]
        return [{"step": t.get("step", t["task"]), **{k: v for k, v in t.items() if k != "step"}} for t in tasks]

    async def plan(
        self,
        request: str,
        history: Sequence[Message] = (),
        on_task: Callable[[Task], None] | None = None,
        llm: LLM | None = None,
        exists: Callable[[str], bool] | None = None,
    ) -> Plan:
        """Plan `request`. `on_task` gets each validated task while the reply streams; if the final plan differs
        from what was streamed (a repair was needed), the caller must compare `plan.tasks` with what it saw."""
        llm = llm or self.llm
        messages = self.messages(request, history)
        mentioned = "\n".join([*(m.content for m in history), request])
        context: dict[str, Any] = {"example_files": self.example_files, "mentioned": mentioned, "exists": exists}
        stream = ArrayElementStream()
        builder = PlanBuilder(self.table, self.max_tasks, **context)
        streaming_ok = on_task is not None

        def on_delta(delta: str) -> None:
            nonlocal streaming_ok
            if not streaming_ok:
                return
            for raw in stream.feed(delta):
                try:
                    new = builder.add(raw)
                except PlanError:
                    streaming_ok = False
                    return
                for task in new:
                    on_task(task)

        completion = await llm.complete(
            messages, json_schema=self.schema, max_tokens=1024, on_delta=on_delta if on_task else None
        )
        try:
            if completion.finish_reason == "length":
                raise PlanError("the plan was cut off at the token limit")
            return parse_plan(completion.text, self.table, self.max_tasks, **context)
        except PlanError as first:
            if not self.repair:
                raise
            error = first
        fix = [
            *messages,
            Message(role="assistant", content=completion.text[:4000]),
            Message(role="user", content=render("repair.j2", error=str(error))),
        ]
        try:
            repaired = await llm.complete(fix, json_schema=self.repair_schema, max_tokens=1024)
        except LLMError:
            raise error from None
        second: PlanError | None = None
        try:
            if repaired.finish_reason == "length":
                raise PlanError("the repaired plan was cut off at the token limit")
            fixed = parse_plan(repaired.text, self.table, self.max_tasks, **context)
        except PlanError as exc:
            second = exc
        else:
            if fixed.tasks or not self.salvage:
                return fixed
        if self.salvage:  # the repair failed or dropped every task: keep what was valid
            for reply in (repaired, completion):
                partial = salvage_plan(reply.text, self.table, self.max_tasks, **context)
                if partial.tasks:
                    return partial
        if second is None:
            return fixed
        raise PlanError(f"{error} (and the repair attempt failed: {second})") from None


def plan_to_json(tasks: Iterable[Task]) -> list[dict[str, Any]]:
    return [task.model_dump() for task in tasks]
