"""The `hugginggpt` command line: run, demo, plan, chat, models, catalog, setup, serve, serve-models, bench, eval."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from .config import Settings
from .errors import HuggingGPTError
from .pipeline import Conversation, HuggingGPT
from .types import Answer, Event, ModelCard

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
    selection: Annotated[str | None, typer.Option(help="model selection strategy: fit (default), llm or top")] = None,
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
    timings = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in answer.timings.items())
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
    _run_request(_settings(ctx, output_dir=output_dir), request, _input_roots(inputs), as_json)


def _run_request(settings: Settings, request: str, roots: list[Path], as_json: bool) -> None:
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


# The demo uses three embedded experts in one graph: COCO detection, OCR, and text-to-speech fed by the OCR.
DEMO_REQUEST = "Count the objects in kite.jpg, read the text in sign.png, and read that text aloud."
DEMO_FILES = ("kite.jpg", "sign.png")


@app.command()
def demo(
    ctx: typer.Context,
    request: Annotated[str, typer.Option(help="the request to run on the demo inputs")] = DEMO_REQUEST,
    output_dir: Annotated[Path | None, typer.Option(help="where results go (default ./outputs)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the Answer as one JSON object")] = False,
) -> None:
    """Run a real multimodal request, offline, on the demo inputs `hugginggpt setup` prepared."""
    from .setup.files import demo_inputs

    folder = demo_inputs()
    missing = [name for name in DEMO_FILES if not (folder / name).is_file()]
    if request == DEMO_REQUEST and missing:
        raise _fail(f"the demo inputs {', '.join(missing)} are not in {folder}; run `hugginggpt setup` first")
    if not as_json:
        err.print(f"[bold]demo:[/] {request}\n[dim]inputs from {folder}[/]", soft_wrap=True)
    _run_request(_settings(ctx, output_dir=output_dir), request, [folder], as_json)


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
    """Stage 1 only: print the validated task plan; tasks no installed model serves are marked unavailable."""
    from .coverage import what_would_serve

    settings = _settings(ctx)
    gpt = _pipeline(settings)
    try:
        result = asyncio.run(gpt.plan(request))
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
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
    if not tasks:
        out.print("No tasks: the LLM would answer this directly.")
    for task in tasks:
        line = f"{task['id']}: {task['task']} {json.dumps(task['args'])} dep={task['dep']}"
        out.print(line if task["available"] else f"{line}  [unavailable]", markup=False)
        if not task["available"]:
            out.print(f"   {task['unavailable']}", markup=False, style="dim")


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
    measure: Annotated[
        bool, typer.Option("--measure", help="load each embedded expert and time it on a sample input")
    ] = False,
) -> None:
    """The model catalogue per task type: which experts can run now, and from which backend."""
    settings = _settings(ctx)
    if measure:
        _measure(settings, as_json)
        return
    cards, note = _catalog_cards(settings)
    cards = sorted(
        (c for c in cards if task is None or c.task == task),
        key=lambda c: (c.task, not c.available, c.backend != "embedded", -c.downloads, c.id),
    )
    if as_json:
        fields = {"task", "id", "backend", "available", "downloads", "license", "description", "availability"}
        sys.stdout.write(json.dumps([c.model_dump(include=fields) for c in cards]) + "\n")
        return
    _print_models(cards, show_all, only=task)
    if note:
        err.print(f"[dim]{note}[/]", soft_wrap=True)


def _catalog_cards(settings: Settings) -> tuple[list[ModelCard], str | None]:
    """The catalogue the pipeline would select from; without a configured LLM, the rest of it still shows."""
    from .llm import llm_from_settings
    from .pipeline import default_experts

    note = None
    try:
        llm = llm_from_settings(settings)
    except HuggingGPTError as exc:
        llm, note = None, f"the controller LLM's text tasks are not listed: {exc}"
    try:
        _, catalog = default_experts(settings, llm)
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    return catalog.cards(), note


def _print_models(cards: list[ModelCard], show_all: bool, only: str | None) -> None:
    from .tasks import DEFAULT_TASK_TYPES, PAPER_TASKS

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


def _measure(settings: Settings, as_json: bool) -> None:
    """Time every embedded expert: load, then the median of three runs on an input made on the spot."""
    import tempfile

    from .experts.protocol import LocalExpert
    from .experts.registry import default_registry
    from .experts.timing import measure_experts, peak_rss_mib

    registry = default_registry(settings, None)
    experts = [e for e in registry.experts() if isinstance(e, LocalExpert) and e.card.backend == "embedded"]
    with tempfile.TemporaryDirectory(prefix="hugginggpt-measure-") as folder:
        timings = asyncio.run(measure_experts(experts, Path(folder)))
    rss = round(peak_rss_mib(), 1)
    if as_json:
        sys.stdout.write(json.dumps({"experts": [t.model_dump() for t in timings], "peak_rss_mib": rss}) + "\n")
        return
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
    from .setup.files import demo_inputs
    from .setup.steps import CacheNotWritable, run_steps, select_steps

    if demo_dir:
        sys.stdout.write(f"{demo_inputs()}\n")
        return
    try:
        steps = select_steps(step)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        reports = run_steps(
            steps, settings=lambda: _settings(ctx), force=force, log=lambda message: err.print(f"[dim]{message}[/]")
        )
    except CacheNotWritable as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps([r.model_dump() for r in reports]) + "\n")
    else:
        table = Table("step", "status", "size", "seconds", "detail")
        colors = {"ready": "green", "cached": "green", "unavailable": "yellow", "failed": "red"}
        for r in reports:
            size = f"{sum(r.sizes.values()) / 1e6:.1f} MB" if r.sizes else ""
            table.add_row(r.step, f"[{colors[r.status]}]{r.status}[/]", size, f"{r.seconds:.1f}", r.detail)
        out.print(table)
        err.print(f"[dim]cache: {demo_inputs().parent}[/]")
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


@app.command("serve-models")
def serve_models(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to bind (keep 127.0.0.1 on untrusted networks)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8005,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="also host this Hub model, as TASK=MODEL_ID (repeatable)"),
    ] = None,
) -> None:
    """Host local experts over HTTP (GET /running, /status/ID, /models, /health, /memory; POST /models/ID)."""
    try:
        from .server.model_server import host_from_settings, serve
    except ImportError as exc:
        raise _fail(f"the model server needs the server extra: pip install 'hugginggpt[server]' ({exc})") from None
    pairs = []
    for item in model or []:
        task, sep, model_id = item.partition("=")
        if not sep or not task.strip() or not model_id.strip():
            raise _fail(f"--model takes TASK=MODEL_ID, got {item!r}")
        pairs.append((task.strip(), model_id.strip()))
    settings = _settings(ctx)
    try:
        model_host = host_from_settings(settings, pairs)
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    err.print(f"hosting {len(model_host.cards())} models on http://{host}:{port} (files in {model_host.root})")
    serve(model_host, bind=host, port=port)


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


def _server_modules() -> Any:
    try:
        import uvicorn

        from .server import app as server_app
    except ImportError as exc:
        raise _fail(
            f"the server needs the 'server' extra ({exc.name} is missing): pip install 'hugginggpt[server]'"
        ) from None
    return uvicorn, server_app


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8004,
    insecure: Annotated[
        bool, typer.Option(help="allow a non-loopback address without API keys (trusted networks only)")
    ] = False,
    db: Annotated[Path | None, typer.Option(help="SQLite file for history (HUGGINGGPT_DB)")] = None,
) -> None:
    """Serve the web page, the JARVIS-compatible API and the OpenAI-compatible API over HTTP."""
    uvicorn, server_app = _server_modules()
    from .server.auth import ApiKeys, check_bind, parse_keys

    settings = _settings(ctx, db=db)
    keys = ApiKeys(parse_keys(settings.api_keys))
    try:
        check_bind(host, keys, insecure=insecure)
    except HuggingGPTError as exc:
        raise _fail(str(exc)) from None
    if not keys.required and insecure and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] serving {host} without API keys: anyone who can reach it can use it")
    gpt = _pipeline(settings)
    err.print(
        f"HuggingGPT on http://{host}:{port}/  (history in {settings.db}; auth: "
        f"{'API keys' if keys.required else 'none, loopback only'})",
        soft_wrap=True,
    )
    application = server_app.create_app(gpt, settings, allow_any_host=insecure)
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


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
    _server_modules()
    from .server.bench import bench_server as run_bench

    settings = _settings(ctx) if embedded else None
    report = run_bench(
        requests=requests, levels=(1, concurrency), llm_delay=llm_delay, embedded=embedded, settings=settings
    )
    if as_json:
        sys.stdout.write(json.dumps({**report.model_dump(), "ratios": report.ratios()}) + "\n")
        return
    _print_server_bench(report)


def _print_server_bench(report: Any) -> None:
    table = Table("concurrency", "requests", "p50 ms", "p95 ms", "mean ms", "throughput req/s")
    for level in report.levels:
        table.add_row(
            str(level.concurrency),
            str(level.requests),
            f"{level.p50_ms:.1f}",
            f"{level.p95_ms:.1f}",
            f"{level.mean_ms:.1f}",
            f"{level.throughput_rps:.2f}",
        )
    out.print(table)
    for name, value in report.ratios().items():
        out.print(f"{name}: {value:.2f}")
    if report.pipeline == "shipped":
        out.print(f"[dim]the shipped pipeline, controller LLM with {report.slots} slots; client and server here[/]")
    else:
        out.print(f"[dim]scripted LLM, {report.llm_delay_s:g} s per LLM call; client and server on this machine[/]")


WORKLOADS = ("all", "a", "b", "server", "llm")


@app.command()
def bench(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the measurements as one JSON object")] = False,
    workload: Annotated[
        str,
        typer.Option(
            help="all: everything below; a: scripted LLM and timed experts (no model, seconds); b: the real "
            "embedded stack on everyday requests, fresh process and warm (minutes); server: the server with the "
            "embedded LLM at 1 and 4 concurrent requests; llm: the controller LLM's cold/warm planning"
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
    """Compare, in one run: ours, ours-no-stream, the paper's staged pipeline and the critical-path bound on
    scripted requests (A); the real stack in a fresh process and warm (B); the server at 1 vs 4 concurrent
    requests; and the controller LLM's cold vs warm planning."""
    import tempfile

    if workload not in WORKLOADS:
        raise _fail(f"unknown workload {workload!r}; choose {', '.join(WORKLOADS)}")
    data: dict[str, Any] = {}
    progress = lambda m: err.print(f"[dim]{m}…[/]", soft_wrap=True)  # noqa: E731
    chosen = {"a", "b", "server", "llm"} if workload == "all" else {workload}
    if "a" in chosen:
        from .eval.bench_modes import run_workload_a

        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-a-") as folder:
            workload_a = asyncio.run(run_workload_a(Path(folder), time_scale=time_scale, progress=progress))
        data = {**data, **workload_a.summary(), "workload_a": workload_a.to_json()}  # `ours`, `staged`, `bound`, …
        if not as_json:
            _print_workload_a(workload_a)
    gpt = _pipeline(_settings(ctx)) if chosen & {"b", "llm"} else None
    if "llm" in chosen:  # first: its cold plan needs an LLM that has seen no prompt yet
        from .eval.bench import run_bench

        assert gpt is not None
        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as folder:
            try:
                report = asyncio.run(run_bench(gpt, Path(folder), progress=progress))
            except HuggingGPTError as exc:
                raise _fail(str(exc)) from None
        data["llm"] = {**report.model_dump(mode="json"), "ratios": report.ratios()}
        if not as_json:
            _print_llm_bench(report)
    if "b" in chosen:
        from .eval.bench_real import run_workload_b
        from .setup.files import demo_inputs

        assert gpt is not None
        inputs = demo_inputs()
        if not (inputs / "kite.jpg").is_file():
            raise _fail(f"the demo inputs are not in {inputs}; run `hugginggpt setup` first")
        with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-b-") as folder:
            try:
                workload_b = asyncio.run(
                    run_workload_b(gpt, inputs, Path(folder), staged=not no_staged, progress=progress)
                )
            except HuggingGPTError as exc:
                raise _fail(str(exc)) from None
        data["workload_b"] = workload_b.to_json()
        if not as_json:
            _print_workload_b(workload_b)
    if "server" in chosen:
        _server_modules()
        from .server.bench import bench_server as run_server_bench

        progress("server with the embedded LLM: 1, then 4 concurrent requests")
        server = run_server_bench(requests=4, levels=(1, 4), embedded=True, settings=_settings(ctx))
        data["server"] = {**server.model_dump(), "ratios": server.ratios()}
        if not as_json:
            _print_server_bench(server)
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")


def _print_workload_b(report: Any) -> None:
    def num(value: float | None, digits: int = 2) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

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


def _print_llm_bench(report: Any) -> None:
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


def _print_workload_a(report: Any) -> None:
    def num(value: float | None, digits: int = 2) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

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
    from .eval.e2e import format_case, format_report, run_from_settings

    settings = _settings(ctx)
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
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
        return
    out.print(format_report(report), markup=False, soft_wrap=True)


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
