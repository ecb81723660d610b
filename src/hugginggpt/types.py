"""Pydantic models shared by every stage: tasks, plans, model cards, selections, results, answers and events."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Modality = Literal["text", "image", "audio", "video"]
MODALITIES: tuple[str, ...] = ("text", "image", "audio", "video")
MEDIA: tuple[str, ...] = MODALITIES[1:]  # the kinds of file an argument can carry
Backend = Literal["embedded", "transformers", "inference", "llm", "remote", "server"]
TaskStatus = Literal["pending", "running", "ok", "failed", "skipped", "timeout"]

_MODALITY_KEY = re.compile(r"^(text|image|audio|video)(?:_?\d+)?$")


def arg_modality(key: str) -> str | None:
    """The modality an argument key carries (`image`, `image_2` -> image), or None for a plain parameter."""
    match = _MODALITY_KEY.match(key)
    return match.group(1) if match else None


class Task(BaseModel):
    """One node of a plan: a task type, its prerequisites and its arguments.

    `args` maps a modality (`text`, `image`, `audio`, `video`, optionally numbered like `image_2`) or a
    parameter name (e.g. `tgt_lang`) to a value; `<resource>-N` stands for the output of task N.
    """

    id: int
    task: str
    dep: list[int] = Field(default_factory=list)
    args: dict[str, str] = Field(default_factory=dict)
    step: str | None = Field(None, description="the part of the request this task does, in the user's words")


class Plan(BaseModel):
    """A validated task graph: ids unique, every dependency an earlier task, task names known.

    `dropped` says why tasks of the LLM's reply were left out, when even the repaired reply was invalid and only
    its valid part was kept."""

    tasks: list[Task] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)

    def task(self, task_id: int) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


class Resources(BaseModel):
    """What one instance of a model needs where it runs: CPUs, GPUs (fractions allowed) and memory. The Ray
    executor asks for them for each of the model's actors, so a GPU model lands on a node with a GPU."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    memory_mb: int | None = Field(None, ge=1)


class ModelCard(BaseModel):
    """What the catalogue knows about one model for one task type."""

    id: str
    task: str
    downloads: int = 0
    likes: int = 0
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    backend: Backend = "inference"
    available: bool = False
    license: str | None = None
    requires: list[str] = Field(default_factory=list)  # task parameters the model cannot work without
    priority: int = 0  # tie-break among equal downloads, higher first; negative for narrow, specialised models
    availability: dict[str, bool] = Field(
        default_factory=dict, description="per backend that could run this model: whether it can run it now"
    )
    specialty: list[str] = Field(
        default_factory=list,
        description="words that ask for what only this model is for (e.g. 'face'): it ranks first when the task's "
        "part of the request says one, and after the general models otherwise",
    )
    not_for: str = Field("", description="what the model is not for, in plain words")
    composed_from: list[str] = Field(
        default_factory=list, description="the real models a composed expert is built from (empty: a model itself)"
    )
    resources: Resources | None = Field(None, description="what the model needs where it runs (none: the defaults)")


class Selection(BaseModel):
    """The model chosen for a task, and why."""

    task_id: int
    model_id: str | None
    reason: str
    strategy: str
    backend: Backend | None = None


class Artifact(BaseModel):
    """A file an expert produced (or an input it was given): a reference into the request's artifact store, plain
    data that travels with jobs and results. `sha256` addresses the content; `path` is where the file lies on the
    machine that put it."""

    path: str
    media_type: str
    sha256: str
    modality: Modality
    size: int = 0


OutputValue = str | Artifact | dict[str, Any] | list[Any]


class TaskResult(BaseModel):
    """The outcome of one task. `outputs` maps a modality (or `json`) to a value."""

    task_id: int
    task: str
    model_id: str | None = None
    status: TaskStatus = "pending"
    args: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, OutputValue] = Field(default_factory=dict)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def artifacts(self) -> list[Artifact]:
        return [value for value in self.outputs.values() if isinstance(value, Artifact)]


class LLMCall(BaseModel):
    """One call to the controller LLM, for accounting."""

    stage: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # of the prompt, served from the LLM's KV cache (where the backend says)
    seconds: float = 0.0
    ok: bool = True


class Answer(BaseModel):
    """Everything a request produced: the text and the structured run behind it.

    `llm_calls` counts the controller's own calls (planning, selection, response); an LLM acting as an expert
    shows up as a task result instead.
    """

    request: str
    text: str
    plan: list[Task] = Field(default_factory=list)
    selections: list[Selection] = Field(default_factory=list)
    results: list[TaskResult] = Field(default_factory=list)
    llm_calls: int = 0
    llm_usage: list[LLMCall] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    output_dir: str | None = None
    error: str | None = None
    removed: list[dict[str, Any]] = Field(
        default_factory=list,
        description="sentences of the LLM's reply the grounding check kept from the user: sentence, reason, claims",
    )

    def artifacts(self) -> list[Artifact]:
        return [artifact for result in self.results for artifact in result.artifacts()]


EventType = Literal[
    "plan.task",
    "plan.done",
    "selection",
    "task.start",
    "task.end",
    "answer.token",
    "answer.done",
    "error",
]


class Event(BaseModel):
    """A state change in a run, as the CLI, the web page and SSE clients see it."""

    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    time: datetime = Field(default_factory=datetime.now)
