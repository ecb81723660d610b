"""The model catalogue commands: models and catalog refresh."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings
from ..errors import HuggingGPTError
from ..types import ModelCard
from . import render
from .base import ExecutorOption, app, catalog_app, fail, settings_of
from .render import err


@app.command()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print every card as JSON")] = False,
    task: Annotated[str | None, typer.Option(help="only this task type")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="include models no backend can run now")] = False,
    measure: Annotated[
        bool, typer.Option("--measure", help="load each embedded expert and time it on a sample input")
    ] = False,
    executor: ExecutorOption = None,
) -> None:
    """The model catalogue per task type: which experts can run now, and from which backend. With `--executor ray`,
    also the Ray cluster's nodes and the expert actors up on it (of every process), where, with what memory."""
    settings = settings_of(ctx, executor=executor)
    if measure:
        _measure(settings, as_json)
        return
    ray_status = _ray_status(settings) if settings.executor == "ray" else None
    cards, note = _catalog_cards(settings)
    cards = sorted(
        (c for c in cards if task is None or c.task == task),
        key=lambda c: (c.task, not c.available, c.backend != "embedded", -c.downloads, c.id),
    )
    if as_json:
        fields = {"task", "id", "backend", "available", "downloads", "license", "description", "availability"}
        listed = [c.model_dump(include=fields) for c in cards]
        shown = listed if ray_status is None else {"models": listed, "ray": ray_status.model_dump()}
        sys.stdout.write(json.dumps(shown) + "\n")
        return
    render.print_models(cards, show_all, only=task)
    if note:
        err.print(f"[dim]{note}[/]", soft_wrap=True)
    if ray_status is not None:
        render.print_ray_status(ray_status, settings.ray_address)


def _ray_status(settings: Settings) -> Any:
    """The Ray cluster's nodes and expert actors (`ClusterStatus`), or a one-line error."""
    try:
        from ..distributed import cluster_status, connect
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise fail("the ray executor needs the `ray` extra: pip install 'hugginggpt[ray]'") from None
    try:
        connect(settings.ray_address)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    return cluster_status()


def _catalog_cards(settings: Settings) -> tuple[list[ModelCard], str | None]:
    """The catalogue the pipeline would select from; without a configured LLM, the rest of it still shows."""
    from ..llm import llm_from_settings
    from ..pipeline import default_experts

    note = None
    try:
        llm = llm_from_settings(settings)
    except HuggingGPTError as exc:
        llm, note = None, f"the controller LLM's text tasks are not listed: {exc}"
    try:
        _, catalog = default_experts(settings, llm)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    return catalog.cards(), note


def _measure(settings: Settings, as_json: bool) -> None:
    """Time every embedded expert: load, then the median of three runs on an input made on the spot."""
    import tempfile

    from ..experts.protocol import LocalExpert
    from ..experts.registry import default_registry
    from ..experts.timing import measure_experts, peak_rss_mib

    registry = default_registry(settings, None)
    experts = [e for e in registry.experts() if isinstance(e, LocalExpert) and e.card.backend == "embedded"]
    with tempfile.TemporaryDirectory(prefix="hugginggpt-measure-") as folder:
        timings = asyncio.run(measure_experts(experts, Path(folder)))
    rss = round(peak_rss_mib(), 1)
    if as_json:
        sys.stdout.write(json.dumps({"experts": [t.model_dump() for t in timings], "peak_rss_mib": rss}) + "\n")
        return
    render.print_timings(timings, rss)


@catalog_app.command("refresh")
def catalog_refresh(
    per_task: Annotated[int, typer.Option(help="models to keep per task type")] = 50,
    output: Annotated[Path | None, typer.Option(help="snapshot file (default: the user cache)")] = None,
    task: Annotated[list[str] | None, typer.Option(help="task types to list (default: all 24)")] = None,
) -> None:
    """List the most downloaded Hub models per task type (HfApi.list_models) into a snapshot file."""
    from ..catalog import default_snapshot_path, refresh_snapshot
    from ..tasks import DEFAULT_TASK_TYPES

    path = output or default_snapshot_path()
    tasks = task or [t.name for t in DEFAULT_TASK_TYPES]
    try:
        count = refresh_snapshot(path, tasks, per_task=per_task)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    err.print(f"wrote {count} models for {len(tasks)} task types to {path}")
