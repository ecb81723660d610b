"""TaskBench data: label rows, its tool list as our task table, and plans turned into TaskBench's scored form."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import HuggingGPTError
from ..planning.references import BRACKETED_FILE, references
from ..tasks import DEFAULT_TASK_TYPES, TaskTable, TaskType, normalize_task_name
from ..types import MODALITIES, Plan

SPLITS: tuple[str, ...] = ("overall", "single", "chain", "dag")

# TaskBench's `get_content_type`: the first extension found anywhere in the value decides; otherwise text.
_CONTENT_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("image", ("jpg", "png", "jpeg", "gif", "bmp", "tiff", "svg", "ico")),
    ("audio", ("mp3", "wav", "wma", "ogg", "aac", "flac", "aiff", "au")),
    ("video", ("mp4", "avi", "mov", "flv", "wmv", "mkv", "webm", "m4v", "mpg", "mpeg")),
)
_NODE_REF = re.compile(r"<node-(\d+)>")
# What our parser once took of TaskBench's format in a planner's reply: `<node-3>` and loose variants (`<node>-3`),
# a `<node>` without a number, and a `task_nodes` list.
_NODE_PLACEHOLDER = re.compile(r"<\s*node\s*>?\s*-\s*(\d+)>?", re.IGNORECASE)
_BARE_NODE = re.compile(r"<\s*node\s*>(?!\s*-\s*\d)", re.IGNORECASE)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")


class TaskBenchError(HuggingGPTError, ValueError):
    """A TaskBench data or tool file is missing or not in the expected format."""


class Tool(BaseModel):
    """One entry of TaskBench's `tool_desc.json`."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    desc: str = ""
    input_type: list[str] = Field(default_factory=list, alias="input-type")
    output_type: list[str] = Field(default_factory=list, alias="output-type")

    @property
    def output_name(self) -> str:
        """The argument type TaskBench gives a reference to this tool's output: its first output type."""
        return self.output_type[0] if self.output_type else "none"


