"""What the command line prints: progress lines of a run's events, and the Rich tables of each command."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ..types import Answer, Event, ModelCard

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# run, demo, chat, plan


def describe(event: Event) -> str | None:
    """One progress line for an event of a run, or None for those not shown."""
    data = event.data
    if event.type == "plan.task":
        task = data["task"]
        args = ", ".join(f"{k}={v!r}" for k, v in task["args"].items())
        dep = f" after {task['dep']}" if task["dep"] else ""
        return f"[cyan]plan[/]   task {task['id']} {task['task']}({args}){dep}"
    if event.type == "selection":
        return f"[blue]model[/]  task {data['task_id']} → {data['model_id'] or '—'} [dim]({data['reason']})[/]"
    if event.type == "task.start":
        early = " [dim](the plan is still being written)[/]" if data.get("while_planning") else ""
        return f"[yellow]start[/]  task {data['task_id']} {data['task']} with {data['model']}{early}"
    if event.type == "task.end":
        seconds = f" in {data['seconds']:.1f} s" if data.get("seconds") is not None else ""
        if data["status"] == "ok":
            return f"[green]done[/]   task {data['task_id']} {data['task']}{seconds}"
        return f"[red]{data['status']}[/] task {data['task_id']} {data['task']}: {data['error']}"
    if event.type == "error":
        return f"[red]error[/]  {data['stage']}: {data['message']}"
    return None


async def follow(events: AsyncIterator[Event], *, show: bool) -> Answer:
    """Consume a run's events and return its Answer; with `show`, progress lines go to stderr and the answer's
    tokens to stdout as they come."""
    answer: Answer | None = None
    answering = False
    async for event in events:
        if event.type == "answer.done":
            answer = Answer.model_validate(event.data["answer"])
        elif event.type == "answer.token":
            if show:
                if not answering:
                    err.print()
                    answering = True
                out.print(event.data["text"], end="", markup=False)
        elif show and (line := describe(event)):
            err.print(line, soft_wrap=True)
    if show and answering:
        out.print()
    assert answer is not None
    return answer


def report(answer: Answer) -> None:
    """The files an answer made, and its LLM calls and stage times."""
    files = answer.artifacts()
    if files:
        err.print("\n[bold]files[/]")
        for artifact in files:
            err.print(f"  {artifact.path}  [dim]{artifact.media_type}[/]")
    timings = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in answer.timings.items())
    err.print(f"[dim]{answer.llm_calls} LLM calls; {timings}[/]")


def print_plan(tasks: list[dict[str, Any]]) -> None:
    if not tasks:
        out.print("No tasks: the LLM would answer this directly.")
    for task in tasks:
        line = f"{task['id']}: {task['task']} {json.dumps(task['args'])} dep={task['dep']}"
        out.print(line if task["available"] else f"{line}  [unavailable]", markup=False)
        if not task["available"]:
            out.print(f"   {task['unavailable']}", markup=False, style="dim")


# models, setup


def print_models(cards: list[ModelCard], show_all: bool, only: str | None) -> None:
    from ..tasks import DEFAULT_TASK_TYPES, PAPER_TASKS

    names = [only] if only else list(dict.fromkeys([*(t.name for t in DEFAULT_TASK_TYPES), *(c.task for c in cards)]))
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("task", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("backend")
    table.add_column("licence", overflow="fold")
    table.add_column("runs now")
    for name in names:
        rows = [c for c in cards if c.task == name and (c.available or show_all)]
        if not rows:
            table.add_row(name, "[dim]—[/]", "", "", "no")
        for number, card in enumerate(rows):
            runs = "yes" if card.available else "no"
            also = [name for name, ok in card.availability.items() if ok and name != card.backend]
            runs += f" (also {', '.join(also)})" if also else ""
            table.add_row(name if number == 0 else "", card.id, card.backend, card.license or "", runs)
    out.print(table)
    hidden = sum(1 for c in cards if not c.available)
    if hidden and not show_all:
        err.print(f"[dim]{hidden} catalogue models cannot run now; --all lists them[/]")
    if not only:
        served = {c.task for c in cards if c.available}
        embedded = {c.task for c in cards if c.available and c.backend == "embedded"}
        err.print(
            f"{len(served & set(PAPER_TASKS))} of the paper's {len(PAPER_TASKS)} task types can run now, "
            f"{len(embedded & set(PAPER_TASKS))} of them on embedded experts"
        )


def print_ray_status(status: Any, address: str | None) -> None:
    """`models --executor ray`: the cluster's nodes, then the expert actors up on it."""
    where = f"the Ray cluster at {address}" if address else "a local Ray instance (this process only)"
    nodes = Table("node", "address", "alive", "CPUs", "GPUs", "memory MiB", title=f"Ray: {where}", box=box.SIMPLE_HEAD)
    for node in status.nodes:
        nodes.add_row(
            node.node_id[:12],
            node.address,
            "yes" if node.alive else "no",
            f"{node.cpus:g}",
            f"{node.gpus:g}",
            f"{node.memory_mib:g}",
        )
    out.print(nodes)
    if not status.actors:
        err.print("[dim]no expert actors are up: they start with the first task of their model[/]")
    else:
        actors = Table(
            "task", "model", "node", "pid", "RSS MiB", "loaded", "jobs", "running", "idle s", box=box.SIMPLE_HEAD
        )
        for a in status.actors:
            loaded = "" if a.loaded is None else ("yes" if a.loaded else "no")
            idle = "" if a.idle_s is None else f"{a.idle_s:g}"
            actors.add_row(
                a.task,
                a.model_id,
                f"{a.node_id[:12]} ({a.node_address})",
                str(a.pid),
                f"{a.rss_mib:.0f}",
                loaded,
                str(a.jobs),
                str(a.running),
                idle,
            )
        out.print(actors)
    if status.unanswered:
        err.print(f"[dim]{len(status.unanswered)} actors did not answer in time: {', '.join(status.unanswered)}[/]")


