"""Run our planner (and the plain baseline, `plain.PlainPlanner`) over TaskBench label rows and score the plans,
per split and in both variants."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import OutputTruncated, PlanError
from ..llm.protocol import UsageMeter
from ..planning.planner import Planner
from ..types import Plan, Task
from .metrics import Scores, score
from .plain import PlainPlanner
from .taskbench import SPLITS, Sample, TaskBenchTools, from_taskbench, load_samples, load_tools

VARIANTS: dict[str, bool] = {"taskbench": True, "ours": False}  # name -> drop unparsable predictions
PLANNERS: tuple[str, ...] = ("ours", "plain")  # `eval taskbench --planner`: ours, the plain baseline, or both
EDGE_NOTE = (
    "edge F1: gold edges from task_links, ours from each task's dep; "
    "edge F1 (args): both from <node-k>/<resource>-N references, as TaskBench's evaluate.py"
)


class Prediction(BaseModel):
    """A planner's answer to one label row: the plan, or None with the error when no valid plan came back."""

    id: str
    planner: str = "ours"
    plan: list[Task] | None
    error: str | None = None
    seconds: float = 0.0
    llm_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0


class Report(BaseModel):
    """One planner's scores per variant and split, with what the tool mapping and the labels left unmatched."""

    planner: str = Field("ours", description="whose plans: ours or plain (the baseline)")
    data: str
    tools: str
    llm: str
    samples: int
    matched_tools: list[str]
    unmatched_tools: list[str] = Field(description="tools with no task type of ours: described from the tool list")
    outside_tools: dict[str, int] = Field(description="label tool names missing from the tool list: node counts")
    label_problems: list[str]
    repaired: int = Field(description="plans that needed the repair call")
    seconds_per_sample: float
    prompt_tokens_per_sample: float
    generated_tokens_per_sample: float = 0.0
    edges: str = EDGE_NOTE
    variants: dict[str, dict[str, Scores]]


class Comparison(BaseModel):
    """`--planner both`: each planner's whole report on the same rows, under its name (ours, plain)."""

    planner: Literal["both"] = "both"
    data: str
    tools: str
    llm: str
    samples: int
    planners: dict[str, Report]

    @classmethod
    def of(cls, reports: Mapping[str, Report]) -> Comparison:
        first = next(iter(reports.values()))
        return cls(data=first.data, tools=first.tools, llm=first.llm, samples=first.samples, planners=dict(reports))


async def predict(
    planner: Planner | PlainPlanner,
    samples: Sequence[Sample],
    on_prediction: Callable[[Prediction], None] | None = None,
    *,
    name: str = "ours",
) -> list[Prediction]:
    """Plan every sample's `instruction`, one at a time, with `planner` (recorded under `name`). A plan that fails
    validation (ours: after the repair call) or is cut off is recorded as None with its error; any other LLM error
    (unreachable, refused) stops the run. A reply of ours written in TaskBench's terms (`<node-N>`, `task_nodes`) is
    read as ours (`from_taskbench`); the plain baseline's reply is taken as written."""
    predictions = []
    for sample in samples:
        meter = UsageMeter()
        start = time.perf_counter()
        plan: list[Task] | None = None
        error = None
        try:
            llm = meter.bind(planner.llm, "planning")
            if isinstance(planner, PlainPlanner):
                plan = (await planner.plan(sample.instruction, llm=llm)).tasks
            else:
                plan = (await planner.plan(sample.instruction, llm=llm, adapt=from_taskbench)).tasks
        except (PlanError, OutputTruncated) as exc:
            error = str(exc)
        prediction = Prediction(
            id=sample.id,
            planner=name,
            plan=plan,
            error=error,
            seconds=round(time.perf_counter() - start, 3),
            llm_calls=len(meter.calls),
            prompt_tokens=sum(c.prompt_tokens for c in meter.calls),
            generated_tokens=sum(c.completion_tokens for c in meter.calls),
        )
        predictions.append(prediction)
        if on_prediction is not None:
            on_prediction(prediction)
    return predictions


