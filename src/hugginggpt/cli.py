"""The `hugginggpt` command line: run, plan, chat, models, catalog, bench."""

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


@app.command()
def bench(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the measurements as one JSON object")] = False,
) -> None:
    """Time the controller LLM and the pipeline in one run: cold vs warm planning, tokens/s, plan streaming, RSS."""
    import tempfile

    from .eval.bench import run_bench

    gpt = _pipeline(_settings(ctx))
    with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as folder:
        try:
            report = asyncio.run(
                run_bench(gpt, Path(folder), progress=lambda m: err.print(f"[dim]{m}…[/]", soft_wrap=True))
            )
        except HuggingGPTError as exc:
            raise _fail(str(exc)) from None
    ratios = report.ratios()
    if as_json:
        sys.stdout.write(json.dumps({**report.model_dump(mode="json"), "ratios": ratios}) + "\n")
        return
    plans = Table(
        "plan", "seconds", "first task", "prompt tok", "cached", "prompt tok/s", "gen tok", "gen tok/s", "tasks"
    )
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


def entrypoint() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[dim]interrupted[/]")
        raise SystemExit(130) from None


if __name__ == "__main__":
    entrypoint()