def print_timings(timings: list[Any], rss: float) -> None:
    """`models --measure`: load and warm latency of each embedded expert."""
    table = Table("task", "model", "load s", "latency s", "note")
    for t in timings:
        load = "" if t.load_s is None else f"{t.load_s:.2f}"
        latency = "" if t.latency_s is None else f"{t.latency_s:.3f}"
        note = t.error or (f"model loaded by the {t.shares_model_with} card" if t.shares_model_with else "")
        table.add_row(t.task, t.id, load, latency, note)
    out.print(table)
    err.print(
        f"[dim]latency = median of {max((t.runs for t in timings), default=0)} warm runs; "
        f"peak RSS of this process with all of them loaded: {rss} MiB[/]"
    )


def print_setup(reports: list[Any], cache: Any) -> None:
    table = Table("step", "status", "size", "seconds", "detail")
    colors = {"ready": "green", "cached": "green", "unavailable": "yellow", "failed": "red"}
    for r in reports:
        size = f"{sum(r.sizes.values()) / 1e6:.1f} MB" if r.sizes else ""
        table.add_row(r.step, f"[{colors[r.status]}]{r.status}[/]", size, f"{r.seconds:.1f}", r.detail)
    out.print(table)
    err.print(f"[dim]cache: {cache}[/]")


# bench, bench-server


def print_server_bench(report: Any) -> None:
    table = Table("concurrency", "requests", "p50 ms", "p95 ms", "mean ms", "throughput req/s")
    for level in report.levels:
        table.add_row(
            str(level.concurrency),
            str(level.requests),
            f"{level.p50_ms:.1f}",
            f"{level.p95_ms:.1f}",
            f"{level.mean_ms:.1f}",
            f"{level.throughput_rps:.3f}",
        )
    out.print(table)
    for name, value in report.ratios().items():
        out.print(f"{name}: {value:.2f}")
    if report.pipeline == "shipped":
        out.print(f"[dim]the shipped pipeline, controller LLM with {report.slots} slots; client and server here[/]")
    else:
        out.print(f"[dim]scripted LLM, {report.llm_delay_s:g} s per LLM call; client and server on this machine[/]")


