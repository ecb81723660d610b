"""`hugginggpt setup`: fetch and convert the offline models and demo inputs into the cache."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from . import render
from .base import app, fail, settings_of
from .render import err


@app.command()
def setup(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="fetch and convert again even when the cache is intact")
    ] = False,
    step: Annotated[list[str] | None, typer.Option(help="only this step (repeatable); default: all")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the step reports as JSON")] = False,
    demo_dir: Annotated[bool, typer.Option("--demo-dir", help="print the demo input folder and exit")] = False,
) -> None:
    """Fetch and convert the offline vision models and demo inputs into the cache, and save the controller LLM's
    processed planning prompt there (later runs are instant)."""
    from ..setup.files import demo_inputs
    from ..setup.steps import CacheNotWritable, run_steps, select_steps

    if demo_dir:
        sys.stdout.write(f"{demo_inputs()}\n")
        return
    try:
        steps = select_steps(step)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        reports = run_steps(
            steps, settings=lambda: settings_of(ctx), force=force, log=lambda message: err.print(f"[dim]{message}[/]")
        )
    except CacheNotWritable as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps([r.model_dump() for r in reports]) + "\n")
    else:
        render.print_setup(reports, demo_inputs().parent)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)
