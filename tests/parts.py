"""Real parts a test needs: skipped on a developer's machine where one is missing, a failure when `CI` is set
(on a fresh machine a missing part is a missing install step, never a quiet skip)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def need(ok: bool, message: str) -> None:
    if not ok:
        missing(message)


def need_module(name: str, message: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(message)


def setup_files(*steps: str):
    """The user cache that `hugginggpt setup` (run by `make test`) fills, with these steps done."""
    from hugginggpt.setup.files import VisionFiles

    files = VisionFiles.default()
    left = [step for step in steps if not files.ready(step)]
    need(not left, f"set-up steps not in the cache {files.root}: {', '.join(left)}; run `hugginggpt setup`")
    return files
