"""The `hugginggpt` command line: run, plan, chat, models, catalog, eval."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from .config import Settings
from .errors import HuggingGPTError
from .pipeline import Conversation, HuggingGPT
from .types import Answer, Event

app = typer.Typer(help="HuggingGPT: plan a request as AI tasks, run expert models, and answer.", no_args_is_help=True)
catalog_app = typer.Typer(help="The model catalogue snapshot.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
eval_app = typer.Typer(help="Measure the pipeline.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@app.callback()
def main(
    ctx: typer.Context,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible LLM endpoint (HUGGINGGPT_LLM_BASE_URL)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="model name at that endpoint (HUGGINGGPT_LLM_MODEL)")] = None,
    model_path: Annotated[Path | None, typer.Option(help="a GGUF file for the embedded LLM")] = None,
    selection: Annotated[str | None, typer.Option(help="model selection strategy: llm or top")] = None,
) -> None:
    overrides = {
        "llm_base_url": base_url,
        "llm_model": model,
        "llm_model_path": model_path,
        "selection": selection,
    }
    ctx.obj = {k: v for k, v in overrides.items() if v is not None}


def _settings(ctx: typer.Context, **extra: Any) -> Settings:
    values = {**(ctx.obj or {}), **{k: v for k, v in extra.items() if v is not None}}
    try:
        return Settings(**values)
    except (ValidationError, FileNotFoundError) as exc:
        raise _fail(f"bad settings: {exc}") from None


def _pipeline(settings: Settings) -> HuggingGPT:
    try:
        return HuggingGPT.from_settings(settings)
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None


def _describe(event: Event) -> str | None:
    data = event.data
    if event.type == "plan.task":
        task = data["task"]
        args = ", ".join(f"{k}={v!r}" for k, v in task["args"].items())
        dep = f" after {task['dep']}" if task["dep"] else ""
        return f"[cyan]plan[/]   task {task['id']} {task['task']}({args}){dep}"
    if event.type == "selection":
        return f"[blue]model[/]  task {data['task_id']} → {data['model_id'] or '—'} [dim]({data['reason']})[/]"
    if event.type == "task.start":
        return f"[yellow]start[/]  task {data['task_id']} {data['task']} with {data['model']}"
    if event.type == "task.end":
        seconds = f" in {data['seconds']:.1f} s" if data.get("seconds") is not None else ""
        if data["status"] == "ok":
            return f"[green]done[/]   task {data['task_id']} {data['task']}{seconds}"
        return f"[red]{data['status']}[/] task {data['task_id']} {data['task']}: {data['error']}"
    if event.type == "error":
        return f"[red]error[/]  {data['stage']}: {data['message']}"
    return None


async def _stream(gpt: HuggingGPT, request: str, *, show: bool, **kwargs: Any) -> Answer:
    answer: Answer | None = None
    answering = False
    async for event in gpt.stream(request, **kwargs):
        if event.type == "answer.done":
            answer = Answer.model_validate(event.data["answer"])
        elif event.type == "answer.token":
            if show:
                if not answering:
                    err.print()
                    answering = True
                out.print(event.data["text"], end="", markup=False)
        elif show and (line := _describe(event)):
            err.print(line, soft_wrap=True)
    if show and answering:
        out.print()
    assert answer is not None
    return answer


def _report(answer: Answer) -> None:
    files = answer.artifacts()
    if files:
        err.print("\n[bold]files[/]")
        for artifact in files:
            err.print(f"  {artifact.path}  [dim]{artifact.media_type}[/]")
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in answer.timings.items())
    err.print(f"[dim]{answer.llm_calls} LLM calls; {timings}[/]")


@app.command()
def run(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="what you want done, e.g. 'count the zebras in zebras.jpg'")],
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--inputs", "-i", help="folder input files may come from (repeatable; default: current folder)"),
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where results go (default ./outputs)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the Answer as one JSON object")] = False,
) -> None:
    """Plan, select, execute and answer one request, showing progress as tasks start and finish."""
    settings = _settings(ctx, output_dir=output_dir)
    roots = _input_roots(inputs)
    gpt = _pipeline(settings)
    try:
        answer = asyncio.run(_stream(gpt, request, show=not as_json, inputs=roots))
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(answer.model_dump_json() + "\n")
    else:
        _report(answer)
    if answer.error:
        raise typer.Exit(1)


def _input_roots(inputs: list[Path] | None) -> list[Path]:
    roots = inputs or [Path.cwd()]
    for root in roots:
        if not root.is_dir():
            raise _fail(f"--inputs {root} is not a folder")
    return roots


@app.command()
def plan(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="the request to plan")],
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as a JSON list of tasks")] = False,
) -> None:
    """Stage 1 only: print the validated task plan."""
    gpt = _pipeline(_settings(ctx))
    try:
        result = asyncio.run(gpt.plan(request))
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    tasks = [t.model_dump() for t in result.tasks]
    if as_json:
        sys.stdout.write(json.dumps(tasks) + "\n")
        return
    if not tasks:
        out.print("No tasks: the LLM would answer this directly.")
    for task in tasks:
        out.print(f"{task['id']}: {task['task']} {json.dumps(task['args'])} dep={task['dep']}", markup=False)


@app.command()
def chat(
    ctx: typer.Context,
    inputs: Annotated[
        list[Path] | None, typer.Option("--inputs", "-i", help="folder input files may come from")
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where results go (default ./outputs)")] = None,
) -> None:
    """A multi-turn conversation; later turns can use earlier results. Type /exit or press Ctrl-D to leave."""
    settings = _settings(ctx, output_dir=output_dir)
    roots = _input_roots(inputs)
    gpt = _pipeline(settings)
    conversation = Conversation()
    err.print("[dim]HuggingGPT chat. /exit or Ctrl-D to leave.[/]")
    while True:
        try:
            request = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            err.print()
            return
        if request in ("/exit", "/quit"):
            return
        if not request:
            continue
        try:
            answer = asyncio.run(_stream(gpt, request, show=True, inputs=roots, conversation=conversation))
        except HuggingGPTError as exc:
            err.print(f"[red]error:[/] {exc}")
            continue
        _report(answer)


@app.command()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print every card as JSON")] = False,
    task: Annotated[str | None, typer.Option(help="only this task type")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="include models no backend can run now")] = False,
) -> None:
    """The model catalogue: task, model, backend, and whether it can run now."""
    gpt = _pipeline(_settings(ctx))
    cards = sorted(gpt.catalog.cards(task), key=lambda c: (c.task, not c.available, -c.downloads, c.id))
    if as_json:
        rows = [c.model_dump(include={"task", "id", "backend", "available", "downloads", "license"}) for c in cards]
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("task", "model", "backend", "available")
    for card in cards:
        if card.available or show_all:
            table.add_row(card.task, card.id, card.backend, "yes" if card.available else "no")
    out.print(table)
    hidden = sum(1 for c in cards if not c.available)
    if hidden and not show_all:
        err.print(f"[dim]{hidden} catalogue models cannot run now; --all lists them[/]")


@catalog_app.command("refresh")
def catalog_refresh(
    per_task: Annotated[int, typer.Option(help="models to keep per task type")] = 50,
    output: Annotated[Path | None, typer.Option(help="snapshot file (default: the user cache)")] = None,
    task: Annotated[list[str] | None, typer.Option(help="task types to list (default: all 24)")] = None,
) -> None:
    """List the most downloaded Hub models per task type (HfApi.list_models) into a snapshot file."""
    from .catalog import default_snapshot_path, refresh_snapshot
    from .tasks import DEFAULT_TASK_TYPES

    path = output or default_snapshot_path()
    tasks = task or [t.name for t in DEFAULT_TASK_TYPES]
    try:
        count = refresh_snapshot(path, tasks, per_task=per_task)
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    err.print(f"wrote {count} models for {len(tasks)} task types to {path}")


@eval_app.command("taskbench")
def eval_taskbench(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="TaskBench label rows (JSONL), e.g. data_huggingface/data_sample.jsonl")],
    tools: Annotated[Path | None, typer.Option(help="TaskBench tool_desc.json (default: beside --data)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    save_predictions: Annotated[
        Path | None, typer.Option(help='write {"id", "plan": [...] | null} per row (JSONL)')
    ] = None,
) -> None:
    """Plan TaskBench requests with our planner and score node, edge, argument-type and -value F1 per split."""
    from .eval.runner import run_taskbench
    from .eval.runner import save_predictions as write_predictions
    from .llm import llm_from_settings
    from .planning import Planner

    settings = _settings(ctx)
    try:
        llm = llm_from_settings(settings)
        report, predictions = asyncio.run(
            run_taskbench(
                lambda tb: Planner(llm, tb.table),
                data,
                tools,
                limit=limit,
                llm=getattr(llm, "name", type(llm).__name__),
                on_prediction=_show_prediction,
            )
        )
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    if save_predictions is not None:
        write_predictions(predictions, save_predictions)
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
        return
    _show_report(report)


def _show_prediction(prediction: Any) -> None:
    if prediction.plan is None:
        status = f"[red]unparsable[/] {prediction.error}"
    else:
        status = ", ".join(t.task for t in prediction.plan) or "no tasks"
    err.print(f"[dim]{prediction.id}[/] {prediction.seconds:.1f} s  {status}", soft_wrap=True, markup=True)


def _show_report(report: Any) -> None:
    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    err.print(f"[dim]{report.samples} rows of {report.data}; tools {report.tools}; LLM {report.llm}[/]")
    if report.unmatched_tools:
        err.print(f"[dim]tools with no task type of ours (described from the tool list): {report.unmatched_tools}[/]")
    if report.outside_tools:
        err.print(f"[dim]label tools missing from the tool list: {report.outside_tools}[/]")
    for name, splits in report.variants.items():
        title = "TaskBench (unparsable dropped)" if name == "taskbench" else "ours (unparsable = empty plan)"
        table = Table("split", "rows", "parsed %", "n-F1", "e-F1", "e-F1 (args)", "t-F1", "v-F1", title=title)
        for split, s in splits.items():
            table.add_row(
                split,
                str(s.samples),
                cell(s.parse_rate),
                *(cell(v) for v in (s.node_f1, s.edge_f1, s.edge_f1_args, s.t_f1, s.v_f1)),
            )
        out.print(table)
    out.print(f"[dim]{report.edges}[/]")
    out.print(
        f"[dim]{report.seconds_per_sample:.1f} s and {report.prompt_tokens_per_sample:.0f} prompt tokens a row; "
        f"{report.repaired} plans repaired[/]"
    )


def entrypoint() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[dim]interrupted[/]")
        raise SystemExit(130) from None


if __name__ == "__main__":
    entrypoint()
