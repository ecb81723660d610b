"""The plan rules: a raw task list from the LLM checked and repaired into a valid task graph, one task at a time
(`PlanBuilder`), and whole replies parsed (`parse_plan`), validated (`validate_plan`) or salvaged (`salvage_plan`).

One module: the whole-reply functions are short loops over `PlanBuilder`, whose checks and repairs are one set of
rules applied to each task in turn (the reference patterns they share are `references.py`)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Collection
from typing import Any

from ..errors import PlanError
from ..jsontext import JSONNotFound, extract_json
from ..tasks import TaskTable, TaskType
from ..types import MEDIA, Plan, Task, arg_modality
from .references import (
    _FILE_OR_URL,
    _PLACEHOLDER,
    _RESOURCE,
    _URL,
    NAMED_FILE,
    _only_reference,
    _split_resources,
    media_kind,
    named_files,
    normalize_placeholders,
    references,
    short,
    task_number,
)

MAX_TASKS = 8
MAX_ARG_CHARS = 400
# The repairs `PlanBuilder` makes to a plan it can read, each of which can be left out (an ablation measures it).
REPAIRS = {
    "repeats": "a task that repeats an earlier one on the same inputs is merged into it",
    "pass-through": "an input of a kind the task it names did not produce means that task's own input of that kind",
    "own-file": "a task that names its own output as an input means the one file of that kind the request names",
    "named-document": "a task's one text input that is a sentence naming a text document the user gave means that "
    "document",
    "unasked-media": "a task that only turns earlier tasks' results into an image, audio or video the conversation "
    "does not ask for is held back, and kept only when a later task uses it",
    "edited-input": "a task on a file an earlier task edited (restyled, enhanced, cleaned) reads the edited file, "
    "unless the conversation speaks of the original",
}


def check_repairs(names: Collection[str]) -> None:
    """ValueError naming the repairs in `names` that `REPAIRS` does not have."""
    unknown = sorted(set(names) - set(REPAIRS))
    if unknown:
        raise ValueError(f"unknown plan repair {', '.join(unknown)}; known: {', '.join(REPAIRS)}")


def _reads_only(task_type: TaskType, modality: str) -> bool:
    return [arg_modality(k) for k in task_type.inputs] == [modality]


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


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
        repairs: Collection[str] = tuple(REPAIRS),
        wanted: Collection[str] | None = None,
        editors: Collection[str] | None = None,
    ) -> None:
        check_repairs(repairs)
        # task types whose output is their input changed (None: those the table flags, `TaskType.edits`)
        self.editors = frozenset(t.name for t in table if t.edits) if editors is None else frozenset(editors)
        self.repairs = frozenset(repairs)
        self.wanted = None if wanted is None else frozenset(wanted)  # kinds the conversation may want made
        self.table = table
        self.exists = exists  # whether a named input file is there (None: no input folders to look in)
        self.max_tasks = max_tasks
        self.example_files = {f.lower() for f in example_files}
        self.given = mentioned  # the request and history as written (file names keep their case)
        self.mentioned = mentioned.lower()
        self.tasks: list[Task] = []
        self._ids: dict[int, list[int]] = {}  # the LLM's id -> the ids it became (or the earlier ones it repeats)
        self._held: dict[int, Task] = {}  # tasks making media nobody asked for, until a later task uses them

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
            raise PlanError(f"{where}: unknown task type {short(name)}; available types: {known}")
        where = f"task {llm_id} ({task_type.name})"
        args = self._edited(self._args(raw.get("args", {}), task_type, llm_id, where), task_type)
        hold = self._unasked(task_type, args)
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
        using = {n for value in args.values() for n in references(value)} & set(self._held)
        released = [self._held.pop(i) for i in sorted(using)]  # held tasks this one uses are kept
        self.tasks.extend(released)
        new: list[Task] = []
        for variant in variants:
            new_id = llm_id if not self._used(llm_id) and not new else self._next_id()
            dep = sorted({n for value in variant.values() for n in references(value)})
            new.append(Task(id=new_id, task=task_type.name, dep=dep, args=variant, step=step))
            if hold:
                self._held[new_id] = new[-1]
            else:
                self.tasks.append(new[-1])
        self._ids[llm_id] = [*same, *(t.id for t in new)]
        return [*released, *([] if hold else new)]

    def _unasked(self, task_type: TaskType, args: dict[str, str]) -> bool:
        """Whether the task only turns earlier tasks' results into another kind of media that the conversation does
        not ask for (a transcript read aloud when the user asked for the transcript): it is held back until a later
        task uses it."""
        if "unasked-media" not in self.repairs or self.wanted is None:
            return False
        makes = {arg_modality(o) for o in task_type.outputs}
        reads = {arg_modality(key) for key in task_type.inputs}
        # only a task that makes another kind than it reads: a depth map of an image is that image's analysis
        if not makes or not makes <= set(MEDIA) or makes & (self.wanted | reads):
            return False
        inputs = [args[key] for key in task_type.inputs if key in args]
        return bool(inputs) and all(references(value) for value in inputs)

    def _edited(self, args: dict[str, str], task_type: TaskType) -> dict[str, str]:
        """`args` with each file an earlier task edited replaced by that task's output: "enhance old.jpg, then read
        the text in it" reads the enhanced picture. Not for a task of the edit's own type (two versions of one
        photo), nor when the conversation speaks of the original."""
        if "edited-input" not in self.repairs or not self.editors or re.search(r"\boriginal", self.mentioned):
            return args
        edited = dict(args)
        for key in task_type.inputs:
            modality, value = arg_modality(key), args.get(key, "")
            if modality not in MEDIA or references(value) or len(_split_resources(value)) != 1:
                continue
            for task in self.tasks:  # follow the file through the edits made to it, in order
                editor = self.table.get(task.task)
                if editor is None or task.task == task_type.name or task.task not in self.editors:
                    continue
                reads = [v for k, v in task.args.items() if arg_modality(k) == modality]
                if edited[key] in reads and modality in {arg_modality(o) for o in editor.outputs}:
                    edited[key] = f"<resource>-{task.id}"
        return edited

    def _task(self, task_id: int) -> Task:
        """A task by id, held back or not."""
        return self._held[task_id] if task_id in self._held else self.tasks[self._index(task_id)]

    def _redundant(self, task_type: TaskType, args: dict[str, str]) -> int | None:
        """The earlier task this one only repeats: the same task on the same inputs (its expert would give the
        same result again)."""
        if "repeats" not in self.repairs:
            return None
        return next((t.id for t in self.tasks if t.task == task_type.name and t.args == args), None)

    def _used(self, task_id: int) -> bool:
        return task_id in self._held or any(t.id == task_id for t in self.tasks)

    def _next_id(self) -> int:
        reserved = {i for ids in self._ids.values() for i in ids} | set(self._ids) | {t.id for t in self.tasks}
        reserved |= set(self._held)
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
                raise PlanError(f"{where}: unknown argument {short(raw_key)}; it takes {', '.join(task_type.arg_keys)}")
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
            if ref not in self._ids:
                raise PlanError(
                    f"{where}: argument {key!r} uses <resource>-{ref}, but no earlier task has id {ref}; "
                    "a task can only use the outputs of tasks written before it"
                )
            for target_id in self._ids[ref]:
                target = self.table.get(self._task(target_id).task)
                if target is not None and modality not in {arg_modality(o) for o in target.outputs}:
                    same = self._pass_through(value, ref, modality)
                    if same is not None:
                        return self._resolve_refs(same, key, task_type, llm_id, where)
                    produced = ", ".join(target.outputs)
                    raise PlanError(
                        f"{where}: {key!r} needs {modality} from <resource>-{ref}, "
                        f"but task {ref} ({target.name}) produces {produced}"
                    )
        if modality in MEDIA:
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
        elif modality == "text" and not refs and (document := self._document_in(value, key, task_type)) is not None:
            return document
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
            return ", ".join(f"<resource>-{i}" for i in self._ids[task_number(match.group(1))])

        return _RESOURCE.sub(expand, value)

    def _instead(self, task_type: TaskType, modality: str | None) -> str:
        """A hint for a task that needs a `modality` file the request does not give: the task types that make the
        same kind of output without such an input (image-to-image with no image given: text-to-image)."""
        if modality not in MEDIA or self._named_files(modality):
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
        return {name for name, kind in named_files(self.given).items() if kind == modality}

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
        return NAMED_FILE.search(self.given) is not None

    def _pass_through(self, value: str, ref: int, modality: str | None) -> str | None:
        """The input task `ref` read, when `value` is just `<resource>-ref` and that task produces no `modality` but
        took one input of it: "classify a.jpg, then answer a question about <resource>-0" means about a.jpg, and
        "read notes.txt aloud, then summarise <resource>-0" means summarise notes.txt."""
        if "pass-through" not in self.repairs or modality is None or _only_reference(value) != ref:
            return None
        if len(self._ids[ref]) != 1:
            return None
        source = self._task(self._ids[ref][0])
        files = [v for k, v in source.args.items() if arg_modality(k) == modality]
        return files[0] if len(files) == 1 and not references(files[0]) else None

    def _document_in(self, value: str, key: str, task_type: TaskType) -> str | None:
        """The text document the user gave that `value` names inside other words, when `key` is the task's one
        text input: "read my notes.txt aloud" as the text to speak means the notes, not that sentence."""
        if "named-document" not in self.repairs or not _reads_only(task_type, "text") or key not in task_type.inputs:
            return None
        inside = [
            name
            for name in self._named_files("text")
            if name.lower() in value.lower()
            and value.strip().strip("'\"") != name
            and (self.exists is None or self.exists(name))
        ]
        return inside[0] if len(inside) == 1 else None

    def _only_file(self, value: str, ref: int, modality: str | None) -> str | None:
        """The one file of `modality` (a text file for text) the request names, when an argument is just its own
        `<resource>-ref`: small models write "the output of this task" to mean "the user's input"."""
        if "own-file" not in self.repairs or modality is None or _only_reference(value) != ref:
            return None
        named = self._named_files(modality)
        return named.pop() if len(named) == 1 else None

    def _index(self, task_id: int) -> int:
        return next(i for i, t in enumerate(self.tasks) if t.id == task_id)

    def _variants(self, args: dict[str, str], task_type: TaskType) -> list[dict[str, str]]:
        """One argument set per combination of resources, when a media argument names several."""
        choices = []
        for key, value in args.items():
            if arg_modality(key) in MEDIA:
                choices.append([(key, part) for part in _split_resources(value)])
            else:
                choices.append([(key, value)])
        return [dict(combo) for combo in itertools.product(*choices)]


_INT_TEXT = re.compile(r"\s*-?[0-9]{1,9}\s*")


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return int(value)
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    raise PlanError(f"task {field} must be an integer, got {short(shown)}")


def raw_tasks(value: Any) -> list[Any]:
    """The task list in a parsed reply: a bare list or an object with a `tasks` list."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("tasks", "plan"):
            if isinstance(value.get(key), list):
                return value[key]
        if "task" in value:
            return [value]
    raise PlanError('the reply is not a task list; expected {"tasks": [...]}')


