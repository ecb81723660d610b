"""Where packaged model weights lie: files inside installed packages, found without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def package_file(package: str, *parts: str) -> Path | None:
    """A file shipped inside an installed package, or None when the package or the file is missing."""
    folder = package_dir(package)
    if folder is None:
        return None
    path = folder.joinpath(*parts)
    return path if path.is_file() else None


def importable(*modules: str) -> bool:
    """Whether every module can be imported (checked without importing it)."""
    return all(package_dir(module) is not None for module in modules)
