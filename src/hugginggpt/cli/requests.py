"""The commands that run requests: run, demo, plan and chat."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import Settings
from ..errors import HuggingGPTError
from ..pipeline import Conversation, HuggingGPT
from ..setup.files import DEMO_REQUEST
from . import render
from .base import ExecutorOption, app, fail, input_roots, pipeline, settings_of
from .render import err


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
    executor: ExecutorOption = None,
) -> None:
    """Plan, select, execute and answer one request, showing progress as tasks start and finish."""
    run_request(settings_of(ctx, output_dir=output_dir, executor=executor), request, input_roots(inputs), as_json)


def run_request(settings: Settings, request: str, roots: list[Path], as_json: bool) -> None:
    gpt = pipeline(settings)
    try:
        answer = asyncio.run(render.follow(gpt.stream(request, inputs=roots), show=not as_json))
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(answer.model_dump_json() + "\n")
    else:
        render.report(answer)
    if answer.error:
        raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    request: Annotated[str, typer.Option(help="the request to run on the demo inputs")] = DEMO_REQUEST,
    output_dir: Annotated[Path | None, typer.Option(help="where results go (default ./outputs)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the Answer as one JSON object")] = False,
    executor: ExecutorOption = None,
) -> None:
    """Run a real multimodal request, offline, on the demo inputs `hugginggpt setup` prepared."""
    from ..setup.files import demo_inputs, missing_demo_files

    folder = demo_inputs()
    missing = missing_demo_files(folder)
    if request == DEMO_REQUEST and missing:
        raise fail(f"the demo inputs {', '.join(missing)} are not in {folder}; run `hugginggpt setup` first")
    if not as_json:
        err.print(f"[bold]demo:[/] {request}\n[dim]inputs from {folder}[/]", soft_wrap=True)
    run_request(settings_of(ctx, output_dir=output_dir, executor=executor), request, [folder], as_json)


@app.command()
def plan(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(help="the request to plan")],
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as a JSON list of tasks")] = False,
) -> None:
    """Stage 1 only: print the validated task plan; tasks no installed model serves are marked unavailable."""
    from ..coverage import what_would_serve

    settings = settings_of(ctx)
    gpt = pipeline(settings)
    try:
        result = asyncio.run(gpt.plan(request))
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    tasks = []
    for task in result.tasks:
        item = task.model_dump()
        item["available"] = bool(gpt.catalog.candidates(task.task, 1, task.args))
        if not item["available"]:
            item["unavailable"] = what_would_serve(task.task, gpt.catalog, routing=settings.routing)
        tasks.append(item)
    if as_json:
        sys.stdout.write(json.dumps(tasks) + "\n")
        return
    render.print_plan(tasks)


@app.command()
def chat(
    ctx: typer.Context,
    inputs: Annotated[
        list[Path] | None, typer.Option("--inputs", "-i", help="folder input files may come from")
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where results go (default ./outputs)")] = None,
    executor: ExecutorOption = None,
) -> None:
    """A multi-turn conversation; later turns can use earlier results. Type /exit or press Ctrl-D to leave."""
    settings = settings_of(ctx, output_dir=output_dir, executor=executor)
    roots = input_roots(inputs)
    gpt = pipeline(settings)
    err.print("[dim]HuggingGPT chat. /exit or Ctrl-D to leave.[/]")
    with asyncio.Runner() as loop:
        chat_session(gpt, roots, loop)


def chat_session(gpt: HuggingGPT, roots: list[Path], loop: asyncio.Runner) -> None:
    """Read a request per line and run each turn on the session's one event loop, so what the pipeline keeps on
    the loop (clients, locks) lasts across turns. The prompt is read outside the loop, so Ctrl-C there leaves the
    chat at once, and Ctrl-C during a turn cancels it and ends the command, as an interrupted `run` does."""
    conversation = Conversation()
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
            answer = loop.run(render.follow(gpt.stream(request, inputs=roots, conversation=conversation), show=True))
        except HuggingGPTError as exc:
            err.print(f"[red]error:[/] {exc}")
            continue
        render.report(answer)
