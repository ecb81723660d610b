"""Workload A's scripted parts: its fixed requests with their plans, the scripted controller's replies, the timed
experts, the counted LLM, and `critical_path` (the bound of a request from its parts). `bench_modes` runs the modes."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from ..experts.llm import llm_experts
from ..experts.protocol import Expert, ExpertContext, Outputs
from ..experts.registry import ExpertRegistry
from ..llm.protocol import LLM, Completion, Message, warm
from ..llm.scripted import ScriptedLLM
from ..planning.syntax import NO_TASKS, CodeSyntax
from ..tasks import DEFAULT_TASK_TYPES, TaskTable
from ..types import ModelCard

TOKENS_PER_SECOND = 50.0
# prompt reading 5.5 times faster than generation, as the embedded model runs on two cores (~60 vs ~11 tokens/s)
PROMPT_TOKENS_PER_SECOND = 275.0
# what each timed expert takes (seconds at time scale 1) and produces
EXPERT_SECONDS = {
    "text-to-image": 0.6,
    "image-to-text": 0.3,
    "text-to-speech": 0.4,
    "sentence-similarity": 0.2,
}
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
ANSWER = (
    "I did what you asked: the tasks ran one after another where one needed the other, and their results are "
    "listed below with the files they made."
)
TRANSLATION = "Le port la nuit, calme et silencieux."


class BenchRequest(BaseModel):
    """A fixed request of workload A and the plan the scripted planner streams for it."""

    name: str
    request: str
    tasks: list[dict[str, Any]]

    @property
    def graph(self) -> bool:
        return len(self.tasks) > 1

    @property
    def deps(self) -> dict[int, list[int]]:
        """The task graph: each task's id and the ids it depends on."""
        return {t["id"]: t["dep"] for t in self.tasks}

    def plan_reply(self, syntax: str = "json") -> str:
        """The plan as the planner asks for it: JSON, or (`code`) a comment and a call per task."""
        if syntax == "code":
            return CodeSyntax(TaskTable(DEFAULT_TASK_TYPES)).show(self.tasks)
        return json.dumps({"tasks": self.tasks}, ensure_ascii=False)


def _task(id: int, task: str, step: str, args: dict[str, str], dep: Sequence[int] = ()) -> dict[str, Any]:
    return {"step": step, "task": task, "id": id, "dep": list(dep), "args": args}


REQUESTS = (
    BenchRequest(
        name="chain",
        request="Draw a red bicycle in the rain, describe the picture, and read the description aloud.",
        tasks=[
            _task(0, "text-to-image", "draw a red bicycle in the rain", {"text": "a red bicycle in the rain"}),
            _task(1, "image-to-text", "describe the picture", {"image": "<resource>-0"}, [0]),
            _task(2, "text-to-speech", "read the description aloud", {"text": "<resource>-1"}, [1]),
        ],
    ),
    BenchRequest(
        name="fan-out",
        request="Draw a lighthouse at dusk and describe it, translate 'the harbour at night' into French, "
        "and tell me how similar the description and the translation are.",
        tasks=[
            _task(0, "text-to-image", "draw a lighthouse at dusk", {"text": "a lighthouse at dusk"}),
            _task(1, "image-to-text", "describe it", {"image": "<resource>-0"}, [0]),
            _task(
                2,
                "translation",
                "translate 'the harbour at night' into French",
                {"text": "the harbour at night", "tgt_lang": "French"},
            ),
            _task(
                3,
                "sentence-similarity",
                "how similar the description and the translation are",
                {"text": "<resource>-1", "text_2": "<resource>-2"},
                [1, 2],
            ),
        ],
    ),
    BenchRequest(
        name="single",
        request="Read 'good morning, everyone' aloud.",
        tasks=[_task(0, "text-to-speech", "read it aloud", {"text": "good morning, everyone"})],
    ),
)


