"""The Expert protocol: a model that runs one task type on resolved arguments and returns typed outputs."""

from __future__ import annotations

import asyncio
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

    def __init__(self, card: ModelCard, lock: asyncio.Lock | None = None) -> None:
        self.card = card
        self._lock = lock or asyncio.Lock()
        self._loaded = False

    def load(self) -> None:
        """Load the model. Called once, in a worker thread, before the first `predict`."""

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        raise NotImplementedError

    def _call(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        if not self._loaded:
            self.load()
            self._loaded = True
        return self.predict(args, ctx)

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        async with self._lock:
            return await asyncio.to_thread(self._call, args, ctx)
