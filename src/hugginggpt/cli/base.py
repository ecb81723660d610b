"""The command line's Typer apps, its global options, and what every command shares: settings, the pipeline, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from ..config import Settings
from ..errors import HuggingGPTError
from ..pipeline import HuggingGPT
from .render import err

app = typer.Typer(help="HuggingGPT: plan a request as AI tasks, run expert models, and answer.", no_args_is_help=True)
catalog_app = typer.Typer(help="The model catalogue snapshot.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
eval_app = typer.Typer(help="Measure the pipeline.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


ExecutorOption = Annotated[
    str | None,
    typer.Option("--executor", help="where experts run: local (this process) or ray (Ray actors; HUGGINGGPT_EXECUTOR)"),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line; the caller raises what this returns."""
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


def settings_of(ctx: typer.Context, **extra: Any) -> Settings:
    """The settings: environment and config file, then the global options, then this command's `extra`."""
    values = {**(ctx.obj or {}), **{k: v for k, v in extra.items() if v is not None}}
    try:
        return Settings(**values)
    except (ValidationError, FileNotFoundError) as exc:
        raise fail(f"bad settings: {exc}") from None


def pipeline(settings: Settings) -> HuggingGPT:
    try:
        return HuggingGPT.from_settings(settings)
    except HuggingGPTError as exc:
        raise fail(str(exc)) from None


def input_roots(inputs: list[Path] | None) -> list[Path]:
    roots = inputs or [Path.cwd()]
    for root in roots:
        if not root.is_dir():
            raise fail(f"--inputs {root} is not a folder")
    return roots


def server_modules() -> Any:
    """uvicorn and hugginggpt.server.app, or a one-line error naming the missing extra."""
    try:
        import uvicorn

        from ..server import app as server_app
    except ImportError as exc:
        raise fail(
            f"the server needs the 'server' extra ({exc.name} is missing): pip install 'hugginggpt[server]'"
        ) from None
    return uvicorn, server_app