def print_workload_b(report: Any) -> None:
    out.print(f"workload B: the real stack ({report.llm}) on everyday requests", soft_wrap=True)
    table = Table("request", "mode", "wall s", "LLM calls", "gen tokens", "1st expert ÷ plan", "peak RSS MiB", "ok")
    for request in report.requests:
        for mode, run in request.modes.items():
            table.add_row(
                request.name,
                mode,
                f"{run.wall_s:.1f}",
                str(run.llm_calls),
                str(run.generated_tokens),
                num(run.first_expert_fraction),
                num(run.peak_rss_mib, 0),
                "yes" if run.ok else f"no: {(run.error or 'a task failed')[:30]}",
            )
        table.add_section()
    out.print(table)
    for name, value in report.ratios().items():
        out.print(f"{name}: {num(value)}")


def print_llm_bench(report: Any) -> None:
    ratios = report.ratios()
    plans = Table("plan", "s", "1st task s", "prompt", "cached", "prompt/s", "gen", "gen/s", "tasks")
    for label, sample in [("cold", report.cold), *(("warm", s) for s in report.warm)]:
        plans.add_row(
            label,
            f"{sample.seconds:.1f}",
            f"{sample.first_task_seconds:.1f}" if sample.first_task_seconds else "—",
            str(sample.prompt_tokens),
            "—" if sample.cached_tokens is None else str(sample.cached_tokens),
            f"{sample.prompt_per_second:.0f}" if sample.prompt_per_second else "—",
            str(sample.generated_tokens),
            f"{sample.generation_per_second:.1f}" if sample.generation_per_second else "—",
            str(sample.tasks) if sample.error is None else f"error: {sample.error[:40]}",
        )
    out.print(
        f"controller LLM: {report.llm}; load {report.load_seconds:.1f} s; "
        f"RSS {report.rss_mib:.0f} MiB (peak {report.peak_rss_mib:.0f} MiB)",
        soft_wrap=True,
    )
    out.print(plans)
    if report.run_streamed_seconds and report.run_sequential_seconds:
        out.print(
            f"one request end to end (fastest of each): {report.run_streamed_seconds:.1f} s with plan streaming, "
            f"{report.run_sequential_seconds:.1f} s without",
            soft_wrap=True,
        )
    table = Table("ratio (same run)", "value")
    for name, value in ratios.items():
        table.add_row(name, "—" if value is None else f"{value:.2f}")
    out.print(table)


def print_workload_a(report: Any) -> None:
    out.print(
        f"workload A: scripted LLM reading {report.prompt_tokens_per_second / report.time_scale:g} and generating "
        f"{report.tokens_per_second / report.time_scale:g} tokens/s, timed experts, "
        f"poll {report.poll_s * report.time_scale:g} s (time scale {report.time_scale:g})",
        soft_wrap=True,
    )
    table = Table("request", "mode", "wall s", "÷ bound", "LLM calls", "gen tokens", "1st expert ÷ plan")
    # requests: chain, fan-out (graphs) and single; 1st expert ÷ plan: when the first expert started / plan time
    for request in report.requests:
        for mode, run in request.modes.items():
            table.add_row(
                request.name,
                mode,
                f"{run.wall_s:.2f}",
                num(request.ratio(mode)),
                str(run.llm_calls),
                str(run.generated_tokens),
                num(run.first_expert_fraction),
            )
        table.add_section()
    out.print(table)
    summary = Table("mode (mean per request)", "wall s", "÷ bound (graphs)", "LLM calls", "gen tokens", "1st ÷ plan")
    for mode, row in report.summary().items():
        summary.add_row(
            mode,
            num(row["wall_s"]),
            num(row["ratio_to_bound"]),
            num(row["llm_calls"], 1),
            num(row["generated_tokens"], 0),
            num(row["first_expert_of_plan"]),
        )
    out.print(summary)
    for name, value in report.ratios().items():
        out.print(f"{name}: {num(value)}")


