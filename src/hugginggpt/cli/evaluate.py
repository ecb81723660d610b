"""The measurement commands: eval taskbench (plan F1 on TaskBench) and eval e2e (the end-to-end suite)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ..errors import HuggingGPTError
from ..planning.planner import TECHNIQUES, check_without
from ..planning.rules import REPAIRS
from . import render
from .base import eval_app, fail, settings_of
from .render import err, out


@eval_app.command("taskbench")
def eval_taskbench(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="TaskBench label rows (JSONL), e.g. data_huggingface/data_sample.jsonl")],
    tools: Annotated[Path | None, typer.Option(help="TaskBench tool_desc.json (default: beside --data)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N rows")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    save_predictions: Annotated[
        Path | None,
        typer.Option(help='write {"id", "plan": [...] | null} per row (JSONL; with "planner" unless --planner ours)'),
    ] = None,
    planner: Annotated[
        Literal["ours", "plain", "both"],
        typer.Option(
            help="whose plans: ours (the production planner), plain (a baseline: a short prompt, one LLM call, "
            'no repair), or both on the same rows; --json then prints {"planner": "both", ..., "planners": '
            '{"ours": report, "plain": report}}, each report as --planner ours or plain prints it'
        ),
    ] = "ours",
    without: Annotated[
        list[str] | None,
        typer.Option(
            help="leave this technique or plan repair out of our planner, to measure what it does (repeatable): "
            + "; ".join(f"{name}: {what}" for name, what in (TECHNIQUES | REPAIRS).items())
        ),
    ] = None,
    llm_cache: Annotated[
        Path | None,
        typer.Option(
            help="answer each LLM call made before (same model, messages and constraint) from this SQLite file, "
            "and keep the new ones there: a rerun with one change makes only the calls that change makes "
            "(greedy decoding: the same answers); seconds a row then count only those calls"
        ),
    ] = None,
) -> None:
    """Plan TaskBench requests with our planner (or the plain baseline, or both) and score node, edge,
    argument-type and -value F1 per split."""
    from ..eval.llm_cache import CachedLLM
    from ..eval.plain import PlainPlanner
    from ..eval.runner import PLANNERS, Comparison, run_planners
    from ..eval.runner import save_predictions as write_predictions
    from ..llm import llm_from_settings
    from ..planning import Planner

    settings = settings_of(ctx)
    try:
        check_without(without or ())
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        llm = llm_from_settings(settings)
        if llm_cache is not None:
            llm = CachedLLM(llm, llm_cache)
        factories = {
            "ours": lambda tb: Planner.from_settings(llm, tb.table, settings, without=without or ()),
            "plain": lambda tb: PlainPlanner(llm, tb.table),
        }
        names = PLANNERS if planner == "both" else (planner,)
        reports, predictions = asyncio.run(
            run_planners(
                {name: factories[name] for name in names},
                data,
                tools,
                limit=limit,
                llm=getattr(llm, "name", type(llm).__name__),
                on_prediction=lambda p: render.show_prediction(p, labelled=planner != "ours"),
            )
        )
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    if isinstance(llm, CachedLLM):
        err.print(f"LLM calls: {llm.hits} answered from {llm_cache}, {llm.misses} made", soft_wrap=True)
        llm.close()
    if save_predictions is not None:
        write_predictions(predictions, save_predictions)
    report = Comparison.of(reports) if planner == "both" else reports[planner]
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
        return
    if isinstance(report, Comparison):
        render.show_taskbench_comparison(report)
    else:
        render.show_taskbench(report)


@eval_app.command("e2e")
def eval_e2e(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    only: Annotated[str | None, typer.Option(help="only the cases of this kind, e.g. 'ocr' or 'vqa'")] = None,
    matching: Annotated[str | None, typer.Option("-k", help="only the cases whose id or request contains this")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most N cases")] = None,
    inputs_dir: Annotated[Path | None, typer.Option(help="build the inputs here (default: a temporary folder)")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="keep the outputs here (default: a temporary folder)")] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="append each case's result here as it ends (JSONL); cases already in it are not run again"),
    ] = None,
) -> None:
    """Run the end-to-end suite (user requests on photos, drawn documents, espeak-ng speech and text files) and check
    each answer as a person would: success per kind, failures with reasons, LLM calls and seconds per request."""
    from ..eval.e2e import format_case, format_report, run_from_settings

    settings = settings_of(ctx)
    try:
        report = run_from_settings(
            settings,
            only=only,
            matching=matching,
            limit=limit,
            inputs_dir=inputs_dir,
            output_dir=output_dir,
            results=results,
            on_case=lambda result: err.print(format_case(result), markup=False, highlight=False, soft_wrap=True),
            progress=lambda message: err.print(f"[dim]{message}[/]", soft_wrap=True),
        )
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
        return
    out.print(format_report(report), markup=False, soft_wrap=True)
