"""The `hugginggpt` command line: run, demo, plan, chat, models, catalog, setup, serve, serve-models, bench, eval.

The commands call the library (`HuggingGPT.from_settings` and friends) and print with `render`; `base` holds the
Typer apps, the global options and the helpers every command shares. The modules that define commands are imported
here, in the order the help lists them."""

from __future__ import annotations

from .base import app
from .render import err

# Each of these registers its commands on `app` when imported; the help lists them in this order.
# isort: off
from . import requests, models, setup, serve, bench, evaluate  # noqa: F401
# isort: on

__all__ = ["app", "entrypoint"]


def entrypoint() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[dim]interrupted[/]")
        raise SystemExit(130) from None
