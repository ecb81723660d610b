"""Prompt templates (Jinja2) and few-shot demos, kept as data beside the code that fills them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined, Template

_ENV = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@cache
def _source(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


@cache
def _template(name: str) -> Template:
    return _ENV.from_string(_source(name))


def render(name: str, **context: Any) -> str:
    """Fill the template `name` (e.g. "planning.j2") with `context`. Each template is compiled once."""
    return _template(name).render(**context).strip()


def load_demos() -> list[dict[str, Any]]:
    """The planning demos: each has a `request`, optional `history`, and the `tasks` that answer it."""
    return json.loads(_source("demos.json"))
