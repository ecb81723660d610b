"""The serving commands: serve-models (local experts over HTTP) and serve (the web page and the APIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import HuggingGPTError
from .base import ExecutorOption, app, fail, pipeline, server_modules, settings_of
from .render import err

# Seconds an idle connection stays open: longer than clients keep theirs (httpx and the OpenAI SDK: 5 s), so a
# client never sends a request on a connection the server is just closing (with equal timeouts about one request
# in a few thousand failed under load).
KEEP_ALIVE_SECONDS = 75


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
        from ..server.model_server import host_from_settings, serve
    except ImportError as exc:
        raise fail(f"the model server needs the server extra: pip install 'hugginggpt[server]' ({exc})") from None
    pairs = []
    for item in model or []:
        task, sep, model_id = item.partition("=")
        if not sep or not task.strip() or not model_id.strip():
            raise fail(f"--model takes TASK=MODEL_ID, got {item!r}")
        pairs.append((task.strip(), model_id.strip()))
    settings = settings_of(ctx)
    try:
        model_host = host_from_settings(settings, pairs)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    err.print(f"hosting {len(model_host.cards())} models on http://{host}:{port} (files in {model_host.root})")
    serve(model_host, bind=host, port=port)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8004,
    insecure: Annotated[
        bool, typer.Option(help="allow a non-loopback address without API keys (trusted networks only)")
    ] = False,
    db: Annotated[Path | None, typer.Option(help="SQLite file for history (HUGGINGGPT_DB)")] = None,
    executor: ExecutorOption = None,
) -> None:
    """Serve the web page, the JARVIS-compatible API and the OpenAI-compatible API over HTTP. With `--executor ray`
    every request's experts run on the Ray actors, shared by all requests; the controller LLM stays here."""
    uvicorn, server_app = server_modules()
    from ..server.auth import ApiKeys, check_bind, parse_keys

    settings = settings_of(ctx, db=db, executor=executor)
    keys = ApiKeys(parse_keys(settings.api_keys))
    try:
        check_bind(host, keys, insecure=insecure)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None
    if not keys.required and insecure and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] serving {host} without API keys: anyone who can reach it can use it")
    gpt = pipeline(settings)
    err.print(
        f"HuggingGPT on http://{host}:{port}/  (history in {settings.db}; auth: "
        f"{'API keys' if keys.required else 'none, loopback only'})",
        soft_wrap=True,
    )
    application = server_app.create_app(gpt, settings, allow_any_host=insecure)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