def critical_path(
    plan_s: float, answer_s: float, durations: Mapping[int, float], deps: Mapping[int, Sequence[int]]
) -> float:
    """The bound: plan generation + the longest chain of expert durations through the task graph + the answer.
    A task missing from `durations` (it did not run) counts 0."""
    finish: dict[int, float] = {}

    def done(task_id: int, seen: frozenset[int] = frozenset()) -> float:
        if task_id in finish:
            return finish[task_id]
        if task_id in seen:
            raise ValueError(f"the task graph has a cycle through task {task_id}")
        before = max((done(d, seen | {task_id}) for d in deps.get(task_id, ())), default=0.0)
        finish[task_id] = before + durations.get(task_id, 0.0)
        return finish[task_id]

    chain = max((done(t) for t in {*durations, *deps}), default=0.0)
    return plan_s + chain + answer_s


class TimedExpert:
    """Sleeps for a set time, then gives an output of each modality its task type produces."""

    def __init__(self, task: str, model_id: str, seconds: float) -> None:
        self.card = ModelCard(id=model_id, task=task, backend="embedded", available=True)
        self.seconds = seconds
        self.outputs = next(t for t in DEFAULT_TASK_TYPES if t.name == task).outputs

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        await asyncio.sleep(self.seconds)
        outputs: Outputs = {}
        for output in self.outputs:
            if output == "image":
                path = ctx.output_path(".png")
                path.write_bytes(_PNG)
                outputs["image"] = ctx.artifact(path, "image")
            elif output == "audio":
                path = ctx.output_path(".wav")
                with wave.open(str(path), "wb") as sound:
                    sound.setnchannels(1)
                    sound.setsampwidth(2)
                    sound.setframerate(8000)
                    sound.writeframes(b"\0\0" * 800)
                outputs["audio"] = ctx.artifact(path, "audio")
            else:
                outputs["text"] = f"the {self.card.task} result of {args.get('text', 'the input')[:60]}"
        return outputs


class CountingLLM:
    """Counts every call and generated token of the wrapped LLM, the text experts' calls included."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self.accepts_grammar = getattr(inner, "accepts_grammar", False)
        self.calls = 0
        self.generated_tokens = 0

    async def warm(self, prefix: Sequence[Message]) -> Any:
        return await warm(self.inner, prefix)

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        self.calls += 1
        completion = await self.inner.complete(messages, **kwargs)
        self.generated_tokens += completion.usage.completion_tokens
        return completion


def scripted_reply(requests: Sequence[BenchRequest] = REQUESTS) -> Callable[[Sequence[Message], Any], str]:
    """The scripted controller: the plan for a known request (in code when the planner gives a grammar, JSON
    under a schema), the first candidate for a selection, a translation for a text task, and a fixed answer."""
    plans = {r.request: r.plan_reply() for r in requests}
    code = {r.request: r.plan_reply("code") for r in requests}

    def reply(messages: Sequence[Message], schema: dict[str, Any] | None, grammar: str | None = None) -> str:
        properties = (schema or {}).get("properties", {})
        if grammar is not None:
            return code.get(messages[-1].content, NO_TASKS)
        if "tasks" in properties:
            return plans.get(messages[-1].content, '{"tasks": []}')
        if properties and all(key.startswith("task_") for key in properties):
            return json.dumps(
                {
                    key: {"id": p["properties"]["id"]["enum"][0], "reason": "the first one"}
                    for key, p in properties.items()
                }
            )
        if messages[0].role != "system":  # an LLM-served text task
            return TRANSLATION
        return ANSWER

    return reply


def workload_parts(
    tokens_per_second: float, time_scale: float = 1.0, prompt_tokens_per_second: float = PROMPT_TOKENS_PER_SECOND
) -> tuple[CountingLLM, ExpertRegistry]:
    """A fresh counted scripted LLM and the experts: two timed candidates per media task type, the LLM for text.
    The LLM takes a grammar, as the embedded one does, so a planner asked for code (`ours-code`) writes it."""
    scripted = ScriptedLLM(
        accepts_grammar=True,
        fallback=scripted_reply(),
        tokens_per_second=tokens_per_second / time_scale,
        prompt_tokens_per_second=prompt_tokens_per_second / time_scale,
    )
    llm = CountingLLM(scripted)
    experts: list[Expert] = [
        TimedExpert(task, f"bench/{task}-{variant}", seconds * time_scale)
        for task, seconds in EXPERT_SECONDS.items()
        for variant in ("a", "b")
    ]
    experts += llm_experts(llm)
    return llm, ExpertRegistry(experts)