def _uses(items: list[Any]) -> list[tuple[int, set[int]] | None]:
    """Each raw task's id and the task numbers its arguments' placeholders name; None where it has no readable id."""
    found: list[tuple[int, set[int]] | None] = []
    for item in items:
        try:
            node = _as_int(item.get("id"), "id") if isinstance(item, dict) else None
        except PlanError:
            node = None
        if node is None:
            found.append(None)
            continue
        text = json.dumps(item.get("args", {}))
        found.append((node, {task_number(n) for n in _PLACEHOLDER.findall(text)}))
    return found


def _check_cycles(items: list[Any]) -> None:
    """Name a cycle among the raw tasks, if there is one, before the forward-reference check does less well."""
    graph: dict[int, set[int]] = {}
    for use in _uses(items):
        if use is not None:
            graph.setdefault(use[0], set()).update(use[1])
    done: set[int] = set()
    for start in graph:
        if start in done:
            continue
        # Depth-first without recursion (a long chain must not hit Python's recursion limit): the path so far,
        # and for each node on it the neighbours still to visit.
        path, todo = [start], [sorted(graph[start] - {start})]  # a self-reference gets its own message later
        on_path = {start}
        while path:
            if not todo[-1]:
                on_path.discard(path[-1])
                done.add(path.pop())
                todo.pop()
                continue
            nxt = todo[-1].pop()
            if nxt in on_path:
                cycle = [*path[path.index(nxt) :], nxt]
                raise PlanError("the plan has a cycle: " + " -> ".join(f"task {n}" for n in cycle[:12]))
            if nxt in graph and nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(sorted(graph[nxt] - {nxt}))


