"""Workload A of `hugginggpt bench`: the pipeline's modes compared on a scripted LLM and timed experts.

The controller is a `ScriptedLLM` that reads its prompts and generates its replies at set rates (tokens per
second; a prompt's start that an earlier prompt or the warmed planning prefix shared is not read again, as with
llama.cpp's prefix cache) and the experts sleep for set durations, so the ratios are exact and repeatable on any
machine. Modes, on the same requests:

- `ours`: the pipeline as shipped (`HuggingGPT`, default settings: streamed plan, `fit` selection);
- `ours-no-stream`: the same with `stream_plan=False`;
- `ours-code`: the same with `plan_syntax="code"` (the plan written as code under a grammar, not JSON);
- `staged`: the paper's pipeline as the original code runs it, built from our parts as an ablation: the full plan
  first (in JSON, as the paper's), then a scheduler that looks for ready tasks every 0.5 s; each task, once ready,
  asks the LLM to choose its model when it has two or more candidates (one call per task), text tasks are served
  by the LLM (one call each), then the answer;
- `bound`: the critical path computed from the parts measured in the `ours` run: plan generation + the longest
  chain of expert times + answer generation (`critical_path`).

The scripted parts (requests, controller, timed experts) are `bench_workload.py`; this module runs the modes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..catalog import ModelCatalog
from ..config import Settings
from ..execution import LocalExecutor, Scheduler
from ..experts.registry import ExpertRegistry
from ..facts import task_facts
from ..grounding import Grounds
from ..llm.protocol import warm
from ..pipeline import HuggingGPT
from ..planning import Planner
from ..response import respond
from ..selection import Selector
from ..tasks import DEFAULT_TASK_TYPES, TaskTable
from ..types import Answer, Selection, Task, TaskResult
from ..workspace import Workspace
from .bench_workload import (
    EXPERT_SECONDS,
    PROMPT_TOKENS_PER_SECOND,
    REQUESTS,
    TOKENS_PER_SECOND,
    BenchRequest,
    CountingLLM,
    critical_path,
    workload_parts,
)

MODES = ("ours", "ours-no-stream", "ours-code", "staged")
POLL_SECONDS = 0.5  # the original code's scheduler sleeps this long between looks for ready tasks


class ModeRun(BaseModel):
    """One request in one mode: what it took and the measured parts."""

    mode: str
    wall_s: float
    llm_calls: int
    generated_tokens: int
    llm_tasks: int = 0  # text tasks the controller LLM served
    plan_s: float = 0.0
    answer_s: float = 0.0
    first_expert_s: float | None = None
    expert_s: dict[int, float] = {}
    ok: bool = True

    @property
    def first_expert_fraction(self) -> float | None:
        """When the first expert started, as a fraction of the plan's generation time."""
        if self.first_expert_s is None or not self.plan_s:
            return None
        return self.first_expert_s / self.plan_s


def stage_seconds(answer: Answer, stage: str) -> float:
    """The seconds the run's controller-LLM calls of `stage` took."""
    return sum(call.seconds for call in answer.llm_usage if call.stage == stage)


async def run_ours(
    request: BenchRequest,
    out: Path,
    *,
    stream: bool = True,
    syntax: str = "json",
    tokens_per_second: float,
    time_scale: float = 1.0,
) -> ModeRun:
    """The shipped pipeline on `request` (its defaults, not the environment's, but for `stream` and the plan's
    `syntax`), timed from the outside."""
    llm, experts = workload_parts(tokens_per_second, time_scale)
    settings = Settings.model_construct(output_dir=out, stream_plan=stream, plan_syntax=syntax)
    gpt = HuggingGPT(llm, experts, settings=settings)
    start = time.perf_counter()
    first: float | None = None
    answer: Answer | None = None
    async for event in gpt.stream(request.request, output_dir=out):
        if event.type == "task.start" and first is None:
            first = time.perf_counter() - start
        elif event.type == "answer.done":
            answer = Answer.model_validate(event.data["answer"])
    wall = time.perf_counter() - start
    assert answer is not None
    return ModeRun(
        mode=("ours" if stream else "ours-no-stream") if syntax == "json" else f"ours-{syntax}",
        wall_s=wall,
        llm_calls=llm.calls,
        generated_tokens=llm.generated_tokens,
        plan_s=stage_seconds(answer, "planning"),
        answer_s=stage_seconds(answer, "response"),
        first_expert_s=first,
        expert_s={r.task_id: r.seconds for r in answer.results if r.seconds is not None},
        ok=answer.error is None and all(r.status == "ok" for r in answer.results),
    )