class Node(BaseModel):
    """A labelled task node: a tool name and positional arguments (values, or `<node-k>` references)."""

    task: str
    arguments: list[str] = Field(default_factory=list)

    @field_validator("arguments", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> list[str]:
        # TaskBench rows hold lists of strings, but also a bare string, numbers, {"name","value"} dicts and lists.
        if value is None:
            return []
        if not isinstance(value, list):
            value = [value]
        flat: list[str] = []
        for item in value:
            if isinstance(item, dict):
                item = next(iter(item.values()), "") if "value" not in item else item["value"]
            if isinstance(item, list):
                item = " ".join(str(part) for part in item)
            flat.append(str(item))
        return flat


class Link(BaseModel):
    source: str
    target: str


class Sample(BaseModel):
    """One TaskBench label row."""

    id: str
    instruction: str
    type: str = "single"
    task_nodes: list[Node] = Field(default_factory=list)
    task_links: list[Link] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _request(cls, value: Any) -> Any:
        # 2024 rows have `instruction`; the 2023 ones only `user_request`.
        if isinstance(value, dict) and "instruction" not in value and "user_request" in value:
            value = {**value, "instruction": value["user_request"]}
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        return str(value)


class Graph(BaseModel):
    """A plan (labelled or predicted) in TaskBench's scored form.

    `nodes` are tool names in order; `links` are (source, target) tool-name pairs; `arguments` holds each node's
    (type, value) pairs, where a reference to node k becomes (k's first output type, k's tool name) as in TaskBench;
    `arg_links` are the links TaskBench itself derives from `<node-k>` references.
    """

    nodes: list[str] = Field(default_factory=list)
    links: list[tuple[str, str]] = Field(default_factory=list)
    arguments: list[list[tuple[str, str]]] = Field(default_factory=list)
    arg_links: list[tuple[str, str]] = Field(default_factory=list)


def content_type(value: str) -> str:
    """TaskBench's type of a literal argument: image/audio/video by a file extension in it, else text."""
    value = value.strip("'")
    for kind, extensions in _CONTENT_TYPES:
        if any("." + ext in value for ext in extensions):
            return kind
    return "text"


def from_taskbench(reply: Any) -> Any:
    """A planner's reply (parsed JSON) with TaskBench's forms in ours, for our parser (`Planner.plan(adapt=...)`):
    a `task_nodes` list, when there is no `tasks` or `plan` list, becomes `tasks`, and in each task's `args`
    `<node-N>` becomes `<resource>-N` (a `<node>` without a number becomes `<resource>`, which the parser refuses).
    The rest is left as it is; a reply without these forms comes back unchanged."""
    if isinstance(reply, list):
        return [_task_from_taskbench(item) for item in reply]
    if not isinstance(reply, dict):
        return reply
    for key in ("tasks", "plan", "task_nodes"):  # the list our parser reads, in its order
        if isinstance(reply.get(key), list):
            return {**reply, "tasks": [_task_from_taskbench(item) for item in reply[key]]}
    return _task_from_taskbench(reply) if "task" in reply else reply


def _task_from_taskbench(task: Any) -> Any:
    if not isinstance(task, dict) or "args" not in task:
        return task
    return {**task, "args": _placeholders_from_taskbench(task["args"])}


def _placeholders_from_taskbench(value: Any) -> Any:
    if isinstance(value, list):
        return [_placeholders_from_taskbench(v) for v in value]
    if isinstance(value, dict):
        return {k: _placeholders_from_taskbench(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    if _BARE_NODE.search(value):  # refused, but its placeholders still count in the check for cycles
        return _NODE_PLACEHOLDER.sub(_resource, _BARE_NODE.sub("<resource>", value))
    # Our parser unwraps `<photo.jpg>` first, so `<<node-0.jpg>` is `<node-0.jpg`, a placeholder, but `<node-0.jpg>`
    # is a file name: rewrite what is a placeholder once that is done, and leave a value without one as it is.
    unwrapped = BRACKETED_FILE.sub(lambda m: m.group(1), value)
    if _NODE_PLACEHOLDER.search(unwrapped) is None:
        return value
    return _NODE_PLACEHOLDER.sub(_resource, unwrapped)


def _resource(match: re.Match[str]) -> str:
    # `<resource-N>`, not `<resource>-N`: our parser reads it as `<resource>-N` and, as with `<node-N>`, takes no
    # `>` or digit that follows (`<resource>-1>` and `<resource>-1` `0` would be read on).
    return f"<resource-{int(match.group(1))}>"


def load_samples(path: Path) -> list[Sample]:
    """TaskBench label rows from a JSONL file (one row a line) or a JSON array."""
    text = _read(path, "data")
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            rows = [(i + 1, row) for i, row in enumerate(json.loads(stripped))]
        else:
            rows = [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    except json.JSONDecodeError as exc:
        raise TaskBenchError(f"{path}: not JSON lines or a JSON array ({exc})") from None
    samples = []
    for where, row in rows:
        try:
            samples.append(Sample.model_validate(row))
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem["loc"]) or "row"
            raise TaskBenchError(f"{path}: row {where}: {field}: {problem['msg']}") from None
    if not samples:
        raise TaskBenchError(f"{path}: no label rows")
    return samples


def load_tools(path: Path) -> list[Tool]:
    """The tools of TaskBench's `tool_desc.json` (`{"nodes": [{"id", "desc", "input-type", "output-type"}]}`)."""
    text = _read(path, "tool list")
    try:
        value = json.loads(text)
        nodes = value["nodes"] if isinstance(value, dict) else value
        tools = [Tool.model_validate(node) for node in nodes]
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise TaskBenchError(f'{path}: not a TaskBench tool list {{"nodes": [...]}} ({exc})') from None
    if not tools:
        raise TaskBenchError(f"{path}: the tool list is empty")
    return tools


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskBenchError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskBenchError(f"cannot read {what} file {path}: {exc}") from None


def _modality(kind: str) -> str:
    """Our modality for a TaskBench input/output type: `Image` -> image; `url` and unknown types are text."""
    kind = kind.strip().lower()
    return kind if kind in MODALITIES else "text"


def _keys(kinds: Iterable[str]) -> list[str]:
    """Argument keys for positional input types: [image, image] -> image, image_2 (see `types.arg_modality`)."""
    seen: Counter[str] = Counter()
    keys = []
    for kind in kinds:
        modality = _modality(kind)
        seen[modality] += 1
        keys.append(modality if seen[modality] == 1 else f"{modality}_{seen[modality]}")
    return keys


def _short(desc: str, limit: int = 140) -> str:
    match = _FIRST_SENTENCE.match(desc.strip())
    sentence = (match.group(1) if match else desc.strip()).rstrip(".")
    sentence = sentence[:1].lower() + sentence[1:]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


class TaskBenchTools:
    """TaskBench's tools as our task types, and the name mapping both ways.

    A tool's task name is its name lower-cased with spaces as hyphens. Inputs and outputs come from the tool list;
    the description is ours where the name matches one of our task types (`matched`), else the first sentence of
    TaskBench's (`unmatched`).
    """

    def __init__(self, tools: list[Tool], known: Iterable[TaskType] = DEFAULT_TASK_TYPES) -> None:
        ours = {t.name: t for t in known}
        self.tools = {tool.id: tool for tool in tools}
        self.task_of: dict[str, str] = {}
        self.tool_of: dict[str, str] = {}
        self.matched: list[str] = []
        self.unmatched: list[str] = []
        types = []
        for tool in tools:
            name = normalize_task_name(tool.id)
            if name in self.tool_of:
                raise TaskBenchError(f"tools {self.tool_of[name]!r} and {tool.id!r} have the same task name {name!r}")
            self.task_of[tool.id] = name
            self.tool_of[name] = tool.id
            (self.matched if name in ours else self.unmatched).append(tool.id)
            description = ours[name].description if name in ours else _short(tool.desc)
            outputs = [_modality(kind) for kind in tool.output_type] or ["text"]
            edits = name in ours and ours[name].edits
            inputs = _keys(tool.input_type)
            types.append(TaskType(name=name, description=description, inputs=inputs, outputs=outputs, edits=edits))
        self.table = TaskTable(types)

    def outside(self, samples: Iterable[Sample]) -> dict[str, int]:
        """Tool names used by labels but missing from the tool list, with how many nodes use each."""
        counts = Counter(n.task for s in samples for n in s.task_nodes if _tool_name(n.task) not in self.tools)
        return dict(counts.most_common())

    def output_name(self, tool: str, default: str) -> str:
        found = self.tools.get(tool)
        return found.output_name if found else default

    def gold(self, sample: Sample) -> tuple[Graph, list[str]]:
        """A label row in scored form, with links from its explicit `task_links`, and the label problems met.

        Arguments follow TaskBench's `evaluate.py`: a reference to the node itself is dropped; a literal gets its
        content type. Unlike TaskBench (which then reuses a stale argument), a reference past the last node is
        dropped and reported.
        """
        names = [_tool_name(n.task) for n in sample.task_nodes]
        links = [(_tool_name(link.source), _tool_name(link.target)) for link in sample.task_links]
        graph = Graph(nodes=names, links=links)
        problems = []
        for index, node in enumerate(sample.task_nodes):
            arguments = []
            for argument in node.arguments:
                match = _NODE_REF.search(argument)
                if match is None:
                    arguments.append((content_type(argument), argument))
                    continue
                ref = int(match.group(1))
                if ref == index:
                    continue
                if ref >= len(names):
                    problems.append(f"{sample.id}: node {index} refers to <node-{ref}>, past the last node")
                    continue
                source = names[ref]
                graph.arg_links.append((source, names[index]))
                arguments.append((self.output_name(source, "other"), source))
            graph.arguments.append(arguments)
        return graph, problems

    def predicted(self, plan: Plan) -> Graph:
        """Our plan in scored form: links from each task's `dep`, arguments from its `args` values in order."""
        names = [self.tool_of.get(task.task, task.task) for task in plan.tasks]
        index = {task.id: i for i, task in enumerate(plan.tasks)}
        graph = Graph(nodes=names)
        for i, task in enumerate(plan.tasks):
            graph.links.extend((names[index[d]], names[i]) for d in task.dep if d in index)
            arguments = []
            for value in task.args.values():
                refs = [r for r in references(value) if r in index]
                if not refs:
                    arguments.append((content_type(value), value))
                for ref in refs:
                    source = names[index[ref]]
                    graph.arg_links.append((source, names[i]))
                    arguments.append((self.output_name(source, "other"), source))
            graph.arguments.append(arguments)
        return graph


def _tool_name(name: str) -> str:
    return name.replace("_", " ")