def _in_order(items: list[Any]) -> list[Any]:
    """The raw tasks (already checked for cycles) in an order where each comes after the tasks it uses: as written
    where that holds, else each task moved after the later-written ones it uses (a plan that says "voice over the
    video with the script" first and writes the script second). Ids stay as written; unreadable ids leave it as is."""
    uses = _uses(items)
    if any(use is None for use in uses):
        return items
    ids = [use[0] for use in uses if use is not None]
    needs = [use[1] for use in uses if use is not None]
    known = set(ids)
    if len(known) != len(ids):  # duplicate ids: the builder names them
        return items
    ordered: list[int] = []
    placed: set[int] = set()
    waiting = list(range(len(items)))
    while waiting:
        ready = next(
            (i for i in waiting if (needs[i] & known) - {ids[i]} <= placed),
            waiting[0],  # cannot happen once cycles are refused; keep the rest as written
        )
        waiting.remove(ready)
        ordered.append(ready)
        placed.add(ids[ready])
    return [items[i] for i in ordered]


def validate_plan(value: Any, table: TaskTable, max_tasks: int = MAX_TASKS, **context: Any) -> Plan:
    """Validate and repair a parsed plan (list or {"tasks": [...]}); raise PlanError when it cannot be made valid.

    Tasks written before the tasks they use are moved after them (`_in_order`). `context` (`example_files`,
    `mentioned`): a media argument must name a file or URL the request or history (`mentioned`) names, or a task's
    output; with no `mentioned`, only the prompt's example files are refused."""
    items = raw_tasks(value)
    _check_cycles(items)
    items = _in_order(items)
    builder = PlanBuilder(table, max_tasks, **context)
    for item in items:
        builder.add(item)
    return builder.plan()