class PerTaskSelector(Selector):
    """The `llm` strategy, one LLM call per task rather than one batched call (as the original code asks)."""

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for item in pending:
            self._pending = [item]
            await super().flush()

    async def select(self, task: Task) -> Selection:
        """Choose for `task` now: its own LLM call when it has two or more candidates."""
        future = self.submit(task)
        if not future.done():
            await self.flush()
        return await future


class PollingScheduler(Scheduler):
    """The original code's scheduler: a task whose dependencies are not all done looks again every `poll` s."""

    def __init__(self, *, poll: float = POLL_SECONDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll = poll
        self.polls = 0  # how many times a task slept waiting for its dependencies

    async def _run(self, task: Task) -> None:
        try:
            while not all(self._done[d].done() for d in task.dep):
                self.polls += 1
                await asyncio.sleep(self.poll)
        except asyncio.CancelledError:
            result = self.results[task.id]
            self._finish(result, "failed", "cancelled")
            self._done[task.id].set_result(result)
            raise
        await super()._run(task)  # the dependencies are done: their futures answer at once


async def run_staged(
    request: str,
    out: Path,
    *,
    llm: CountingLLM,
    experts: ExpertRegistry,
    catalog: ModelCatalog | None = None,
    table: TaskTable | None = None,
    inputs: Sequence[Path] = (),
    poll: float = POLL_SECONDS,
) -> ModeRun:
    """The paper's staged pipeline from our parts: full plan (JSON, as the paper's), polled scheduling with per-task
    selection, answer. `llm` (counted) plans, selects and answers; the experts, catalogue and task table default to
    workload A's."""
    catalog = catalog or ModelCatalog(experts.cards())
    table = table or TaskTable(DEFAULT_TASK_TYPES)
    planner = Planner(llm, table, syntax="json")
    workspace = Workspace(out, list(inputs) or [out])
    await warm(llm, planner.prefix())  # the same restored planning prefix as `ours` gets
    start = time.perf_counter()
    plan = await planner.plan(request, exists=workspace.has_input, llm=llm)  # the whole plan before anything runs
    plan_s = time.perf_counter() - start
    selector = PerTaskSelector(catalog, llm, request, strategy="llm")
    first: list[float] = []

    def emit(event: Any) -> None:
        if event.type == "task.start" and not first:
            first.append(time.perf_counter() - start)

    scheduler = PollingScheduler(
        poll=poll, executor=LocalExecutor(experts), workspace=workspace, choose=selector.select, emit=emit
    )
    for task in plan.tasks:
        scheduler.add(task)
    results: list[TaskResult] = await scheduler.wait()
    tasks = list(plan.tasks)
    selections = [selector.selections[t.id] for t in tasks if t.id in selector.selections]
    facts = task_facts(tasks, selections, results, table)
    given = [v for item in (*tasks, *results) for v in item.args.values()]
    mark = time.perf_counter()
    # the paper's pipeline always asks the LLM for the answer
    await respond(llm, request, facts, grounds=Grounds.of(facts, [request], given), direct=False)
    end = time.perf_counter()
    return ModeRun(
        mode="staged",
        wall_s=end - start,
        llm_calls=llm.calls,
        generated_tokens=llm.generated_tokens,
        llm_tasks=sum(1 for s in selections if s.backend == "llm"),
        plan_s=plan_s,
        answer_s=end - mark,
        first_expert_s=first[0] if first else None,
        expert_s={r.task_id: r.seconds for r in results if r.seconds is not None},
        ok=all(r.status == "ok" for r in results),
    )


def bound_of(deps: Mapping[int, Sequence[int]], measured: ModeRun) -> ModeRun:
    """The `bound` of a run with the task graph `deps` from its measured parts (`ours`, which asks no selection
    call): plan + the longest chain of its expert times + answer; its LLM calls and tokens are that run's."""
    wall = critical_path(measured.plan_s, measured.answer_s, measured.expert_s, deps)
    return measured.model_copy(update={"mode": "bound", "wall_s": wall, "first_expert_s": None, "ok": True})


class RequestRuns(BaseModel):
    name: str
    tasks: int
    graph: bool
    modes: dict[str, ModeRun]

    def ratio(self, mode: str, to: str = "bound") -> float | None:
        base = self.modes[to].wall_s
        return self.modes[mode].wall_s / base if base else None


class WorkloadAReport(BaseModel):
    """Workload A: each request in each mode, the bound, and the ratios."""

    tokens_per_second: float
    prompt_tokens_per_second: float = PROMPT_TOKENS_PER_SECOND
    time_scale: float
    poll_s: float
    expert_seconds: dict[str, float]
    requests: list[RequestRuns]

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per mode, means over the requests: wall time, LLM calls and generated tokens per request, the ratio to
        `bound` (graph requests) and the first expert's start as a fraction of plan time."""
        out: dict[str, dict[str, float | None]] = {}
        graphs = [r for r in self.requests if r.graph]
        for mode in (*MODES, "bound"):
            runs = [r.modes[mode] for r in self.requests]
            fractions = [f for run in runs if (f := run.first_expert_fraction) is not None]
            ratios = [x for r in graphs if (x := r.ratio(mode)) is not None]
            out[mode] = {
                "wall_s": statistics.mean(run.wall_s for run in runs),
                "llm_calls": statistics.mean(run.llm_calls for run in runs),
                "generated_tokens": statistics.mean(run.generated_tokens for run in runs),
                "ratio_to_bound": statistics.mean(ratios) if ratios else None,
                "first_expert_of_plan": statistics.mean(fractions) if fractions else None,
            }
        return out

    def ratios(self) -> dict[str, float | None]:
        graphs = [r for r in self.requests if r.graph]
        ours = [x for r in graphs if (x := r.ratio("ours")) is not None]
        staged = [x for r in graphs if (x := r.ratio("staged", "ours")) is not None]
        code = [x for r in graphs if (x := r.ratio("staged", "ours-code")) is not None]
        return {
            "ours / bound, graph requests (worst; target <= 1.10)": max(ours) if ours else None,
            "staged / ours, graph requests (least; target >= 2.0)": min(staged) if staged else None,
            "staged / ours-code, graph requests (least)": min(code) if code else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.model_dump(mode="json"),
            "summary": self.summary(),
            "ratios": self.ratios(),
        }


async def run_workload_a(
    output_dir: Path,
    *,
    tokens_per_second: float = TOKENS_PER_SECOND,
    time_scale: float = 1.0,
    requests: Sequence[BenchRequest] = REQUESTS,
    progress: Callable[[str], None] = lambda _: None,
) -> WorkloadAReport:
    """Every request in every mode, one after another in this process, after one discarded warm-up run."""
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    rate = dict(tokens_per_second=tokens_per_second, time_scale=time_scale)
    await run_ours(requests[-1], output_dir / "warm-up", **rate)
    runs = []
    for request in requests:
        out = output_dir / request.name
        progress(f"workload A, {request.name}: ours")
        ours = await run_ours(request, out / "ours", **rate)
        progress(f"workload A, {request.name}: ours-no-stream")
        no_stream = await run_ours(request, out / "ours-no-stream", stream=False, **rate)
        progress(f"workload A, {request.name}: ours-code")
        code = await run_ours(request, out / "ours-code", syntax="code", **rate)
        progress(f"workload A, {request.name}: staged")
        llm, experts = workload_parts(tokens_per_second, time_scale)
        staged = await run_staged(
            request.request, out / "staged", llm=llm, experts=experts, poll=POLL_SECONDS * time_scale
        )
        modes = {
            "ours": ours,
            "ours-no-stream": no_stream,
            "ours-code": code,
            "staged": staged,
            "bound": bound_of(request.deps, ours),
        }
        runs.append(RequestRuns(name=request.name, tasks=len(request.tasks), graph=request.graph, modes=modes))
    return WorkloadAReport(
        tokens_per_second=tokens_per_second,
        prompt_tokens_per_second=PROMPT_TOKENS_PER_SECOND,
        time_scale=time_scale,
        poll_s=POLL_SECONDS,
        expert_seconds=EXPERT_SECONDS,
        requests=runs,
    )
