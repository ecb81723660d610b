"""The benchmark commands: bench-server (the HTTP server's latency) and bench (workloads A, B, server and llm)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import HuggingGPTError
from . import render
from .base import app, fail, pipeline, server_modules, settings_of
from .render import err


@app.command("bench-server")
def bench_server(
    ctx: typer.Context,
    requests: Annotated[int, typer.Option(help="requests sent at each concurrency level")] = 40,
    concurrency: Annotated[int, typer.Option(help="the concurrent level compared with 1")] = 20,
    llm_delay: Annotated[float, typer.Option(help="seconds each scripted LLM call waits, like a real LLM")] = 0.0,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="the shipped stack (embedded LLM and experts), not the scripted LLM")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Latency of the HTTP server: p50/p95 at 1 and N concurrent chat completions (real server on 127.0.0.1;
    the scripted LLM, or with --embedded the shipped stack on everyday text requests)."""
    server_modules()
    from ..server.bench import bench_server as run_bench

    settings = settings_of(ctx) if embedded else None
    report = run_bench(
        requests=requests, levels=(1, concurrency), llm_delay=llm_delay, embedded=embedded, settings=settings
    )
    if as_json:
        sys.stdout.write(json.dumps({**report.model_dump(), "ratios": report.ratios()}) + "\n")
        return
    render.print_server_bench(report)


WORKLOADS = ("all", "a", "b", "server", "llm", "load", "ray")


@app.command()
def bench(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the measurements as one JSON object")] = False,
    workload: Annotated[
        str,
        typer.Option(
            help="all: everything below; a: scripted LLM and timed experts (no model, seconds); b: the real "
            "embedded stack on everyday requests, fresh process and warm (minutes); server: the server with the "
            "embedded LLM at 1 and 4 concurrent requests; llm: the controller LLM's cold/warm planning; load (not in "
            "all): 50 conversations over 5 API keys for 30 s on the scripted LLM, checked for lost requests and "
            "cross-key reads (python -m hugginggpt.server.load for other sizes); ray (not in all): workload A on the "
            "local executor and on the Ray executor, turn about (the `ray` extra)"
        ),
    ] = "all",
    time_scale: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="workload A's times (token rates, expert times, poll interval) scaled by this; ratios unchanged",
        ),
    ] = 0.25,
    no_staged: Annotated[
        bool, typer.Option("--no-staged", help="workload B without the staged mode (saves a run per request)")
    ] = False,
) -> None:
    """Compare, in one run: ours, ours-no-stream, ours-code, the paper's staged pipeline and the critical-path
    bound on scripted requests (A); the real stack in a fresh process and warm (B); the server at 1 vs 4 concurrent
    requests; and the controller LLM's cold vs warm planning."""
    import tempfile

    if workload not in WORKLOADS:
        raise fail(f"unknown workload {workload!r}; choose {', '.join(WORKLOADS)}")
    data: dict[str, Any] = {}
    progress = lambda m: err.print(f"[dim]{m}…[/]", soft_wrap=True)  # noqa: E731
    chosen = {"a", "b", "server", "llm"} if workload == "all" else {workload}
    if "a" in chosen:
        from ..eval.bench_modes import run_workload_a

        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-a-") as folder:
            workload_a = asyncio.run(run_workload_a(Path(folder), time_scale=time_scale, progress=progress))
        data = {**data, **workload_a.summary(), "workload_a": workload_a.to_json()}  # `ours`, `staged`, `bound`, …
        if not as_json:
            render.print_workload_a(workload_a)
    gpt = pipeline(settings_of(ctx)) if chosen & {"b", "llm"} else None
    if "llm" in chosen:  # first: its cold plan needs an LLM that has seen no prompt yet
        from ..eval.bench import run_bench

        assert gpt is not None
        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as folder:
            try:
                report = asyncio.run(run_bench(gpt, Path(folder), progress=progress))
            except HuggingGPTError as exc:
                raise fail(str(exc)) from None
        data["llm"] = {**report.model_dump(mode="json"), "ratios": report.ratios()}
        if not as_json:
            render.print_llm_bench(report)
    if "b" in chosen:
        from ..eval.bench_real import run_workload_b
        from ..setup.files import demo_inputs, missing_demo_files

        assert gpt is not None
        inputs = demo_inputs()
        if missing := missing_demo_files(inputs):
            raise fail(f"the demo inputs {', '.join(missing)} are not in {inputs}; run `hugginggpt setup` first")
        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-b-") as folder:
            try:
                workload_b = asyncio.run(
                    run_workload_b(gpt, inputs, Path(folder), staged=not no_staged, progress=progress)
                )
            except HuggingGPTError as exc:
                raise fail(str(exc)) from None
        data["workload_b"] = workload_b.to_json()
        if not as_json:
            render.print_workload_b(workload_b)
    if "server" in chosen:
        server_modules()
        from ..server.bench import bench_server as run_server_bench

        progress("server with the embedded LLM: 1, then 4 concurrent requests")
        server = run_server_bench(requests=4, levels=(1, 4), embedded=True, settings=settings_of(ctx))
        data["server"] = {**server.model_dump(), "ratios": server.ratios()}
        if not as_json:
            render.print_server_bench(server)
    if "load" in chosen:
        server_modules()
        from ..server.load import run_load

        progress("load: 50 conversations over 5 API keys for 30 s (scripted LLM)")
        load = run_load()
        data["load"] = load.model_dump()
        if not as_json:
            render.out.print("\n".join(load.lines()), soft_wrap=True, markup=False)
    if "ray" in chosen:
        try:
            from ..distributed.overhead import measure_overhead
        except ModuleNotFoundError as exc:
            raise fail(
                f"the ray workload needs the `ray` extra ({exc.name} is missing): pip install 'hugginggpt[ray]'"
            ) from None
        progress("ray: workload A on the local executor and on the Ray executor, turn about")
        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-ray-") as folder:
            try:
                overhead = asyncio.run(measure_overhead(Path(folder), time_scale=time_scale))
            except HuggingGPTError as exc:
                raise fail(str(exc)) from None
        data["ray"] = {**overhead.model_dump(), "ratio": overhead.ratio()}
        if not as_json:
            render.out.print("\n".join(overhead.lines()), soft_wrap=True, markup=False)
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