def evaluate(
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    tools: TaskBenchTools,
    *,
    data: str = "",
    tools_path: str = "",
    llm: str = "",
    planner: str = "ours",
) -> Report:
    """Score predictions against their samples (matched by id) for every split and variant."""
    by_id = {p.id: p for p in predictions}
    missing = [s.id for s in samples if s.id not in by_id]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} samples, e.g. {missing[0]}")
    names = set(tools.tools)
    problems: list[str] = []
    rows = []
    for sample in samples:
        gold, issues = tools.gold(sample)
        problems.extend(issues)
        prediction = by_id[sample.id]
        pred = None if prediction.plan is None else tools.predicted(Plan(tasks=prediction.plan))
        rows.append((sample.type, gold, pred))
    variants: dict[str, dict[str, Scores]] = {}
    for variant, drop in VARIANTS.items():
        variants[variant] = {}
        for split in SPLITS:
            pairs = [(g, p) for kind, g, p in rows if split in ("overall", kind)]
            if pairs:
                variants[variant][split] = score(pairs, names, drop_unparsed=drop)
    chosen = [by_id[s.id] for s in samples]
    count = max(len(chosen), 1)
    return Report(
        planner=planner,
        data=data,
        tools=tools_path,
        llm=llm,
        samples=len(samples),
        matched_tools=tools.matched,
        unmatched_tools=tools.unmatched,
        outside_tools=tools.outside(samples),
        label_problems=problems,
        repaired=sum(1 for p in chosen if p.llm_calls > 1 and p.plan is not None),
        seconds_per_sample=round(sum(p.seconds for p in chosen) / count, 2),
        prompt_tokens_per_sample=round(sum(p.prompt_tokens for p in chosen) / count, 1),
        generated_tokens_per_sample=round(sum(p.generated_tokens for p in chosen) / count, 1),
        variants=variants,
    )


def save_predictions(predictions: Sequence[Prediction], path: Path) -> None:
    """One JSON line per sample: {"id", "plan": [...] | null, "error", "llm_calls"}, plans in our task format
    (`llm_calls`: 1 for a plan that came out first time; ours: 2 after the repair call, 3 after the single-task
    fallback too); with a `"planner"` too when any prediction is not ours (`--planner plain` or `both`)."""
    tagged = any(p.planner != "ours" for p in predictions)
    with Path(path).open("w", encoding="utf-8") as out:
        for p in predictions:
            plan = None if p.plan is None else [t.model_dump(exclude_none=True) for t in p.plan]  # no empty `step`
            line = {"id": p.id, **({"planner": p.planner} if tagged else {}), "plan": plan, "error": p.error}
            line["llm_calls"] = p.llm_calls
            out.write(json.dumps(line) + "\n")


PlannerFor = Callable[[TaskBenchTools], Planner | PlainPlanner]


async def run_taskbench(
    planner_for: PlannerFor,
    data: Path,
    tools_path: Path | None = None,
    *,
    limit: int | None = None,
    llm: str = "",
    on_prediction: Callable[[Prediction], None] | None = None,
    planner: str = "ours",
) -> tuple[Report, list[Prediction]]:
    """Load `data` and its tool list (default: `tool_desc.json` beside it), plan the first `limit` rows with the
    planner `planner_for` builds on the TaskBench task table (reported as `planner`), and score them."""
    reports, predictions = await run_planners(
        {planner: planner_for}, data, tools_path, limit=limit, llm=llm, on_prediction=on_prediction
    )
    return reports[planner], predictions


async def run_planners(
    planners: Mapping[str, PlannerFor],
    data: Path,
    tools_path: Path | None = None,
    *,
    limit: int | None = None,
    llm: str = "",
    on_prediction: Callable[[Prediction], None] | None = None,
) -> tuple[dict[str, Report], list[Prediction]]:
    """`run_taskbench` for each named planner in turn, on the same rows and task table: one report per planner,
    and every planner's predictions (all of the first planner's rows, then the next one's)."""
    tools_path = tools_path or Path(data).with_name("tool_desc.json")
    samples = load_samples(data)[:limit] if limit is not None else load_samples(data)
    tools = TaskBenchTools(load_tools(tools_path))
    reports: dict[str, Report] = {}
    predictions: list[Prediction] = []
    for name, planner_for in planners.items():
        made = await predict(planner_for(tools), samples, on_prediction, name=name)
        reports[name] = evaluate(
            samples, made, tools, data=str(data), tools_path=str(tools_path), llm=llm, planner=name
        )
        predictions.extend(made)
    return reports, predictions
