"""The Expert protocol: a model that runs one task type on resolved arguments and returns typed outputs."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..types import Artifact, Modality, ModelCard, OutputValue
from ..workspace import Workspace

Outputs = dict[str, OutputValue]


@dataclass
class ExpertContext:
    """What an expert may use besides its arguments: where to write its files, and which task it serves."""

    workspace: Workspace
    task_id: int
    task: str

    def output_path(self, suffix: str) -> Path:
        return self.workspace.new_path(self.task_id, self.task, suffix)

    def artifact(self, path: Path, modality: Modality, media_type: str | None = None) -> Artifact:
        return self.workspace.artifact(path, modality, media_type)


@runtime_checkable
class Expert(Protocol):
    """One model serving one task type. `args` are resolved: media arguments are local file paths, text is text.

    `run` returns outputs keyed by modality (`text`, `image`, `audio`, `video`) or `json`; files are Artifacts.
    """

    card: ModelCard

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs: ...


class LocalExpert:
    """Base for experts whose model code blocks: loads lazily on first use, runs in a worker thread, one call at a
    time per model (experts that share a model share its lock)."""

    card: ModelCard

    def __init__(self, card: ModelCard, lock: threading.Lock | None = None) -> None:
        self.card = card
        # a thread lock, taken in the worker thread: an asyncio.Lock would be bound to the first event loop that
        # waits on it and fail in the next one (`hugginggpt chat` runs each turn in a new loop)
        self._lock = lock or threading.Lock()
        self._loaded = False

    def load(self) -> None:
        """Load the model. Called once, in a worker thread, before the first `predict`."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def lock(self) -> threading.Lock:
        """The lock of this expert's model; experts sharing a model share it."""
        return self._lock

    def prepare(self) -> None:
        """Load the model now, in the calling thread, unless it is loaded already (to warm up or time it)."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True

    def _call(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        with self._lock:
            self._ensure_loaded()
            return self.predict(args, ctx)

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        return await asyncio.to_thread(self._call, args, ctx)