def read_json(text: str) -> Any:
    """The first JSON in an LLM's reply; PlanError when there is none."""
    try:
        return extract_json(text)
    except JSONNotFound as exc:
        raise PlanError(str(exc)) from None


def parse_plan(
    text: str,
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    *,
    adapt: Callable[[Any], Any] | None = None,
    read: Callable[[str], Any] | None = None,
    **context: Any,
) -> Plan:
    """Parse LLM text into a validated plan (see `validate_plan`). `adapt`, when given, turns the reply's JSON into
    ours first (the TaskBench evaluation reads TaskBench's `<node-N>` and `task_nodes` with it). `read` turns the
    text into JSON (the plan syntax's reader; PlanError when it cannot): by default, the first JSON in it."""
    return validate_plan(_read(text, adapt, read), table, max_tasks, **context)


def _read(text: str, adapt: Callable[[Any], Any] | None, read: Callable[[str], Any] | None) -> Any:
    """A reply's plan as JSON in our format (see `parse_plan`); PlanError when it cannot be read."""
    value = read_json(text) if read is None else read(text)
    return value if adapt is None else adapt(value)


def salvage_plan(
    text: str,
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    *,
    adapt: Callable[[Any], Any] | None = None,
    read: Callable[[str], Any] | None = None,
    **context: Any,
) -> Plan:
    """The valid tasks of a reply that fails validation: invalid tasks, and tasks that use their outputs, are left
    out, and `dropped` says why. An empty plan when nothing in the reply is usable. `adapt`, `read` as in
    `parse_plan`."""
    try:
        items = raw_tasks(_read(text, adapt, read))
    except PlanError:
        return Plan()
    builder = PlanBuilder(table, max_tasks, **context)
    dropped = []
    for item in items:
        try:
            builder.add(item)
        except PlanError as exc:
            dropped.append(str(exc))
    return Plan(tasks=builder.plan().tasks, dropped=dropped)


def request_plan(
    text: str,
    request: str,
    table: TaskTable,
    max_tasks: int = MAX_TASKS,
    *,
    adapt: Callable[[Any], Any] | None = None,
    read: Callable[[str], Any] | None = None,
    **context: Any,
) -> Plan:
    """The last resort of a plan that must come out: the task type of a single-task reply whose arguments failed
    the checks, run on the conversation's own inputs instead of the ones the reply wrote. Each image, audio or
    video input gets the files of that kind the conversation (`mentioned`, else `request`) names (several: one
    task each); a text input gets the one text document it names, else the request's own words. PlanError when the
    reply names no task type of the table, or a file of a kind the type needs is not named. `adapt`, `read` as in
    `parse_plan`."""
    items = raw_tasks(_read(text, adapt, read))
    first = items[0] if items else None
    name = first.get("task") if isinstance(first, dict) else None
    task_type = table.resolve(name) if isinstance(name, str) else None
    if task_type is None:
        raise PlanError("the reply names no task type to keep")
    named = named_files(context.get("mentioned") or request)
    args: dict[str, str] = {}
    for key in task_type.inputs:
        modality = arg_modality(key) or "text"
        files = [file for file, kind in named.items() if kind == modality]
        if modality == "text":
            args[key] = files[0] if len(files) == 1 else " ".join(request.split())[: MAX_ARG_CHARS * 10]
        elif files:
            args[key] = ", ".join(files)
        else:
            raise PlanError(f"{task_type.name} needs {_a(modality)} file, and the request names none")
    task = {"step": request, "task": task_type.name, "id": 0, "dep": [], "args": args}
    return validate_plan([task], table, max_tasks, **context)