# eval


def show_prediction(prediction: Any, *, labelled: bool = False) -> None:
    """`eval taskbench`'s progress line per row; `labelled`: with the planner's name (--planner plain or both)."""
    if prediction.plan is None:
        status = f"[red]unparsable[/] {prediction.error}"
    else:
        status = ", ".join(t.task for t in prediction.plan) or "no tasks"
    label = f"[cyan]{prediction.planner}[/] " if labelled else ""
    err.print(f"{label}[dim]{prediction.id}[/] {prediction.seconds:.1f} s  {status}", soft_wrap=True, markup=True)


_VARIANT_TITLES = {"taskbench": "TaskBench (unparsable dropped)", "ours": "ours (unparsable = empty plan)"}
_SCORE_COLUMNS = ("parsed %", "n-F1", "e-F1", "e-F1 (args)", "t-F1", "v-F1")


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _score_cells(s: Any) -> list[str]:
    return [_cell(v) for v in (s.parse_rate, s.node_f1, s.edge_f1, s.edge_f1_args, s.t_f1, s.v_f1)]


def _taskbench_header(report: Any) -> None:
    err.print(f"[dim]{report.samples} rows of {report.data}; tools {report.tools}; LLM {report.llm}[/]")
    if report.unmatched_tools:
        err.print(f"[dim]tools with no task type of ours (described from the tool list): {report.unmatched_tools}[/]")
    if report.outside_tools:
        err.print(f"[dim]label tools missing from the tool list: {report.outside_tools}[/]")


def _per_row(report: Any) -> str:
    return (
        f"{report.seconds_per_sample:.1f} s, {report.prompt_tokens_per_sample:.0f} prompt and "
        f"{report.generated_tokens_per_sample:.0f} generated tokens a row; {report.repaired} plans repaired"
    )


def show_taskbench(report: Any) -> None:
    """`eval taskbench`'s F1 tables per variant and split, for one planner."""
    _taskbench_header(report)
    whose = "" if report.planner == "ours" else f" — {report.planner} planner"
    for name, splits in report.variants.items():
        table = Table("split", "rows", *_SCORE_COLUMNS, title=_VARIANT_TITLES.get(name, name) + whose)
        for split, s in splits.items():
            table.add_row(split, str(s.samples), *_score_cells(s))
        out.print(table)
    out.print(f"[dim]{report.edges}[/]")
    out.print(f"[dim]{_per_row(report)}[/]")


def show_taskbench_comparison(comparison: Any) -> None:
    """`eval taskbench --planner both`: per variant one table, each split's row for every planner one under the
    other, then each planner's seconds and tokens a row."""
    reports = comparison.planners
    first = next(iter(reports.values()))
    _taskbench_header(first)
    for name in first.variants:
        table = Table(title=_VARIANT_TITLES.get(name, name))
        for column in ("split", "rows", "planner"):
            table.add_column(column, no_wrap=True)
        for column in _SCORE_COLUMNS:
            table.add_column(column)
        for split in first.variants[name]:
            for number, (planner, report) in enumerate(reports.items()):
                s = report.variants[name].get(split)
                if s is not None:
                    table.add_row(split if number == 0 else "", str(s.samples), planner, *_score_cells(s))
            table.add_section()
        out.print(table)
    out.print(f"[dim]{first.edges}[/]")
    for planner, report in reports.items():
        out.print(f"[dim]{planner}: {_per_row(report)}[/]")
